// Token sampling: parameters and their validation, the penalty/filter/draw pipeline, log-probabilities.
//
// The exact semantics (which a GPU sampler reproduces bit for bit through core/sampling_math.h and
// core/philox.h) are specified in docs/SAMPLING.md; in brief, for the logits of step t of a request
// and the request's token history (prompt + generated so far):
//   1. l = logits; l[id] += bias for each logit_bias entry, in the order given (float32 adds).
//   2. Penalties over the window = the last penalty_last_n history tokens (0: none, -1: all). For each
//      distinct token in the window, with c its count there, in float32:
//        l = l > 0 ? l / repetition_penalty : l * repetition_penalty;
//        l = l - presence_penalty;
//        l = l - float(c) * frequency_penalty.
//   3. temperature == 0: the token with the largest l, ties to the lowest id. Done.
//   4. The order σ: descending l, ties by ascending id. Each token weighs the integer
//      w ≈ exp(z) * 2^40, z = (double(l) - double(l_max)) / double(temperature), by the exact recipe
//      of sampling::weight (within 0.51 of exp(z) * 2^40; the top token weighs exactly 2^40; w = 0
//      for z <= -32), so p = w / Σw is the softmax of z up to that rounding.
//   5. K = the first top_k tokens of σ (all when top_k == 0); W = Σ_K w.
//   6. top-p (top_p < 1): keep the shortest σ-prefix of K whose cumulative weight is >= ceil(top_p * W).
//   7. min-p (min_p > 0): of those, keep the tokens with w >= ceil(min_p * 2^40) (p >= min_p * p_max).
//   8. F = the kept tokens with w > 0, W_F = Σ_F w. With u = philox::sampling_bits(seed, t) * 2^-53
//      and r = floor(u * W_F) (exact, in [0, W_F)), the token is the one of F whose cumulative range
//      along σ holds r: C_before <= r < C_before + w. A kept token is drawn with probability w / W_F.
// Sums are exact integers, so their order is free. Log-probabilities are the log-softmax over the
// whole vocabulary of z (step 4, with temperature 1 when temperature == 0), in double with std::exp
// and std::log (not part of the bit-exact contract).
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "engine/errors.h"

namespace loom::engine {

struct SamplingParams {
    float temperature = 1.0f;                           // >= 0; 0 means greedy
    int32_t top_k = 0;                                  // >= 0; 0 means off
    float top_p = 1.0f;                                 // (0, 1]; 1 means off
    float min_p = 0.0f;                                 // [0, 1]; 0 means off
    float repetition_penalty = 1.0f;                    // > 0; 1 means off
    float presence_penalty = 0.0f;                      // finite; 0 means off
    float frequency_penalty = 0.0f;                     // finite; 0 means off
    int32_t penalty_last_n = 64;                        // >= -1; 0: no window, -1: the whole history
    std::vector<std::pair<int32_t, float>> logit_bias;  // (token id, bias); bias may be -inf (ban)
    uint64_t seed = 0;
};

// A parameter is out of its range; field() names it ("top_p", "logit_bias", ...).
class SamplingParamError : public RequestError {
public:
    SamplingParamError(std::string field, const std::string& what)
        : RequestError(field, what, "invalid sampling parameter " + field + ": " + what) {}
};

// The inputs of one step cannot be sampled: wrong logits length, a NaN or +inf logit, a history
// token outside the vocabulary, or every token banned.
class SamplingError : public EngineError {
public:
    using EngineError::EngineError;
};

// Throws SamplingParamError naming the first field out of range (n_vocab bounds logit_bias ids).
void validate(const SamplingParams& params, int32_t n_vocab);

struct TokenLogprob {
    int32_t token;
    float logprob;
};

struct SampledToken {
    int32_t token;
    float logprob;                           // of `token`
    std::vector<TokenLogprob> top_logprobs;  // the n highest, in σ order (logit desc, id asc)
};

// One token of F with its probability w / W_F.
struct Candidate {
    int32_t token;
    double probability;
};

// Samples tokens of one request. Every result is a pure function of (params, logits, history,
// step): the object holds validated parameters and reusable scratch memory only, so it is not safe
// to share between threads, but calls may come in any order and give the same answers.
class Sampler {
public:
    // Validates params (SamplingParamError) and sizes the scratch buffers.
    Sampler(SamplingParams params, int32_t n_vocab);

    const SamplingParams& params() const { return params_; }
    int32_t n_vocab() const { return n_vocab_; }

    // The token for step `step` (0 for a request's first generated token).
    int32_t sample(std::span<const float> logits, std::span<const int32_t> history, uint64_t step);

    // The token for given random bits (< 2^53): sample() is sample_at(..., philox::sampling_bits(seed, step)).
    int32_t sample_at(std::span<const float> logits, std::span<const int32_t> history, uint64_t random_bits);

    // The same token as sample(), with its log-probability and the n_top most likely tokens' (n_top >= 0,
    // clamped to n_vocab).
    SampledToken sample_with_logprobs(std::span<const float> logits, std::span<const int32_t> history, uint64_t step,
                                      int32_t n_top);

    // Steps 1-2 only: l after bias and penalties. A view of scratch memory, valid until the next call.
    std::span<const float> adjusted_logits(std::span<const float> logits, std::span<const int32_t> history);

    // F in σ order with renormalized probabilities: what step 8 draws from. Greedy: the argmax with
    // probability 1.
    std::vector<Candidate> candidates(std::span<const float> logits, std::span<const int32_t> history);

private:
    // Where a cumulative weight position falls along σ: the token, and the weight before it.
    struct Located {
        int32_t token;
        uint64_t before;
    };

    // Steps 4-7: weights_ (zeroed where min-p drops), top_p_boundary_, total_kept_.
    void build_candidates();
    // The token whose cumulative weight range along σ (over K) holds `position` (< the total).
    Located locate(uint64_t position);
    // Without top_k: locate by radix selection over the order keys, 11 + 11 + 10 bits.
    Located locate_by_radix(uint64_t position);
    bool sigma_before_or_at(int32_t token, int32_t boundary) const;
    bool in_kept(int32_t token) const;
    float logprob_of(int32_t token, double log_normalizer) const;
    double log_normalizer() const;

    SamplingParams params_;
    int32_t n_vocab_;
    bool penalties_on_;
    bool top_k_on_;  // 0 < top_k < n_vocab: K is an explicit sorted list

    // Set by adjusted_logits: l, its max, the lowest id holding it (NaN/+inf/all -inf are refused).
    std::vector<float> logits_;
    float max_logit_ = 0;
    int32_t argmax_ = 0;

    std::vector<uint64_t> weights_;        // w by token id (with top_k on, only K's are written)
    std::vector<int32_t> sorted_top_k_;    // with top_k on: K in σ order
    std::vector<uint16_t> top_digits_;     // without top_k: the top 11 bits of each token's order key
    std::vector<uint64_t> top_histogram_;  // without top_k: Σw by top digit
    std::vector<uint64_t> histogram_;
    std::vector<int32_t> members_;        // radix selection's current bucket, ascending ids
    std::vector<int32_t> scratch_ids_;    // partial sorts over the vocabulary
    std::vector<int32_t> window_counts_;  // zero between calls
    uint64_t total_kept_ = 0;             // W_F = Σ_F w
    int32_t top_p_boundary_ = -1;         // F's last σ token from top-p, or -1 when top-p is off
};

}  // namespace loom::engine
