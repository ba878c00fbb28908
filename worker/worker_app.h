// loom-worker's wiring: the HTTP routes (OpenAI API, /health, /metrics, /tokenize, /detokenize,
// /cancel), API keys, the load -> serve -> drain life cycle and the process's exit codes.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "worker/registration.h"

namespace loom::worker {

inline constexpr int kExitFailure = 1;    // the engine loop was poisoned (a CUDA fault) or serving failed
inline constexpr int kExitBadInput = 2;   // bad option, unreadable or unsupported model, port in use
inline constexpr int kExitNoBackend = 3;  // the named backend cannot run here (no CUDA device, too little VRAM)

struct WorkerOptions {
    std::string model;
    std::string served_name;       // the model's name for clients; empty: the file's stem
    std::string gpu;               // device index or UUID ("GPU-..."); empty: device 0 (cuda only)
    uint64_t vram_budget = 0;      // bytes weights + KV cache + workspace may take; 0: no budget (cuda only)
    int kv_tokens = 0;             // positions in the shared KV cache; 0: max_seqs * ctx, or what the budget leaves
    std::string kv_type;           // "f16" or "f32" (cuda; cpu is always f32); empty: engine::default_kv_cache_type
    std::string backend = "cuda";  // "cuda" or "cpu"; never a fallback from one to the other
    bool batch_invariant = false;  // cuda: engine::BackendOptions::batch_invariant (cpu is invariant anyway)
    std::string host = "127.0.0.1";
    int port = 8000;
    int ctx = 0;  // 0: the model's context
    int max_seqs = 16;
    int max_queue = 64;
    std::vector<std::string> api_keys;  // empty: no key needed
    RegistrationOptions registration;   // orchestrator_url empty: no self-registration
    int http_threads = 4;
    std::chrono::milliseconds drain_deadline{30'000};  // SIGTERM: running streams may finish this long
};

class WorkerApp {
public:
    explicit WorkerApp(WorkerOptions options);
    ~WorkerApp();
    WorkerApp(const WorkerApp&) = delete;
    WorkerApp& operator=(const WorkerApp&) = delete;

    // Serves until SIGTERM or SIGINT (drain, exit code 0) or a poisoned engine loop (kExitFailure).
    // /health answers 503 "loading" from the moment the port is open until the model is resident
    // and a warm-up step ran. Blocks SIGTERM/SIGINT in the calling thread (and the threads it starts).
    int run();

private:
    struct State;
    std::unique_ptr<State> s_;
};

// Applies a --log spec: "LEVEL" for every component, or "component=LEVEL,..." for "http",
// "engine" and "worker" (levels: trace, debug, info, warn, error, critical, off). Creates the three
// spdlog loggers on stderr. std::invalid_argument naming the bad part.
void configure_logging(const std::string& spec);

}  // namespace loom::worker
