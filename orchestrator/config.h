// --config FILE: the orchestrator's settings as a JSON object whose keys stand for its flags.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace loom::orchestrator {

// A config file that cannot be read or parsed, an unknown key or a value of the wrong type; the
// message names the file and the key.
class BadConfig : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// The file's settings as command-line arguments ("--port=9000", "--worker=URL" once per element),
// for every key whose flag `given` says the command line does not hold itself (flags win, a list
// flag replacing the file's whole list). The keys and their flags: the table in config.cpp.
std::vector<std::string> config_arguments(const std::string& path,
                                          const std::function<bool(const std::string& flag)>& given);

}  // namespace loom::orchestrator
