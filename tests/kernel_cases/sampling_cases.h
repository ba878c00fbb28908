// GPU sampler cases: random logits rows, parameters and histories, the filter configurations, rows
// that must fail with a named cause, the timing setups; engine::Sampler as the reference, the
// log-probability tolerance, and the bytes a call must move.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "kernels/sampling.h"

namespace loom::kcases {

// The GPU sums the softmax in another order than the CPU: log-probabilities may differ by this.
inline constexpr double kSamplingLogprobTolerance = 1e-5;
bool logprob_close(float a, float b);

// Random histories hold fewer tokens than kSamplingMaxHistory; a request's bias entries never
// exceed kSamplingMaxBias (a whole small vocabulary banned by bias).
inline constexpr int kSamplingMaxHistory = 400;
inline constexpr int kSamplingMaxBias = 600;

// Requests over a logits matrix: request i samples row rows[i] of `logits` (n_vocab wide) with
// params[i], histories[i], steps[i] and n_tops[i] (-1: no log-probabilities).
struct SamplingBatch {
    std::vector<float> logits;
    std::vector<engine::SamplingParams> params;
    std::vector<std::vector<int32_t>> histories;
    std::vector<uint64_t> steps;
    std::vector<int> n_tops, rows;
    size_t size() const { return params.size(); }
};

// One row of a random kind: normal at varied scales, integer ties, about half banned, flat, peaked.
std::vector<float> random_sampling_logits(int n_vocab, std::mt19937_64& rng);
// Every filter on or off at ordinary and extreme values, penalties, repeated bias ids.
engine::SamplingParams random_sampling_params(int n_vocab, std::mt19937_64& rng);
// Up to kSamplingMaxHistory ids, mostly among the first 40 (so penalties bite).
std::vector<int32_t> random_sampling_history(int n_vocab, std::mt19937_64& rng);
// n random requests over n random rows (about a third point at an earlier row instead of their own).
SamplingBatch random_sampling_batch(int n_vocab, int n, std::mt19937_64& rng);

// The random test: `trials` batches of each of kSamplingBatchSizes requests per vocabulary, all
// drawn from one generator seeded kSamplingRandomSeed.
struct SamplingRandomCase {
    int n_vocab, trials;
};
inline constexpr uint64_t kSamplingRandomSeed = 2024;
inline constexpr int kSamplingBatchSizes[] = {1, 7, 32};
std::vector<SamplingRandomCase> sampling_random_cases();

// Each filter alone, then combined, and a near-zero temperature; each config samples 32 steps of one
// seed (1234 + its index) over a peaked and a flat-with-ties row (generator seeded kSamplingFilterSeed).
inline constexpr uint64_t kSamplingFilterSeed = 77;
inline constexpr int kSamplingFilterVocabs[] = {512, 49152};
std::vector<engine::SamplingParams> sampling_filter_configs();
SamplingBatch sampling_filter_batch(int n_vocab, const engine::SamplingParams& config, size_t config_index,
                                    std::mt19937_64& rng);

// A batch of 12 requests whose even rows are broken (NaN, +inf, all banned, a penalty overflowing
// to +inf, everything banned by bias, a history id outside the vocabulary, an invalid top_p), each
// with the error it must give; the odd rows sample normally (generator seeded kSamplingErrorSeed).
struct SamplingExpectedError {
    size_t request;
    std::string text;
    bool exact;  // else `text` starts the message
};
struct SamplingErrorBatch {
    SamplingBatch batch;
    std::vector<SamplingExpectedError> errors;
    std::vector<size_t> ok;
};
inline constexpr uint64_t kSamplingErrorSeed = 5;
SamplingErrorBatch sampling_error_batch(int n_vocab, std::mt19937_64& rng);

// What engine::Sampler answers for request i: the token (with log-probabilities when n_top >= 0),
// or the error message.
struct SamplingOutcome {
    engine::SampledToken token;
    std::string error;
};
SamplingOutcome sampling_reference(const SamplingBatch& b, size_t i, int n_vocab);

// Timed calls (the GPU test's timing and kernel_bench): greedy, top_p 0.9, top_p 0.9 with 5
// log-probabilities; 1 or 32 rows of kSamplingTimingVocab logits in the test, the model's vocabulary in
// kernel_bench.
struct SamplingTimingSetup {
    std::string name, label;  // "top_p 0.9 + 5 logprobs", "top_p_logprobs"
    engine::SamplingParams params;
    int n_top;
};
inline constexpr int kSamplingTimingVocab = 151936;
inline constexpr int kSamplingTimingRows[] = {1, 32};
std::vector<SamplingTimingSetup> sampling_timing_setups();
// rows x n_vocab N(0, 3) logits (seed 4242).
std::vector<float> sampling_timing_logits(int n_vocab, int rows);
// The packed row of request `row` of a timing setup: step `row`, logits row `row`, no history or bias.
kernels::SamplingRow sampling_timing_row(const SamplingTimingSetup& s, int row);
// Whether the setup's rows need sample_rows' sort (as CudaSampler decides): a temperature or log-probabilities.
bool sampling_timing_sorts(const SamplingTimingSetup& s);

// A lower bound on a call's traffic: each row's logits read once, its result written.
inline double sampling_bytes(int rows, int n_vocab) {
    return static_cast<double>(rows) * (4.0 * n_vocab + static_cast<double>(sizeof(kernels::SampleResult)));
}

}  // namespace loom::kcases
