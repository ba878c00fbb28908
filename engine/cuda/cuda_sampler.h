// The batched GPU sampler: packs requests, runs kernels::sample_rows, and turns its results into
// the CPU Sampler's answers (same tokens bit for bit, same error causes). No CUDA headers.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "kernels/sampling.h"
#include "kernels/stream.h"

// The runtime's cudaEvent_t is a pointer to this opaque struct.
struct CUevent_st;

namespace loom::engine::cuda {

// One row to sample: its parameters, its history (prompt + generated so far; the penalty window is
// cut here), its step (0 for the first generated token), how many top log-probabilities to return
// (-1: none, and the token's own log-probability is not computed and reads 0; at most
// kernels::kMaxTopLogprobs), and its row of the logits matrix (in [0, max_rows)).
struct SampleRequest {
    const SamplingParams* params;
    std::span<const int32_t> history;
    uint64_t step;
    int n_top;
    int logits_row;
};

// error is empty when the token was sampled; else it names the cause in the words of
// SamplingParamError / SamplingError (invalid parameter, history id outside the vocabulary, a NaN or
// +inf logit after bias and penalties, every token banned).
struct SampleOutcome {
    SampledToken token;
    std::string error;
};

class CudaSampler {
public:
    // Device bytes the sampler needs (workspace + rows + history + bias + results), for the
    // caller's VRAM plan.
    static uint64_t device_bytes(int n_vocab, int max_rows, int max_history_tokens, int max_bias_entries);

    // device_memory: device_bytes(...) bytes carved out by the caller (it outlives the sampler);
    // pinned host staging is allocated here, never during sampling. Throws std::invalid_argument for
    // too small a region or bad limits, kernels::CudaError when the pinned allocation fails.
    CudaSampler(void* device_memory, uint64_t bytes, int n_vocab, int max_rows, int max_history_tokens,
                int max_bias_entries, kernels::Stream stream);
    ~CudaSampler();
    CudaSampler(const CudaSampler&) = delete;
    CudaSampler& operator=(const CudaSampler&) = delete;

    // device_logits (max_rows or more rows, row_stride >= n_vocab) on the device; every request's
    // logits_row must lie in [0, max_rows). Validates and packs the requests (a request that cannot
    // be sampled gets its error and no row), copies rows, windows and biases in one host-to-device
    // copy, launches sample_rows and queues one device-to-host copy of the results into pinned
    // memory; returns without synchronizing (a later enqueue first waits for this one's input copy,
    // since it rewrites the pinned staging). Throws std::out_of_range naming logits_row for a row
    // outside [0, max_rows), std::invalid_argument for row_stride < n_vocab, std::length_error
    // when the batch exceeds max_rows, max_history_tokens (of windows) or max_bias_entries; these
    // throws queue nothing and leave the last enqueue's results in place.
    void enqueue(const float* device_logits, int64_t row_stride, std::span<const SampleRequest> requests);

    // After the stream was synchronized: the outcomes of the last enqueue, in request order.
    std::vector<SampleOutcome> results() const;

private:
    struct Pending {
        std::string error;  // set on the host: the request got no row
        int row = -1;
    };

    int n_vocab_;
    int max_rows_;
    int max_history_;
    int max_bias_;
    kernels::Stream stream_;
    char* device_memory_;
    uint64_t workspace_bytes_;
    uint64_t inputs_offset_;  // rows, then windows, then biases (packed per enqueue)
    uint64_t results_offset_;
    uint64_t inputs_capacity_;
    char* staging_in_ = nullptr;                    // pinned mirror of the inputs region
    kernels::SampleResult* staging_out_ = nullptr;  // pinned, max_rows results
    CUevent_st* inputs_copied_ = nullptr;           // after the last host-to-device copy of staging_in_
    std::vector<Pending> pending_;
};

}  // namespace loom::engine::cuda
