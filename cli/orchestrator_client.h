// GET requests to a running loom-orchestrator for `loom ps` and `loom models`, over the CLI's
// HTTP client (cli/http_get.h).
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace loom::cli {

// The default --orchestrator: loom-orchestrator's default address and port.
inline constexpr const char* kDefaultOrchestrator = "http://127.0.0.1:9000";

// --orchestrator that is not http://HOST:PORT (exit 2).
class BadOrchestratorUrl : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// No answer (refused, timed out) or one that is not the JSON expected (exit 1); the message names
// the URL and the cause.
class OrchestratorError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// GET base_url + path with `api_key` as a Bearer token when not empty; the JSON body of a 2xx
// answer (/health's 503 "no_worker_ready" also counts: it still lists the workers).
nlohmann::json get_orchestrator_json(const std::string& base_url, const std::string& path, const std::string& api_key);

}  // namespace loom::cli
