// Entry point of `loom-orchestrator`: one OpenAI-compatible endpoint in front of many loom-workers.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <optional>
#include <stdexcept>

#include "http/byte_size.h"
#include "models/model_cache.h"
#include "orchestrator/config.h"
#include "orchestrator/orchestrator_app.h"

namespace {

// Parses the command line, then again with the --config file's settings before it (flags win).
// Returns an exit code when the program should end now.
std::optional<int> parse(CLI::App& app, int argc, char** argv, const std::string& config_path) {
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : loom::orchestrator::kExitBadInput;
    }
    if (config_path.empty()) return std::nullopt;
    std::vector<std::string> args;
    try {
        args = loom::orchestrator::config_arguments(config_path,
                                                    [&](const std::string& flag) { return app.count(flag) > 0; });
    } catch (const loom::orchestrator::BadConfig& e) {
        std::fprintf(stderr, "loom-orchestrator: %s\n", e.what());
        return loom::orchestrator::kExitBadInput;
    }
    args.insert(args.end(), argv + 1, argv + argc);
    std::reverse(args.begin(), args.end());  // CLI11 takes them last first
    try {
        app.parse(std::move(args));
    } catch (const CLI::ParseError& e) {  // the command line alone parsed: the file's value is wrong
        std::fprintf(stderr, "loom-orchestrator: --config %s: %s\n", config_path.c_str(), e.what());
        return loom::orchestrator::kExitBadInput;
    }
    return std::nullopt;
}

// A configured model's file: an existing file as it is, else a cached model's path.
std::string resolve_model(const std::string& name) {
    std::string path = name;
    const std::string error = loom::models::file_or_cached_model()(path);
    if (!error.empty()) throw std::invalid_argument(error);
    return path;
}

// The command line's values: the options proper and the flags turned into them after parsing.
struct Flags {
    loom::orchestrator::Options o;
    std::vector<std::string> worker_urls, presets, registry_models;
    std::string upstream = "mux", routing = "prefix", log_level = "info", config_path, key_file, vram_budget;
};

