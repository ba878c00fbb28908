// CudaSampler: request validation and packing, one copy each way, the GPU results as SampledTokens.
#include "engine/cuda/cuda_sampler.h"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "engine/sampling_row.h"
#include "kernels/cuda_check.h"

namespace loom::engine::cuda {
namespace {

constexpr uint64_t kAlign = 256;
constexpr uint64_t kPackAlign = 16;

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// The inputs region for the given counts: rows, then windows, then biases.
struct InputsLayout {
    uint64_t history, bias, end;
};

InputsLayout inputs_layout(int rows, int history_tokens, int bias_entries) {
    InputsLayout l{};
    l.history = align_up(static_cast<uint64_t>(rows) * sizeof(kernels::SamplingRow), kPackAlign);
    l.bias = align_up(l.history + static_cast<uint64_t>(history_tokens) * sizeof(int32_t), kPackAlign);
    l.end = l.bias + static_cast<uint64_t>(bias_entries) * sizeof(kernels::LogitBias);
    return l;
}

std::string number(double v) {
    char text[32];
    std::snprintf(text, sizeof text, "%.9g", v);
    return text;
}

// The part of the history that penalties see, or nothing when they are off (as Sampler decides).
std::span<const int32_t> penalty_window(const SamplingParams& p, std::span<const int32_t> history, size_t& start) {
    const bool penalties_on =
        p.penalty_last_n != 0 && (p.repetition_penalty != 1 || p.presence_penalty != 0 || p.frequency_penalty != 0);
    start = 0;
    if (!penalties_on) return {};
    const auto last_n = static_cast<size_t>(p.penalty_last_n);
    start = p.penalty_last_n < 0 || last_n >= history.size() ? 0 : history.size() - last_n;
    return history.subspan(start);
}

// The reason a request cannot be sampled, or "" (the CPU Sampler's messages).
std::string request_error(const SampleRequest& r, int32_t n_vocab) {
    try {
        validate(*r.params, n_vocab);
        if (r.n_top < -1 || r.n_top > kernels::kMaxTopLogprobs)
            throw SamplingParamError("top_logprobs", "must be in [-1, " + std::to_string(kernels::kMaxTopLogprobs) +
                                                         "], got " + std::to_string(r.n_top));
    } catch (const SamplingParamError& e) {
        return e.what();
    }
    size_t start = 0;
    const auto window = penalty_window(*r.params, r.history, start);
    for (size_t i = 0; i < window.size(); ++i) {
        if (window[i] < 0 || window[i] >= n_vocab)
            return "history[" + std::to_string(start + i) + "] = token id " + std::to_string(window[i]) +
                   " is outside the vocabulary [0, " + std::to_string(n_vocab) + ")";
    }
    return {};
}

}  // namespace

uint64_t CudaSampler::device_bytes(int n_vocab, int max_rows, int max_history_tokens, int max_bias_entries) {
    return align_up(kernels::sampling_workspace_bytes(max_rows, n_vocab), kAlign) +
           align_up(inputs_layout(max_rows, max_history_tokens, max_bias_entries).end, kAlign) +
           static_cast<uint64_t>(max_rows) * sizeof(kernels::SampleResult);
}

CudaSampler::CudaSampler(void* device_memory, uint64_t bytes, int n_vocab, int max_rows, int max_history_tokens,
                         int max_bias_entries, kernels::Stream stream)
    : n_vocab_(n_vocab),
      max_rows_(max_rows),
      max_history_(max_history_tokens),
      max_bias_(max_bias_entries),
      stream_(stream),
      device_memory_(static_cast<char*>(device_memory)) {
    if (max_rows <= 0 || max_history_tokens < 0 || max_bias_entries < 0)
        throw std::invalid_argument("CudaSampler: max_rows " + std::to_string(max_rows) + ", max_history_tokens " +
                                    std::to_string(max_history_tokens) + ", max_bias_entries " +
                                    std::to_string(max_bias_entries));
    const uint64_t needed = device_bytes(n_vocab, max_rows, max_history_tokens, max_bias_entries);
    if (bytes < needed)
        throw std::invalid_argument("CudaSampler: " + std::to_string(bytes) + " device bytes given, " +
                                    std::to_string(needed) + " needed");
    workspace_bytes_ = align_up(kernels::sampling_workspace_bytes(max_rows, n_vocab), kAlign);
    inputs_offset_ = workspace_bytes_;
    inputs_capacity_ = inputs_layout(max_rows, max_history_tokens, max_bias_entries).end;
    results_offset_ = inputs_offset_ + align_up(inputs_capacity_, kAlign);
    void* in = nullptr;
    LOOM_CUDA_CHECK(cudaMallocHost(&in, inputs_capacity_));
    staging_in_ = static_cast<char*>(in);
    try {
        void* out = nullptr;
        LOOM_CUDA_CHECK(cudaMallocHost(&out, static_cast<size_t>(max_rows) * sizeof(kernels::SampleResult)));
        staging_out_ = static_cast<kernels::SampleResult*>(out);
        LOOM_CUDA_CHECK(cudaEventCreateWithFlags(&inputs_copied_, cudaEventDisableTiming));
    } catch (...) {
        cudaFreeHost(staging_out_);
        cudaFreeHost(staging_in_);
        throw;
    }
}

CudaSampler::~CudaSampler() {
    cudaEventDestroy(inputs_copied_);
    cudaFreeHost(staging_out_);
    cudaFreeHost(staging_in_);
}

void CudaSampler::enqueue(const float* device_logits, int64_t row_stride, std::span<const SampleRequest> requests) {
    if (requests.size() > static_cast<size_t>(max_rows_))
        throw std::length_error("CudaSampler: " + std::to_string(requests.size()) + " requests, at most " +
                                std::to_string(max_rows_));
    if (row_stride < n_vocab_)
        throw std::invalid_argument("CudaSampler: logits row_stride " + std::to_string(row_stride) +
                                    " is below n_vocab " + std::to_string(n_vocab_));
    // A row outside the logits matrix would be read past its end (the kernels trust logits_row).
    for (size_t i = 0; i < requests.size(); ++i)
        if (requests[i].logits_row < 0 || requests[i].logits_row >= max_rows_)
            throw std::out_of_range("CudaSampler: request " + std::to_string(i) + " has logits_row " +
                                    std::to_string(requests[i].logits_row) + ", outside [0, " +
                                    std::to_string(max_rows_) + ")");
    std::vector<Pending> pending(requests.size());
    int n_rows = 0, n_history = 0, n_bias = 0;
    for (size_t i = 0; i < requests.size(); ++i) {
        pending[i].error = request_error(requests[i], n_vocab_);
        if (!pending[i].error.empty()) continue;
        size_t start = 0;
        n_history += static_cast<int>(penalty_window(*requests[i].params, requests[i].history, start).size());
        n_bias += static_cast<int>(requests[i].params->logit_bias.size());
        pending[i].row = n_rows++;
    }
    if (n_history > max_history_ || n_bias > max_bias_)
        throw std::length_error("CudaSampler: the batch's penalty windows hold " + std::to_string(n_history) +
                                " tokens (at most " + std::to_string(max_history_) + ") and its biases " +
                                std::to_string(n_bias) + " entries (at most " + std::to_string(max_bias_) + ")");
    pending_ = std::move(pending);
    if (n_rows == 0) return;

    // The previous enqueue's copy out of the staging may still be queued behind other work.
    LOOM_CUDA_CHECK(cudaEventSynchronize(inputs_copied_));
    const InputsLayout lay = inputs_layout(n_rows, n_history, n_bias);
    auto* rows = reinterpret_cast<kernels::SamplingRow*>(staging_in_);
    auto* history = reinterpret_cast<int32_t*>(staging_in_ + lay.history);
    auto* bias = reinterpret_cast<kernels::LogitBias*>(staging_in_ + lay.bias);
    int history_at = 0, bias_at = 0;
    bool sorts = false;
    for (size_t i = 0; i < requests.size(); ++i) {
        if (pending_[i].row < 0) continue;
        const SampleRequest& r = requests[i];
        const SamplingParams& p = *r.params;
        size_t start = 0;
        const auto window = penalty_window(p, r.history, start);
        std::memcpy(history + history_at, window.data(), window.size() * sizeof(int32_t));
        for (size_t b = 0; b < p.logit_bias.size(); ++b)
            bias[bias_at + static_cast<int>(b)] = {p.logit_bias[b].first, p.logit_bias[b].second};
        rows[pending_[i].row] =
            sampling_row(p, r.step, r.logits_row, history_at, static_cast<int32_t>(window.size()), bias_at, r.n_top);
        history_at += static_cast<int>(window.size());
        bias_at += static_cast<int>(p.logit_bias.size());
        sorts = sorts || p.temperature > 0 || r.n_top > 0;
    }

    char* inputs = device_memory_ + inputs_offset_;
    auto* results = reinterpret_cast<kernels::SampleResult*>(device_memory_ + results_offset_);
    LOOM_CUDA_CHECK(cudaMemcpyAsync(inputs, staging_in_, lay.end, cudaMemcpyHostToDevice, stream_));
    LOOM_CUDA_CHECK(cudaEventRecord(inputs_copied_, stream_));
    kernels::sample_rows(device_logits, row_stride, n_vocab_, reinterpret_cast<const kernels::SamplingRow*>(inputs),
                         n_rows, reinterpret_cast<const int32_t*>(inputs + lay.history),
                         reinterpret_cast<const kernels::LogitBias*>(inputs + lay.bias), device_memory_,
                         workspace_bytes_, results, stream_, sorts);
    LOOM_CUDA_CHECK(cudaMemcpyAsync(staging_out_, results, static_cast<size_t>(n_rows) * sizeof(kernels::SampleResult),
                                    cudaMemcpyDeviceToHost, stream_));
}

std::vector<SampleOutcome> CudaSampler::results() const {
    std::vector<SampleOutcome> out(pending_.size());
    for (size_t i = 0; i < pending_.size(); ++i) {
        SampleOutcome& o = out[i];
        if (pending_[i].row < 0) {
            o.error = pending_[i].error;
            continue;
        }
        const kernels::SampleResult& r = staging_out_[pending_[i].row];
        switch (r.status) {
            case kernels::kSampleOk:
                o.token.token = r.token;
                o.token.logprob = r.logprob;
                for (int t = 0; t < r.n_top; ++t) o.token.top_logprobs.push_back({r.top_tokens[t], r.top_logprobs[t]});
                break;
            case kernels::kSampleBadLogit:
                o.error = "logit of token " + std::to_string(r.token) + " is " + number(r.logprob) +
                          " after bias and penalties";
                break;
            case kernels::kSampleAllBanned: o.error = "every token's logit is -inf: nothing can be sampled"; break;
            default: o.error = "GPU sampler status " + std::to_string(r.status); break;
        }
    }
    return out;
}

}  // namespace loom::engine::cuda
