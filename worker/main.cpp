// Entry point of `loom-worker`: one process serving one model on one GPU (or, when named, the CPU).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <stdexcept>

#include "models/model_cache.h"
#include "worker/gpu_options.h"
#include "worker/worker_app.h"

int main(int argc, char** argv) {
    using loom::worker::WorkerOptions;
    CLI::App app{"loom-worker: serves one model over OpenAI-compatible HTTP (default backend: cuda)"};
    WorkerOptions o;
    std::string log_spec = "info";
    std::string vram_budget;
    app.add_option("--model", o.model, "GGUF model file or cached model name (loom list)")
        ->required()
        ->transform(loom::models::file_or_cached_model());
    app.add_option("--served-name", o.served_name,
                   "The model's name in requests, answers and /health (default: the file's name without .gguf)");
    app.add_option("--gpu", o.gpu,
                   "CUDA device index or UUID GPU-... as nvidia-smi -L prints it (default 0; cuda only)");
    app.add_option("--vram-budget", vram_budget,
                   "Most VRAM for weights + KV cache + workspace: bytes or 20G, 20GiB, 512M (cuda only; the KV cache "
                   "gets what is left, up to --max-seqs x --ctx)");
    app.add_option("--kv-tokens", o.kv_tokens,
                   "Positions in the shared KV cache (default --max-seqs x --ctx, or what "
                   "--vram-budget leaves)")
        ->check(CLI::Range(1, 1 << 30));
    app.add_option("--kv-type", o.kv_type,
                   "What the KV cache stores: f32 (reference-grade, twice the memory) or f16 (cuda only). Default: "
                   "f32 when the model's matrices are F32/F16/BF16, f16 when they are quantized; cpu always f32")
        ->check(CLI::IsMember({"f16", "f32"}));
    app.add_flag("--batch-invariant", o.batch_invariant,
                 "Every token through the decode kernels, prompts included: a position's logits are the same bits "
                 "however requests were batched or chunked (cuda; prefill several times slower; cpu always is)");
    app.add_option("--backend", o.backend, "cuda (default) or cpu (the reference backend; only when named)")
        ->check(CLI::IsMember({"cuda", "cpu"}));
    app.add_option("--host", o.host, "Address to listen on (default 127.0.0.1)");
    app.add_option("--port", o.port, "Port (default 8000; 0 = any free port, printed at start)")
        ->check(CLI::Range(0, 65535));
    app.add_option("--ctx", o.ctx, "Context size per sequence in tokens (default: the model's)")
        ->check(CLI::Range(0, 1 << 24));
    app.add_option("--max-seqs", o.max_seqs, "Sequences decoded together (default 16)")->check(CLI::Range(1, 4096));
    app.add_option("--max-queue", o.max_queue, "Requests that may wait for a sequence; more get 429 (default 64)")
        ->check(CLI::Range(0, 1 << 20));
    app.add_option("--api-key", o.api_keys,
                   "Bearer key clients must send (repeatable; /health and /metrics stay open)");
    app.add_option("--register", o.registration.orchestrator_url,
                   "Announce this worker to the orchestrator at http://HOST:PORT and heartbeat every second");
    app.add_option("--register-secret", o.registration.secret, "The secret the orchestrator's --register-secret names");
    app.add_option("--advertise-url", o.registration.advertise_url,
                   "The URL the orchestrator should use, http://HOST:PORT (default: --host and the bound port)");
    app.add_option("--log", log_spec,
                   "Log levels: LEVEL or component=LEVEL,... for http, engine, worker (default info)");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : loom::worker::kExitBadInput;
    }
    try {
        loom::worker::configure_logging(log_spec);
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "loom-worker: %s\n", e.what());
        return loom::worker::kExitBadInput;
    }
    try {
        if (!vram_budget.empty()) o.vram_budget = loom::worker::parse_byte_size(vram_budget);
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "loom-worker: --vram-budget: %s\n", e.what());
        return loom::worker::kExitBadInput;
    }
    try {
        return loom::worker::WorkerApp(o).run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "loom-worker: %s\n", e.what());
        return loom::worker::kExitFailure;
    }
}
