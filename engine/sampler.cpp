// The sampling pipeline of sampler.h: bias, penalties, greedy or filtered Philox draw, log-probabilities.
#include "engine/sampler.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <limits>
#include <numeric>

#include "core/philox.h"
#include "core/sampling_math.h"

namespace loom::engine {
namespace {

constexpr float kInfinity = std::numeric_limits<float>::infinity();

// Radix selection digits of the 32-bit order key: 11 top bits, 11 middle, 10 low.
constexpr int kTopShift = 21;
constexpr int kMiddleShift = 10;
constexpr size_t kBuckets = 2048;

std::string number(double v) {
    char text[32];
    std::snprintf(text, sizeof text, "%.9g", v);
    return text;
}

bool in_vocab(int32_t id, int32_t n_vocab) { return id >= 0 && id < n_vocab; }

std::string vocab_range(int32_t n_vocab) { return "[0, " + std::to_string(n_vocab) + ")"; }

uint32_t order_key(float logit) { return sampling::order_key(std::bit_cast<uint32_t>(logit)); }

// The order key shifted into int32 order.
int32_t signed_order_key(float logit) { return static_cast<int32_t>(order_key(logit) ^ 0x80000000u); }

#if defined(__x86_64__) && defined(__GNUC__)
// AVX2 doubles the vector width where the CPU has it: the same IEEE operations, so the same bits.
#define LOOM_WIDE_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define LOOM_WIDE_VECTOR_CLONES
#endif

// weights[i] = the weight of logits[i] (sampling_math.h), for all n; returns their sum.
LOOM_WIDE_VECTOR_CLONES uint64_t compute_weights(const float* logits, uint64_t* weights, size_t n, float max_logit,
                                                 float temperature) {
    uint64_t total = 0;
    for (size_t i = 0; i < n; ++i) {
        weights[i] = sampling::weight(sampling::exponent(logits[i], max_logit, temperature));
        total += weights[i];
    }
    return total;
}

// σ: descending logit, ties by ascending id.
struct SigmaBefore {
    const float* logits;
    bool operator()(int32_t a, int32_t b) const { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); }
};

// The bucket holding `position` when buckets are walked from `highest` (the top non-empty one)
// down; `position` becomes the offset inside it and `before` grows by the weight of those passed.
size_t pick_bucket(const std::vector<uint64_t>& histogram, size_t highest, uint64_t& position, uint64_t& before) {
    for (size_t b = highest + 1; b-- > 0;) {
        if (position < histogram[b]) return b;
        position -= histogram[b];
        before += histogram[b];
    }
    throw std::logic_error("sampler: position beyond the total weight");
}

}  // namespace

void validate(const SamplingParams& p, int32_t n_vocab) {
    const auto fail = [](const char* field, const std::string& what) { throw SamplingParamError(field, what); };
    if (n_vocab <= 0 || n_vocab > sampling::kMaxVocab)
        fail("n_vocab", "must be in [1, " + std::to_string(sampling::kMaxVocab) + "], got " + std::to_string(n_vocab));
    if (!(std::isfinite(p.temperature) && p.temperature >= 0))
        fail("temperature", "must be finite and >= 0, got " + number(p.temperature));
    if (p.top_k < 0) fail("top_k", "must be >= 0 (0 = off), got " + std::to_string(p.top_k));
    if (!(p.top_p > 0 && p.top_p <= 1)) fail("top_p", "must be in (0, 1], got " + number(p.top_p));
    if (!(p.min_p >= 0 && p.min_p <= 1)) fail("min_p", "must be in [0, 1], got " + number(p.min_p));
    if (!(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0))
        fail("repetition_penalty", "must be finite and > 0, got " + number(p.repetition_penalty));
    if (!std::isfinite(p.presence_penalty))
        fail("presence_penalty", "must be finite, got " + number(p.presence_penalty));
    if (!std::isfinite(p.frequency_penalty))
        fail("frequency_penalty", "must be finite, got " + number(p.frequency_penalty));
    if (p.penalty_last_n < -1)
        fail("penalty_last_n", "must be >= -1 (-1 = whole history), got " + std::to_string(p.penalty_last_n));
    for (const auto& [id, bias] : p.logit_bias) {
        if (!in_vocab(id, n_vocab))
            fail("logit_bias", "token id " + std::to_string(id) + " is outside the vocabulary " + vocab_range(n_vocab));
        if (std::isnan(bias) || bias == kInfinity)
            fail("logit_bias",
                 "bias of token id " + std::to_string(id) + " must be finite or -inf, got " + number(bias));
    }
}

