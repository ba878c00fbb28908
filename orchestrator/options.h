// The orchestrator's configuration (from the command line) and the parsing of worker URLs.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace loom::orchestrator {

// Exit codes, as loom-worker's: 2 for bad flags or input, 1 for a failure while running.
inline constexpr int kExitFailure = 1;
inline constexpr int kExitBadInput = 2;

// A --worker value that is not http://HOST:PORT.
class BadWorkerUrl : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

struct WorkerUrl {
    std::string host;
    uint16_t port = 0;
    std::string text;  // "http://host:port", as reported in X-Worker and /health
};

// "http://HOST:PORT" with an optional trailing '/'; no path, no https (the workers speak plain HTTP).
WorkerUrl parse_worker_url(const std::string& url);

enum class Routing { least_load, round_robin };

struct Options {
    std::vector<WorkerUrl> workers;
    std::string host = "127.0.0.1";
    int port = 9000;
    Routing routing = Routing::least_load;
    int retries = 2;
    std::vector<std::string> api_keys;
    std::string register_secret;  // empty: POST /admin/register is refused (403)
    int http_threads = 2;
    int client_threads = 2;
};

}  // namespace loom::orchestrator
