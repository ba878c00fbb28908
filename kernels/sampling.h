// Batched GPU token sampling, bit-exact with engine::Sampler (docs/SAMPLING.md, "GPU sampler").
#pragma once

#include <cstdint>

#include "kernels/stream.h"

namespace loom::kernels {

inline constexpr int kMaxTopLogprobs = 20;

// One batch row's sampling parameters, packed on the host and copied to the device. The parameters
// are already validated (engine::validate), history ids lie in [0, n_vocab) and bias ids too.
struct SamplingRow {
    float temperature, top_p, min_p, repetition_penalty, presence_penalty, frequency_penalty;
    int32_t top_k;
    uint64_t seed, step;                    // Philox draw = philox::sampling_bits(seed, step)
    int32_t logits_row;                     // which row of the logits matrix
    int32_t history_offset, history_count;  // the penalty window, already cut; count 0 when penalties are off
    int32_t bias_offset, bias_count;        // entries in the bias array, applied in order
    int32_t n_top;                          // -1: no log-probabilities; else 0..kMaxTopLogprobs alternatives
};

struct LogitBias {
    int32_t token;
    float bias;
};

enum SampleStatus : int32_t {
    kSampleOk = 0,
    kSampleBadLogit = 1,   // NaN or +inf after bias/penalties: token = the first such id, logprob = its value
    kSampleAllBanned = 2,  // every logit is -inf
    kSampleNeedsSort = 3,  // the row needs the σ sort, which the call promised away (sort_rows = false)
};

struct SampleResult {
    int32_t token;
    int32_t status;
    float logprob;  // of token; 0 when n_top was -1
    int32_t n_top;  // entries of top_tokens/top_logprobs: min(n_top, n_vocab), 0 for n_top -1 or a bad row
    int32_t top_tokens[kMaxTopLogprobs];
    float top_logprobs[kMaxTopLogprobs];
};

// Device scratch that sample_rows needs for up to max_rows rows (about 36 bytes per row and token,
// plus CUB's sort storage).
uint64_t sampling_workspace_bytes(int max_rows, int n_vocab);

// One token per row of `rows`, written to results[row]: logits (n_logits_rows, logits_row_stride)
// holds each row's logits at rows[r].logits_row; history and biases hold the windows and bias
// entries the rows point into. Greedy rows (temperature 0) without top log-probabilities need no
// sort; sort_rows = false promises that every row is such a row, which skips the sort's launches
// (a row breaking the promise reports kSampleNeedsSort). workspace: workspace_bytes >=
// sampling_workspace_bytes(n_rows, n_vocab) bytes, any contents. All pointers are device pointers;
// asynchronous on `stream`; allocates nothing.
void sample_rows(const float* logits, int64_t logits_row_stride, int n_vocab, const SamplingRow* rows, int n_rows,
                 const int32_t* history, const LogitBias* biases, void* workspace, uint64_t workspace_bytes,
                 SampleResult* results, Stream stream, bool sort_rows = true);

}  // namespace loom::kernels