Sampler::Sampler(SamplingParams params, int32_t n_vocab) : params_(std::move(params)), n_vocab_(n_vocab) {
    validate(params_, n_vocab_);
    // Neutral penalties leave every logit bit-identical, so skipping them changes no result.
    penalties_on_ = params_.penalty_last_n != 0 && (params_.repetition_penalty != 1 || params_.presence_penalty != 0 ||
                                                    params_.frequency_penalty != 0);
    top_k_on_ = params_.top_k > 0 && params_.top_k < n_vocab_;
    const auto n = static_cast<size_t>(n_vocab_);
    logits_.resize(n);
    weights_.resize(n);
    if (!top_k_on_) {
        top_digits_.resize(n);
        top_histogram_.resize(kBuckets);
        histogram_.resize(kBuckets);
    }
    if (penalties_on_) window_counts_.assign(n, 0);
}

std::span<const float> Sampler::adjusted_logits(std::span<const float> logits, std::span<const int32_t> history) {
    if (logits.size() != logits_.size())
        throw SamplingError("logits has " + std::to_string(logits.size()) + " entries, the vocabulary " +
                            std::to_string(n_vocab_));
    std::copy(logits.begin(), logits.end(), logits_.begin());
    for (const auto& [id, bias] : params_.logit_bias) logits_[static_cast<size_t>(id)] += bias;

    if (penalties_on_) {
        const auto last_n = static_cast<size_t>(params_.penalty_last_n);
        const size_t start = params_.penalty_last_n < 0 || last_n >= history.size() ? 0 : history.size() - last_n;
        const std::span<const int32_t> window = history.subspan(start);
        // Check every id before counting so a throw leaves window_counts_ all zero.
        for (size_t i = 0; i < window.size(); ++i) {
            if (!in_vocab(window[i], n_vocab_))
                throw SamplingError("history[" + std::to_string(start + i) + "] = token id " +
                                    std::to_string(window[i]) + " is outside the vocabulary " + vocab_range(n_vocab_));
        }
        for (const int32_t token : window) ++window_counts_[static_cast<size_t>(token)];
        const float repetition = params_.repetition_penalty;
        const float presence = params_.presence_penalty;
        const float frequency = params_.frequency_penalty;
        // The first occurrence of each distinct token applies its penalties and zeroes its count.
        for (const int32_t token : window) {
            int32_t& count = window_counts_[static_cast<size_t>(token)];
            if (count == 0) continue;
            float& l = logits_[static_cast<size_t>(token)];
            l = l > 0 ? l / repetition : l * repetition;
            l = l - presence;
            l = l - static_cast<float>(count) * frequency;
            count = 0;
        }
    }

    // The largest logit by its order key (integer compares vectorize; float ones do not): NaN keys
    // lie above +inf's or below -inf's, so the key range also tells whether any logit is unusable.
    int32_t max_key = std::numeric_limits<int32_t>::min();
    int32_t min_key = std::numeric_limits<int32_t>::max();
    for (const float l : logits_) {
        const int32_t key = signed_order_key(l);
        max_key = key > max_key ? key : max_key;
        min_key = key < min_key ? key : min_key;
    }
    if (max_key >= signed_order_key(kInfinity) || min_key < signed_order_key(-kInfinity)) {
        const auto bad = std::find_if(logits_.begin(), logits_.end(), [](float l) { return !(l < kInfinity); });
        throw SamplingError("logit of token " + std::to_string(bad - logits_.begin()) + " is " + number(*bad) +
                            " after bias and penalties");
    }
    if (max_key == signed_order_key(-kInfinity))
        throw SamplingError("every token's logit is -inf: nothing can be sampled");
    const auto argmax = static_cast<int32_t>(
        std::find_if(logits_.begin(), logits_.end(), [&](float l) { return signed_order_key(l) == max_key; }) -
        logits_.begin());
    max_logit_ = logits_[static_cast<size_t>(argmax)];
    argmax_ = argmax;
    return logits_;
}