// Every flag of loom-orchestrator, bound to f (docs/ORCHESTRATOR.md lists them).
void add_flags(CLI::App& app, Flags& f) {
    using namespace loom::orchestrator;
    app.add_option("--config", f.config_path, "A JSON file of settings (docs/ORCHESTRATOR.md); flags override it");
    app.add_option("--worker", f.worker_urls, "A worker's URL, http://HOST:PORT (repeatable)");
    app.add_option("--host", f.o.host, "Address to listen on (default 127.0.0.1)");
    app.add_option("--port", f.o.port, "Port (default 9000; 0 = any free port, printed at start)")
        ->check(CLI::Range(0, 65535));
    app.add_option("--routing", f.routing, "prefix (default), least-load or round-robin")
        ->check(CLI::IsMember({"prefix", "least-load", "round-robin"}));
    app.add_option("--tokenizer", f.o.tokenizers,
                   "MODEL.gguf whose tokenizer prefix routing uses for workers serving MODEL (repeatable)");
    app.add_option("--retries", f.o.retries, "Other workers tried before the first byte (default 2)")
        ->check(CLI::Range(0, 100));
    app.add_option("--api-key", f.o.api_keys, "Bearer key clients must send (repeatable; forwarded to the workers)");
    app.add_option("--admin-key", f.o.admin_key, "Bearer key for /admin/* (without one: open on loopback only)");
    app.add_option("--drain-timeout", f.o.drain_timeout, "Seconds running requests may take after SIGTERM (default 30)")
        ->check(CLI::Range(0, 86400));
    app.add_option("--spawn", f.o.spawn.model,
                   "Start and supervise loom-workers serving this GGUF model (file or cached name)")
        ->transform(loom::models::file_or_cached_model());
    app.add_option("--backend", f.o.spawn.backend, "Spawned workers' backend: cuda (default; one per GPU) or cpu")
        ->check(CLI::IsMember({"cuda", "cpu"}));
    app.add_option("--gpus", f.o.spawn.gpus, "GPUs to spawn workers on, e.g. 0,1 (default: every visible GPU)")
        ->delimiter(',');
    app.add_option("--cpu-workers", f.o.spawn.cpu_workers, "CPU workers to spawn with --backend cpu (default 1)")
        ->check(CLI::Range(1, 1024));
    app.add_option("--worker-bin", f.o.spawn.worker_bin, "loom-worker to spawn (default: beside this executable)");
    app.add_option("--worker-arg", f.o.spawn.worker_args,
                   "An argument for spawned workers (repeatable: --worker-arg=--max-seqs --worker-arg=8)");
    app.add_option("--api-keys", f.key_file,
                   "JSON file of keys with names and per-minute limits (docs/ORCHESTRATOR.md); adds to --api-key");
    app.add_option("--queue-size", f.o.queue_size,
                   "Requests that may wait per model when every worker is full (default 1024)")
        ->check(CLI::Range(0, 1'000'000));
    app.add_option("--promote-after", f.o.promote_after_s,
                   "Seconds after which a waiting batch request counts as interactive (default 10)")
        ->check(CLI::Range(0.0, 86'400.0));
    app.add_option("--worker-queue", f.o.worker_queue,
                   "Requests placed on a worker beyond its sequences_max, in its own queue (default 0)")
        ->check(CLI::Range(0, 100'000));
    app.add_option("--request-timeout", f.o.request_timeout_s,
                   "Seconds a request without its own `timeout` may take (default 0: no limit)")
        ->check(CLI::Range(0.0, 86'400.0));
    app.add_option("--register-secret", f.o.register_secret,
                   "Admit workers that announce themselves (loom-worker --register) with this secret");
    app.add_option("--http-threads", f.o.http_threads, "Threads serving client connections (default 2)")
        ->check(CLI::Range(1, 256));
    app.add_option("--upstream", f.upstream,
                   "How calls reach the workers: mux (default; loom-mux/1, many calls per connection) or http")
        ->check(CLI::IsMember({"mux", "http"}));
    app.add_option("--client-threads", f.o.client_threads,
                   "Threads for health polls, queue timers and worker calls made off the server threads (default 2)")
        ->check(CLI::Range(1, 256));
    app.add_option(
        "--preset", f.presets,
        "A preset as JSON: {\"name\",\"model\",\"system\",\"parameters\"} (repeatable; docs/ORCHESTRATOR.md)");
    app.add_option(
        "--registry-model", f.registry_models,
        "A model loaded on demand, as JSON: {\"name\",\"model\",\"gpus\",\"replicas\",\"context\",\"keep_alive\"} "
        "(repeatable; docs/ORCHESTRATOR.md)");
    app.add_option(
        "--vram-budget", f.vram_budget,
        "Bytes of model estimates each device may hold (20G, 512M; default: the GPU's memory; cpu: no limit)");
    app.add_option("--load-wait", f.o.load_wait_s,
                   "Seconds a request waits for a device with room before its 503 (default 30)")
        ->check(CLI::Range(0.0, 86'400.0));
    app.add_option("--load-timeout", f.o.load_timeout_s,
                   "Seconds a registry model's worker may take to become ready (default 300)")
        ->check(CLI::Range(0.1, 86'400.0));
    app.add_option("--log", f.log_level, "Log level: trace, debug, info (default), warn, error, critical, off");
}

// Turns the parsed flags into f.o and checks the ones that need each other; std::invalid_argument
// naming the flag otherwise.
void finish_options(const CLI::App& app, Flags& f) {
    using namespace loom::orchestrator;
    f.o.models = parse_model_flags(f.registry_models, resolve_model);
    try {
        if (!f.vram_budget.empty()) f.o.vram_budget = loom::http::parse_byte_size(f.vram_budget);
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string("--vram-budget: ") + e.what());
    }
    if (f.worker_urls.empty() && f.o.spawn.model.empty() && f.o.register_secret.empty() && f.o.models.empty())
        throw std::invalid_argument(
            "no workers: name them with --worker, start them with --spawn, admit them with "
            "--register-secret or configure models (--registry-model)");
    if (f.o.spawn.model.empty() && f.o.models.empty())
        for (const char* flag : {"--backend", "--gpus", "--cpu-workers", "--worker-bin", "--worker-arg"})
            if (app.count(flag) > 0)
                throw std::invalid_argument(std::string(flag) + " needs --spawn or --registry-model");
    if (f.o.models.empty())
        for (const char* flag : {"--vram-budget", "--load-wait", "--load-timeout"})
            if (app.count(flag) > 0) throw std::invalid_argument(std::string(flag) + " needs --registry-model");
    for (const auto& u : f.worker_urls) f.o.workers.push_back(parse_worker_url(u));
    if (!f.key_file.empty()) f.o.key_file = load_key_file(f.key_file);
    f.o.presets = parse_preset_flags(f.presets);
    configure_logging(f.log_level);
    f.o.routing = f.routing == "round-robin"  ? Routing::round_robin
                  : f.routing == "least-load" ? Routing::least_load
                                              : Routing::prefix;
    f.o.upstream = f.upstream == "http" ? Transport::http : Transport::mux;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace loom::orchestrator;
    CLI::App app{"loom-orchestrator: routes OpenAI-compatible requests to loom-workers, with token-exact failover"};
    Flags f;
    add_flags(app, f);
    if (const auto code = parse(app, argc, argv, f.config_path)) return *code;
    try {
        finish_options(app, f);
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "loom-orchestrator: %s\n", e.what());
        return kExitBadInput;
    }
    try {
        return OrchestratorApp(f.o).run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "loom-orchestrator: %s\n", e.what());
        return kExitFailure;
    }
}
