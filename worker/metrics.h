// The worker's counters, gauges and latency histograms, rendered in the Prometheus text format with
// vLLM's metric names (so routers that read vLLM read loom) plus loom_* for memory and failures.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "engine/backend.h"
#include "http/prometheus.h"

namespace loom::worker {

// A snapshot of the engine loop (EngineLoop::status()); rendered as the vllm:num_requests_* and
// vllm:kv_cache_usage_perc gauges.
struct LoopStatus {
    int running = 0;  // requests holding a sequence slot
    int waiting = 0;  // requests queued for a slot (submitted, not yet admitted)
    int max_seqs = 0;
    int kv_blocks_total = 0;
    int kv_blocks_free = 0;
};

// Who the metrics describe: model_name is the label every vllm:* series carries.
struct MetricsInfo {
    std::string model_name;
    std::string backend;  // "cuda" or "cpu"
    std::string device;   // Backend::device()
};

// Thread-safe: the loop thread records, HTTP threads record rejections and render.
class Metrics {
public:
    explicit Metrics(MetricsInfo info);

    // A request's prompt went through the model (counted once, when its first token is sampled).
    void add_prompt_tokens(int64_t n);
    // Completion tokens delivered: every sampled token a request keeps (a stop token that ends a
    // request is not one), the same count as the request's usage.completion_tokens.
    void add_generation_tokens(int64_t n);
    void observe_time_to_first_token(double seconds);  // from submit to the first sampled token
    void observe_inter_token_latency(double seconds);  // between two sampled tokens of one request
    void observe_e2e_latency(double seconds);          // from submit to the finish ("stop"/"length")
    void count_cancelled();
    // kind: "engine" (the engine ended a request with an error: sampling failed, KV cache full),
    // "request" (a RequestError from a step or an admission), "fatal" (a backend failure that
    // poisoned the loop); callers may add their own kinds (e.g. "invalid_request").
    void count_error(std::string_view kind);
    // reason: "queue_full", "draining", "poisoned".
    void count_rejected(std::string_view reason);

    int64_t prompt_tokens() const;
    int64_t generation_tokens() const;
    int64_t cancelled() const;
    int64_t errors(std::string_view kind) const;
    int64_t rejected(std::string_view reason) const;

    // The whole exposition: vllm:num_requests_running / _waiting, vllm:kv_cache_usage_perc (0..1),
    // vllm:prompt_tokens_total, vllm:generation_tokens_total, the histograms
    // vllm:time_to_first_token_seconds, vllm:inter_token_latency_seconds,
    // vllm:e2e_request_latency_seconds (_bucket/_sum/_count), each labelled model_name; then
    // loom_vram_bytes{purpose} (used), loom_vram_reserved_bytes{purpose}, loom_memory_device_resident,
    // loom_requests_cancelled_total, loom_request_errors_total{kind}, loom_requests_rejected_total{reason},
    // loom_backend_info{backend,device} 1.
    std::string render(const LoopStatus& status, const engine::MemoryReport& memory) const;

private:
    const MetricsInfo info_;
    mutable std::mutex mutex_;
    int64_t prompt_tokens_ = 0;
    int64_t generation_tokens_ = 0;
    int64_t cancelled_ = 0;
    std::map<std::string, int64_t, std::less<>> errors_;
    std::map<std::string, int64_t, std::less<>> rejected_;
    http::prometheus::Histogram ttft_;
    http::prometheus::Histogram itl_;
    http::prometheus::Histogram e2e_;
};

}  // namespace loom::worker