void Sampler::build_candidates() {
    const float temperature = params_.temperature;
    const float max_logit = max_logit_;
    const float* l = logits_.data();
    const auto n = static_cast<size_t>(n_vocab_);

    uint64_t total = 0;
    if (top_k_on_) {
        const auto k = static_cast<size_t>(params_.top_k);
        scratch_ids_.resize(n);
        std::iota(scratch_ids_.begin(), scratch_ids_.end(), 0);
        std::partial_sort(scratch_ids_.begin(), scratch_ids_.begin() + static_cast<std::ptrdiff_t>(k),
                          scratch_ids_.end(), SigmaBefore{l});
        sorted_top_k_.assign(scratch_ids_.begin(), scratch_ids_.begin() + static_cast<std::ptrdiff_t>(k));
        for (const int32_t token : sorted_top_k_) {
            const uint64_t w = sampling::weight(sampling::exponent(l[token], max_logit, temperature));
            weights_[static_cast<size_t>(token)] = w;
            total += w;
        }
    } else {
        total = compute_weights(l, weights_.data(), n, max_logit, temperature);
        for (size_t i = 0; i < n; ++i) top_digits_[i] = static_cast<uint16_t>(order_key(l[i]) >> kTopShift);
        std::fill(top_histogram_.begin(), top_histogram_.end(), 0);
        for (size_t i = 0; i < n; ++i) top_histogram_[top_digits_[i]] += weights_[i];
    }

    top_p_boundary_ = -1;
    total_kept_ = total;
    if (params_.top_p < 1) {
        const Located last = locate(sampling::top_p_target(total, params_.top_p) - 1);
        top_p_boundary_ = last.token;
        total_kept_ = last.before + weights_[static_cast<size_t>(last.token)];
    }
    if (params_.min_p > 0) {
        // Zero the weights below the threshold: a zero weight is never drawn. Weights fall along σ
        // (so dropped tokens follow the kept ones), but nothing here relies on it.
        const uint64_t threshold = sampling::min_p_threshold(params_.min_p);
        uint64_t kept = 0;
        uint64_t dropped_before_boundary = 0;
        const auto filter = [&](int32_t token) {
            uint64_t& w = weights_[static_cast<size_t>(token)];
            if (w >= threshold) {
                kept += w;
            } else if (w > 0) {
                if (top_p_boundary_ >= 0 && sigma_before_or_at(token, top_p_boundary_)) dropped_before_boundary += w;
                if (!top_k_on_) top_histogram_[top_digits_[static_cast<size_t>(token)]] -= w;
                w = 0;
            }
        };
        if (top_k_on_) {
            for (const int32_t token : sorted_top_k_) filter(token);
        } else {
            for (int32_t token = 0; token < n_vocab_; ++token) filter(token);
        }
        total_kept_ = top_p_boundary_ >= 0 ? total_kept_ - dropped_before_boundary : kept;
    }
}

Sampler::Located Sampler::locate(uint64_t position) {
    if (!top_k_on_) return locate_by_radix(position);
    uint64_t before = 0;
    for (const int32_t token : sorted_top_k_) {
        const uint64_t w = weights_[static_cast<size_t>(token)];
        if (position < w) return {token, before};
        position -= w;
        before += w;
    }
    throw std::logic_error("sampler: position beyond the total weight");
}

Sampler::Located Sampler::locate_by_radix(uint64_t position) {
    const float* l = logits_.data();
    uint64_t before = 0;
    const size_t top = pick_bucket(top_histogram_, order_key(max_logit_) >> kTopShift, position, before);
    // Zero-weight members are harmless: a key's tokens share one weight, and a weightless key is
    // never picked.
    members_.clear();
    for (size_t i = 0; i < top_digits_.size(); ++i)
        if (top_digits_[i] == top) members_.push_back(static_cast<int32_t>(i));
    // Narrow to one key (one logit, so one weight) with the middle, then the low digit.
    for (const int shift : {kMiddleShift, 0}) {
        const uint32_t mask = (1u << (shift == kMiddleShift ? kTopShift - kMiddleShift : kMiddleShift)) - 1;
        std::fill(histogram_.begin(), histogram_.end(), 0);
        size_t highest = 0;
        for (const int32_t token : members_) {
            const size_t digit = (order_key(l[token]) >> shift) & mask;
            histogram_[digit] += weights_[static_cast<size_t>(token)];
            highest = std::max(highest, digit);
        }
        const size_t digit = pick_bucket(histogram_, highest, position, before);
        std::erase_if(members_, [&](int32_t token) { return ((order_key(l[token]) >> shift) & mask) != digit; });
    }
    // Equal logits: σ walks them by ascending id, each weighing the same.
    const uint64_t w = weights_[static_cast<size_t>(members_.front())];
    const uint64_t index = position / w;
    return {members_.at(static_cast<size_t>(index)), before + index * w};
}

