// The orchestrator's configuration (from the command line) and the parsing of worker URLs.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "orchestrator/key_file.h"
#include "orchestrator/model_specs.h"
#include "orchestrator/presets.h"

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

enum class Routing { least_load, round_robin, prefix };
// As --routing spells it: "least-load", "round-robin", "prefix".
const char* routing_name(Routing r);

// How calls reach the workers: loom-mux/1 (many calls per connection) or HTTP/1.1 (one each).
enum class Transport { mux, http };
const char* transport_name(Transport t);

// --spawn: loom-workers the orchestrator starts and supervises itself (spawn_plan, supervisor).
struct SpawnOptions {
    std::string model;              // the GGUF file; "" spawns nothing
    std::string backend = "cuda";   // cuda: one worker per GPU; cpu: cpu_workers of them
    std::vector<std::string> gpus;  // indexes or UUIDs (--gpus 0,1); empty: every visible GPU
    int cpu_workers = 1;
    std::string worker_bin;                // "" = loom-worker beside the orchestrator's executable
    std::vector<std::string> worker_args;  // passed through (--max-seqs, --ctx, ...)
};

struct Options {
    std::vector<WorkerUrl> workers;
    std::string host = "127.0.0.1";
    int port = 9000;
    Routing routing = Routing::prefix;
    std::vector<std::string> tokenizers;  // GGUF files whose tokenizers prefix routing uses (--tokenizer)
    int retries = 2;
    std::vector<std::string> api_keys;
    std::vector<KeyEntry> key_file;  // --api-keys: keys with names and limits
    size_t queue_size = 1024;        // requests waiting per model when every worker is full
    double promote_after_s = 10;     // a waiting batch request counts as interactive after this
    int worker_queue = 0;            // requests placed on a worker beyond its sequences_max
    double request_timeout_s = 0;    // a request without `timeout` gets this one (0: none)
    std::string register_secret;     // empty: POST /admin/register is refused (403)
    int http_threads = 2;
    Transport upstream = Transport::mux;
    int client_threads = 2;
    SpawnOptions spawn;
    std::string admin_key;                  // "" = the admin API is open on a loopback address only
    int drain_timeout = 30;                 // seconds running requests may take to finish after SIGTERM
    std::map<std::string, Preset> presets;  // --preset, by name
    std::vector<ModelSpec> models;          // --registry-model: loaded on demand (model_registry)
    uint64_t vram_budget = 0;               // bytes per device for registry models; 0: the GPU's memory (cpu: no limit)
    double load_wait_s = 30;                // a request waits this long for room before its 503
    double load_timeout_s = 300;            // a registry worker not ready after this has failed
};

}  // namespace loom::orchestrator
