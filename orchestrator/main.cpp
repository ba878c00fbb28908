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
    app.add_option("--http-threads", o.http_threads, "Threads serving client connections (default 2)")
        ->check(CLI::Range(1, 256));
    app.add_option("--client-threads", o.client_threads, "Threads for health polls and worker calls (default 2)")
        ->check(CLI::Range(1, 256));
    app.add_option("--log", log_level, "Log level: trace, debug, info (default), warn, error, critical, off");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : kExitBadInput;
    }
    try {
        for (const auto& u : worker_urls) o.workers.push_back(parse_worker_url(u));
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