bool Sampler::sigma_before_or_at(int32_t token, int32_t boundary) const {
    const float a = logits_[static_cast<size_t>(token)];
    const float b = logits_[static_cast<size_t>(boundary)];
    return a > b || (a == b && token <= boundary);
}

bool Sampler::in_kept(int32_t token) const {
    return weights_[static_cast<size_t>(token)] > 0 &&
           (top_p_boundary_ < 0 || sigma_before_or_at(token, top_p_boundary_));
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history, uint64_t step) {
    return sample_at(logits, history, philox::sampling_bits(params_.seed, step));
}

int32_t Sampler::sample_at(std::span<const float> logits, std::span<const int32_t> history, uint64_t random_bits) {
    if (random_bits >> 53 != 0) throw SamplingError("random_bits must be below 2^53");
    adjusted_logits(logits, history);
    if (params_.temperature == 0) return argmax_;
    build_candidates();
    return locate(sampling::draw_position(random_bits, total_kept_)).token;
}

double Sampler::log_normalizer() const {
    const double temperature = params_.temperature > 0 ? params_.temperature : 1.0;
    const double max_logit = max_logit_;
    double total = 0;
    for (const float l : logits_) total += std::exp((static_cast<double>(l) - max_logit) / temperature);
    return std::log(total);
}

float Sampler::logprob_of(int32_t token, double log_normalizer) const {
    const double temperature = params_.temperature > 0 ? params_.temperature : 1.0;
    const double z = (static_cast<double>(logits_[static_cast<size_t>(token)]) - max_logit_) / temperature;
    return static_cast<float>(z - log_normalizer);
}

SampledToken Sampler::sample_with_logprobs(std::span<const float> logits, std::span<const int32_t> history,
                                           uint64_t step, int32_t n_top) {
    if (n_top < 0) throw SamplingParamError("top_logprobs", "must be >= 0, got " + std::to_string(n_top));
    SampledToken result{sample(logits, history, step), 0.0f, {}};
    const double log_norm = log_normalizer();
    result.logprob = logprob_of(result.token, log_norm);
    const auto n = static_cast<size_t>(std::min(n_top, n_vocab_));
    if (n > 0) {
        scratch_ids_.resize(logits_.size());
        std::iota(scratch_ids_.begin(), scratch_ids_.end(), 0);
        std::partial_sort(scratch_ids_.begin(), scratch_ids_.begin() + static_cast<std::ptrdiff_t>(n),
                          scratch_ids_.end(), SigmaBefore{logits_.data()});
        result.top_logprobs.reserve(n);
        for (size_t i = 0; i < n; ++i)
            result.top_logprobs.push_back({scratch_ids_[i], logprob_of(scratch_ids_[i], log_norm)});
    }
    return result;
}

std::vector<Candidate> Sampler::candidates(std::span<const float> logits, std::span<const int32_t> history) {
    adjusted_logits(logits, history);
    if (params_.temperature == 0) return {{argmax_, 1.0}};
    build_candidates();
    std::vector<int32_t> kept;
    if (top_k_on_) {
        for (const int32_t token : sorted_top_k_)
            if (in_kept(token)) kept.push_back(token);
    } else {
        for (int32_t token = 0; token < n_vocab_; ++token)
            if (in_kept(token)) kept.push_back(token);
        std::sort(kept.begin(), kept.end(), SigmaBefore{logits_.data()});
    }
    std::vector<Candidate> result;
    result.reserve(kept.size());
    for (const int32_t token : kept)
        result.push_back(
            {token, static_cast<double>(weights_[static_cast<size_t>(token)]) / static_cast<double>(total_kept_)});
    return result;
}

}  // namespace loom::engine
