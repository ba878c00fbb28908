// Entry point of `loom-orchestrator`: one OpenAI-compatible endpoint in front of many loom-workers.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <stdexcept>

#include "orchestrator/orchestrator_app.h"

int main(int argc, char** argv) {
    using namespace loom::orchestrator;
    CLI::App app{"loom-orchestrator: routes OpenAI-compatible requests to loom-workers, with token-exact failover"};
    Options o;
    std::vector<std::string> worker_urls;
    std::string routing = "least-load", log_level = "info";
    app.add_option("--worker", worker_urls, "A worker's URL, http://HOST:PORT (repeatable)")->required();
    app.add_option("--host", o.host, "Address to listen on (default 127.0.0.1)");
    app.add_option("--port", o.port, "Port (default 9000; 0 = any free port, printed at start)")
        ->check(CLI::Range(0, 65535));
    app.add_option("--routing", routing, "least-load (default) or round-robin")
        ->check(CLI::IsMember({"least-load", "round-robin"}));
    app.add_option("--retries", o.retries, "Other workers tried before the first byte (default 2)")
        ->check(CLI::Range(0, 100));
    app.add_option("--api-key", o.api_keys, "Bearer key clients must send (repeatable; forwarded to the workers)");
    std::string key_file;
    app.add_option("--api-keys", key_file,
                   "JSON file of keys with names and per-minute limits (docs/ORCHESTRATOR.md); adds to --api-key");
    app.add_option("--queue-size", o.queue_size,
                   "Requests that may wait per model when every worker is full (default 1024)")
        ->check(CLI::Range(0, 1'000'000));
    app.add_option("--promote-after", o.promote_after_s,
                   "Seconds after which a waiting batch request counts as interactive (default 10)")
        ->check(CLI::Range(0.0, 86'400.0));
    app.add_option("--worker-queue", o.worker_queue,
                   "Requests placed on a worker beyond its sequences_max, in its own queue (default 0)")
        ->check(CLI::Range(0, 100'000));
    app.add_option("--request-timeout", o.request_timeout_s,
                   "Seconds a request without its own `timeout` may take (default 0: no limit)")
        ->check(CLI::Range(0.0, 86'400.0));
    app.add_option("--log", log_level, "Log level: trace, debug, info (default), warn, error, critical, off");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : kExitBadInput;
    }
    try {
        for (const auto& u : worker_urls) o.workers.push_back(parse_worker_url(u));
        if (!key_file.empty()) o.key_file = load_key_file(key_file);
        configure_logging(log_level);
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "loom-orchestrator: %s\n", e.what());
        return kExitBadInput;
    }
    o.routing = routing == "round-robin" ? Routing::round_robin : Routing::least_load;
    try {
        return OrchestratorApp(o).run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "loom-orchestrator: %s\n", e.what());
        return kExitFailure;
    }
}
