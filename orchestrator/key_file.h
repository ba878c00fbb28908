// The --api-keys file: each client key with the name it is known by (logs, metrics) and its limits.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace loom::orchestrator {

// One key and its budget; a limit of 0 means none.
struct KeyEntry {
    std::string key;   // the secret: never logged
    std::string name;  // what logs and metrics say instead
    double requests_per_minute = 0;
    double tokens_per_minute = 0;
};

// A file that cannot be read or is not in the documented shape; the message names the entry and the
// field, never a key.
class BadKeyFile : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// {"keys": [{"key": "...", "name": "alice", "requests_per_minute": 60, "tokens_per_minute": 100000}]}:
// key and name non-empty strings, each key and name once; the limits optional numbers >= 1 (0: none).
// Unknown fields are refused (a misspelt limit would otherwise silently be no limit).
std::vector<KeyEntry> parse_key_file(const std::string& text, const std::string& path);
std::vector<KeyEntry> load_key_file(const std::string& path);

}  // namespace loom::orchestrator
