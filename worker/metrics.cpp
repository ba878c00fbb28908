// Metrics: counters and histograms under one mutex, written out in the Prometheus text format 0.0.4.
#include "worker/metrics.h"

#include "http/prometheus.h"

namespace loom::worker {

namespace prometheus = http::prometheus;
using prometheus::escape;
using prometheus::header;
using prometheus::sample;

namespace {

// Bucket bounds in seconds. They reach down to the millisecond because a GPU decode step is a few
// milliseconds, and up to minutes for long CPU generations.
const std::vector<double> kTtftBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5,
                                          0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0};
const std::vector<double> kItlBuckets = {0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15,
                                         0.2,   0.3,    0.4,   0.5,    0.75, 1.0,   2.5,  5.0,   10.0};
const std::vector<double> kE2eBuckets = {0.1,  0.3,  0.5,  0.8,  1.0,  1.5,  2.0,   2.5,   5.0,   10.0,
                                         15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0};

}  // namespace

Metrics::Metrics(MetricsInfo info) : info_(std::move(info)), ttft_(kTtftBuckets), itl_(kItlBuckets), e2e_(kE2eBuckets) {
    // Series that exist from the start, so a scrape sees zeros rather than nothing.
    for (const char* kind : {"engine", "request", "fatal"}) errors_[kind] = 0;
    rejected_["queue_full"] = 0;
}

void Metrics::add_prompt_tokens(int64_t n) {
    std::lock_guard lock(mutex_);
    prompt_tokens_ += n;
}
void Metrics::add_generation_tokens(int64_t n) {
    std::lock_guard lock(mutex_);
    generation_tokens_ += n;
}
void Metrics::observe_time_to_first_token(double seconds) {
    std::lock_guard lock(mutex_);
    ttft_.observe(seconds);
}
void Metrics::observe_inter_token_latency(double seconds) {
    std::lock_guard lock(mutex_);
    itl_.observe(seconds);
}
void Metrics::observe_e2e_latency(double seconds) {
    std::lock_guard lock(mutex_);
    e2e_.observe(seconds);
}
void Metrics::count_cancelled() {
    std::lock_guard lock(mutex_);
    ++cancelled_;
}
void Metrics::count_error(std::string_view kind) {
    std::lock_guard lock(mutex_);
    auto it = errors_.find(kind);
    if (it == errors_.end()) it = errors_.emplace(std::string(kind), 0).first;
    ++it->second;
}
void Metrics::count_rejected(std::string_view reason) {
    std::lock_guard lock(mutex_);
    auto it = rejected_.find(reason);
    if (it == rejected_.end()) it = rejected_.emplace(std::string(reason), 0).first;
    ++it->second;
}

int64_t Metrics::prompt_tokens() const {
    std::lock_guard lock(mutex_);
    return prompt_tokens_;
}
int64_t Metrics::generation_tokens() const {
    std::lock_guard lock(mutex_);
    return generation_tokens_;
}
int64_t Metrics::cancelled() const {
    std::lock_guard lock(mutex_);
    return cancelled_;
}
int64_t Metrics::errors(std::string_view kind) const {
    std::lock_guard lock(mutex_);
    const auto it = errors_.find(kind);
    return it == errors_.end() ? 0 : it->second;
}
int64_t Metrics::rejected(std::string_view reason) const {
    std::lock_guard lock(mutex_);
    const auto it = rejected_.find(reason);
    return it == rejected_.end() ? 0 : it->second;
}

std::string Metrics::render(const LoopStatus& status, const engine::MemoryReport& memory) const {
    const std::string model = "model_name=\"" + escape(info_.model_name) + "\"";
    std::string out;
    std::lock_guard lock(mutex_);

    header(out, "vllm:num_requests_running", "gauge", "Number of requests in model execution batches.");
    sample(out, "vllm:num_requests_running", model, status.running);
    header(out, "vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.");
    sample(out, "vllm:num_requests_waiting", model, status.waiting);
    header(out, "vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.");
    const double used = status.kv_blocks_total > 0
                            ? double(status.kv_blocks_total - status.kv_blocks_free) / status.kv_blocks_total
                            : 0.0;
    sample(out, "vllm:kv_cache_usage_perc", model, used);

    header(out, "vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.");
    sample(out, "vllm:prompt_tokens_total", model, double(prompt_tokens_));
    header(out, "vllm:generation_tokens_total", "counter", "Number of generation tokens processed.");
    sample(out, "vllm:generation_tokens_total", model, double(generation_tokens_));

    const auto histogram = [&](std::string_view name, std::string_view help, const prometheus::Histogram& h) {
        header(out, name, "histogram", help);
        h.render(out, name, model);
    };
    histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", ttft_);
    histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", itl_);
    histogram("vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", e2e_);

    // The backend's memory by purpose: device memory for cuda, host RAM for cpu (memory.where says which).
    header(out, "loom_vram_bytes", "gauge", "Bytes in use per purpose (weights, kv_cache, workspace).");
    for (const auto& u : memory.uses)
        sample(out, "loom_vram_bytes", "purpose=\"" + escape(u.purpose) + "\"", double(u.used));
    header(out, "loom_vram_reserved_bytes", "gauge", "Bytes reserved per purpose.");
    for (const auto& u : memory.uses)
        sample(out, "loom_vram_reserved_bytes", "purpose=\"" + escape(u.purpose) + "\"", double(u.reserved));
    header(out, "loom_memory_device_resident", "gauge", "1 when every arena was verified to be device memory at load.");
    sample(out, "loom_memory_device_resident", "", memory.device_resident ? 1 : 0);

    header(out, "loom_requests_cancelled_total", "counter", "Requests cancelled (client gone, /cancel, shutdown).");
    sample(out, "loom_requests_cancelled_total", "", double(cancelled_));
    header(out, "loom_request_errors_total", "counter", "Requests that failed, by kind.");
    for (const auto& [kind, n] : errors_)
        sample(out, "loom_request_errors_total", "kind=\"" + escape(kind) + "\"", double(n));
    header(out, "loom_requests_rejected_total", "counter", "Requests refused before queueing, by reason.");
    for (const auto& [reason, n] : rejected_)
        sample(out, "loom_requests_rejected_total", "reason=\"" + escape(reason) + "\"", double(n));
    header(out, "loom_backend_info", "gauge", "The backend and device serving the model.");
    sample(out, "loom_backend_info",
           "backend=\"" + escape(info_.backend) + "\",device=\"" + escape(info_.device) + "\"", 1);
    return out;
}

}  // namespace loom::worker
