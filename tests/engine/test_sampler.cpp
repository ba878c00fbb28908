// Sampler tests: Philox known answers, validation, each pipeline step on hand-computed cases,
// chi-square fits of seeded draws, determinism, log-probabilities, and a full-sort reference.
#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "catch.hpp"
#include "core/philox.h"
#include "core/sampling_math.h"
#include "engine/sampler.h"

using namespace loom::engine;
namespace philox = loom::philox;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<int32_t> tokens_of(const std::vector<Candidate>& candidates) {
    std::vector<int32_t> tokens;
    for (const auto& c : candidates) tokens.push_back(c.token);
    return tokens;
}

std::vector<float> log_of(const std::vector<double>& probabilities) {
    std::vector<float> logits;
    for (const double p : probabilities) logits.push_back(static_cast<float>(std::log(p)));
    return logits;
}

// The field named by the SamplingParamError that constructing a Sampler throws ("" if none).
std::string rejected_field(const SamplingParams& params, int32_t n_vocab = 10) {
    try {
        Sampler sampler(params, n_vocab);
    } catch (const SamplingParamError& e) {
        return e.field();
    }
    return "";
}

// Whether `text` contains `part`; prints the text when not.
bool contains(const std::string& text, const std::string& part) {
    if (text.find(part) != std::string::npos) return true;
    std::printf("\"%s\" does not contain \"%s\"\n", text.c_str(), part.c_str());
    return false;
}

std::string sampling_error(Sampler& sampler, const std::vector<float>& logits, const std::vector<int32_t>& history) {
    try {
        (void)sampler.sample(logits, history, 0);
    } catch (const SamplingError& e) {
        return e.what();
    }
    return "";
}

// Pearson's statistic of observed counts against expected probabilities.
double chi_square(const std::vector<double>& observed, const std::vector<double>& probabilities, double n) {
    double statistic = 0;
    for (size_t i = 0; i < observed.size(); ++i) {
        const double expected = probabilities[i] * n;
        statistic += (observed[i] - expected) * (observed[i] - expected) / expected;
    }
    return statistic;
}

// The documented semantics written the plain way (full sorts, maps, σ walks), to check the
// sampler's partial sorts and radix selection against.
struct Reference {
    std::vector<int32_t> kept;  // F in σ order
    std::vector<uint64_t> w;    // by token id
    uint64_t total_kept = 0;
    int32_t token = -1;
};

Reference reference_sample(const SamplingParams& p, std::vector<float> l, const std::vector<int32_t>& history,
                           uint64_t step) {
    const auto n = static_cast<int32_t>(l.size());
    for (const auto& [id, bias] : p.logit_bias) l[static_cast<size_t>(id)] += bias;
    const bool penalties = p.repetition_penalty != 1 || p.presence_penalty != 0 || p.frequency_penalty != 0;
    if (penalties && p.penalty_last_n != 0) {
        const size_t window =
            p.penalty_last_n < 0 ? history.size() : std::min(history.size(), static_cast<size_t>(p.penalty_last_n));
        std::map<int32_t, int> counts;
        for (size_t i = history.size() - window; i < history.size(); ++i) ++counts[history[i]];
        for (const auto& [token, count] : counts) {
            float& v = l[static_cast<size_t>(token)];
            v = v > 0 ? v / p.repetition_penalty : v * p.repetition_penalty;
            v = v - p.presence_penalty;
            v = v - static_cast<float>(count) * p.frequency_penalty;
        }
    }
    Reference r;
    std::vector<int32_t> sigma(static_cast<size_t>(n));
    std::iota(sigma.begin(), sigma.end(), 0);
    std::stable_sort(sigma.begin(), sigma.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    if (p.temperature == 0) {
        r.token = sigma[0];
        return r;
    }
    const float max_logit = l[static_cast<size_t>(sigma[0])];
    r.w.assign(static_cast<size_t>(n), 0);
    const size_t k = p.top_k == 0 ? sigma.size() : std::min(sigma.size(), static_cast<size_t>(p.top_k));
    uint64_t total = 0;
    for (size_t j = 0; j < k; ++j) {
        const auto token = static_cast<size_t>(sigma[j]);
        r.w[token] = loom::sampling::weight(loom::sampling::exponent(l[token], max_logit, p.temperature));
        total += r.w[token];
    }
    size_t prefix = k;
    if (p.top_p < 1) {
        const uint64_t target = loom::sampling::top_p_target(total, p.top_p);
        uint64_t cumulative = 0;
        for (size_t j = 0; j < k; ++j) {
            cumulative += r.w[static_cast<size_t>(sigma[j])];
            if (cumulative >= target) {
                prefix = j + 1;
                break;
            }
        }
    }
    const uint64_t min_weight = p.min_p > 0 ? loom::sampling::min_p_threshold(p.min_p) : 1;
    for (size_t j = 0; j < prefix; ++j) {
        const int32_t token = sigma[j];
        if (r.w[static_cast<size_t>(token)] >= min_weight) {
            r.kept.push_back(token);
            r.total_kept += r.w[static_cast<size_t>(token)];
        }
    }
    const uint64_t position = loom::sampling::draw_position(philox::sampling_bits(p.seed, step), r.total_kept);
    uint64_t cumulative = 0;
    for (const int32_t token : r.kept) {
        cumulative += r.w[static_cast<size_t>(token)];
        if (position < cumulative) {
            r.token = token;
            break;
        }
    }
    return r;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Philox4x32-10

TEST_CASE("Philox4x32-10 matches Random123's published known answers", "[sampler][philox]") {
    // Random123 tests/kat_vectors, "philox4x32 10" lines: counter[4] key[2] -> output[4].
    struct Kat {
        philox::Block counter;
        philox::Key key;
        philox::Block expected;
    };
    const Kat kats[] = {
        {{{0, 0, 0, 0}}, {{0, 0}}, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
        {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}},
         {{0xffffffff, 0xffffffff}},
         {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
        {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}},
         {{0xa4093822, 0x299f31d0}},
         {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
    };
    for (const auto& kat : kats) {
        const philox::Block out = philox::philox4x32_10(kat.counter, kat.key);
        for (int i = 0; i < 4; ++i) CHECK(out.w[i] == kat.expected.w[i]);
    }
    // Usable in constant expressions (and so in device code).
    static_assert(philox::philox4x32_10({{0, 0, 0, 0}}, {{0, 0}}).w[0] == 0x6627e8d5u);
}

TEST_CASE("the sampling bits are word 0 then the top 21 bits of word 1; u = bits * 2^-53", "[sampler][philox]") {
    // seed 0, step 0 is the all-zero known answer.
    const uint64_t bits = (uint64_t{0x6627e8d5} << 21) | (0xe169c58du >> 11);
    CHECK(philox::sampling_bits(0, 0) == bits);
    CHECK(philox::sampling_uniform(0, 0) == static_cast<double>(bits) * 0x1.0p-53);
    // key = (seed lo, seed hi), counter = (step lo, step hi, 0, 0).
    const uint64_t seed = 0x299f31d0a4093822ull;
    const uint64_t step = 0x85a308d3243f6a88ull;
    const philox::Block block = philox::philox4x32_10({{0x243f6a88, 0x85a308d3, 0, 0}}, {{0xa4093822, 0x299f31d0}});
    CHECK(philox::sampling_bits(seed, step) == philox::bits53_from_block(block));
    CHECK(philox::sampling_uniform(seed, step) == philox::uniform_from_block(block));
    // The range ends: 0 and 1 - 2^-53; the low 11 bits of word 1 and words 2, 3 are unused.
    CHECK(philox::uniform_from_block({{0, 0x7ff, 7, 7}}) == 0.0);
    CHECK(philox::uniform_from_block({{0xffffffff, 0xffffffff, 0, 0}}) == 1.0 - 0x1.0p-53);
    CHECK(philox::bits53_from_block({{0xffffffff, 0xffffffff, 0, 0}}) == (uint64_t{1} << 53) - 1);
}

TEST_CASE("sampling uniforms over consecutive steps are uniform (chi-square, 100 bins)", "[sampler][philox]") {
    constexpr int kBins = 100;
    constexpr int kDraws = 200000;
    std::vector<double> observed(kBins, 0.0);
    for (uint64_t step = 0; step < kDraws; ++step) {
        const double u = philox::sampling_uniform(0x5eed, step);
        REQUIRE(u >= 0.0);
        REQUIRE(u < 1.0);
        observed[static_cast<size_t>(u * kBins)] += 1;
    }
    // 99 degrees of freedom; the 0.999 quantile of chi-square(99) is 148.230.
    const double statistic = chi_square(observed, std::vector<double>(kBins, 1.0 / kBins), kDraws);
    INFO("chi-square = " << statistic);
    CHECK(statistic < 148.230);
}

// ---------------------------------------------------------------------------------------------
// The exact arithmetic of sampling_math.h

TEST_CASE("token weights are round(exp(z) * 2^40), exact at the top and zero far below", "[sampler][math]") {
    namespace sm = loom::sampling;
    CHECK(sm::weight(0.0) == sm::kTopWeight);
    CHECK(sm::weight(-0.0) == sm::kTopWeight);
    CHECK(sm::weight(-std::numeric_limits<double>::infinity()) == 0);
    CHECK(sm::weight(-32.0) == 0);                       // the cut: exp(-32) * 2^40 ≈ 0.014
    CHECK(sm::weight(std::nextafter(-32.0, 0.0)) == 0);  // rounds to 0 just inside
    CHECK(sm::weight(-27.0) == 2);                       // exp(-27) * 2^40 ≈ 2.07
    CHECK(sm::weight(-1e300) == 0);
    CHECK(sm::weight(std::log(0.5)) == sm::kTopWeight / 2);
    // The polynomial is within 0.01 of exp(z) * 2^40 before rounding, so the weight is within 0.51;
    // and weights are non-decreasing on a fine grid (nothing relies on it, but it should hold).
    uint64_t previous = 0;
    long double worst_error = 0;
    int decreases = 0;
    for (int i = -1'100'000; i <= 0; ++i) {
        const double z = i * 3e-5;
        const uint64_t w = sm::weight(z);
        const long double exact = std::exp(static_cast<long double>(z)) * 0x1.0p40L;
        worst_error = std::max(worst_error, std::fabs(static_cast<long double>(w) - exact));
        decreases += w < previous ? 1 : 0;
        previous = w;
    }
    CHECK(worst_error <= 0.51L);
    CHECK(decreases == 0);
    // Known answers where a build that fuses multiply-adds (FMA contraction) gets another weight.
    CHECK(sm::weight(-0x1.98b2c2115cdep+0) == 222770869824);
    CHECK(sm::weight(-0x1.57b7ec25e958p-2) == 786001608976);
    CHECK(sm::weight(-0x1.079233573a99p+0) == 392700326144);
    CHECK(sm::weight(-0x1.3b8dad901caap-1) == 593659601258);
    CHECK(sm::weight(-0x1.7294f584a2cp-3) == 917518924708);
    CHECK(sm::exponent(1.0f, 3.0f, 0.5f) == -4.0);
    CHECK(sm::exponent(-std::numeric_limits<float>::infinity(), 3.0f, 0.5f) ==
          -std::numeric_limits<double>::infinity());
}

TEST_CASE("top-p targets, min-p thresholds and draw positions are exact integers", "[sampler][math]") {
    namespace sm = loom::sampling;
    CHECK(sm::top_p_target(10, 0.5f) == 5);
    CHECK(sm::top_p_target(11, 0.5f) == 6);  // ceil
    CHECK(sm::top_p_target(uint64_t{1} << 63, 1.0f) == uint64_t{1} << 63);
    CHECK(sm::top_p_target(8 * sm::kTopWeight, std::nextafter(0.5f, 1.0f)) == 4 * sm::kTopWeight + (uint64_t{1} << 19));
    CHECK(sm::top_p_target(3, std::numeric_limits<float>::denorm_min()) == 1);
    CHECK(sm::top_p_target((uint64_t{1} << 63) + 12345, std::numeric_limits<float>::denorm_min()) == 1);
    std::mt19937_64 rng(3);
    for (int i = 0; i < 10000; ++i) {
        const uint64_t total = rng() >> (rng() % 64);
        const float fraction = std::max(std::numeric_limits<float>::denorm_min(),
                                        static_cast<float>(std::uniform_real_distribution<double>(0, 1)(rng)));
        // ceil(total * fraction) by 128-bit arithmetic on the fraction's exact binary value.
        int exponent = 0;
        const double mantissa = std::frexp(static_cast<double>(fraction), &exponent);  // fraction = m * 2^e
        const auto m = static_cast<unsigned __int128>(std::ldexp(mantissa, 24));
        const int shift = 24 - exponent;
        const unsigned __int128 product = static_cast<unsigned __int128>(total) * m;
        const unsigned __int128 expected =
            shift >= 128 ? (product != 0)
                         : (product >> shift) + ((product & ((static_cast<unsigned __int128>(1) << shift) - 1)) != 0);
        REQUIRE(sm::top_p_target(total, fraction) == static_cast<uint64_t>(expected));
        const uint64_t bits = rng() >> 11;
        REQUIRE(sm::draw_position(bits, total) ==
                static_cast<uint64_t>((static_cast<unsigned __int128>(bits) * total) >> 53));
    }
    CHECK(sm::min_p_threshold(1.0f) == sm::kTopWeight);
    CHECK(sm::min_p_threshold(0.5f) == sm::kTopWeight / 2);
    CHECK(sm::min_p_threshold(0.1f) == static_cast<uint64_t>(std::ceil(static_cast<double>(0.1f) * 0x1.0p40)));
    CHECK(sm::draw_position(0, 12345) == 0);
    CHECK(sm::draw_position((uint64_t{1} << 53) - 1, sm::kTopWeight) == sm::kTopWeight - 1);
    CHECK(sm::draw_position(uint64_t{1} << 52, 7) == 3);
    // The order key sorts like the float (and ties -0 with +0).
    const float ordered[] = {
        -std::numeric_limits<float>::infinity(), -1e30f, -1.0f, -1e-40f, 0.0f, 1e-40f, 0.5f, 1e30f};
    for (size_t i = 0; i + 1 < std::size(ordered); ++i)
        CHECK(sm::order_key(std::bit_cast<uint32_t>(ordered[i])) <
              sm::order_key(std::bit_cast<uint32_t>(ordered[i + 1])));
    CHECK(sm::order_key(std::bit_cast<uint32_t>(-0.0f)) == sm::order_key(std::bit_cast<uint32_t>(0.0f)));
}

// ---------------------------------------------------------------------------------------------
// Validation and input errors

TEST_CASE("invalid parameters are rejected naming the field", "[sampler][validation]") {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const auto with = [](auto change) {
        SamplingParams p;
        change(p);
        return p;
    };
    CHECK(rejected_field(SamplingParams{}) == "");
    CHECK(rejected_field(SamplingParams{}, 0) == "n_vocab");
    CHECK(rejected_field(with([](auto& p) { p.temperature = -0.5f; })) == "temperature");
    CHECK(rejected_field(with([&](auto& p) { p.temperature = nan; })) == "temperature");
    CHECK(rejected_field(with([](auto& p) { p.temperature = kInf; })) == "temperature");
    CHECK(rejected_field(with([](auto& p) { p.top_k = -1; })) == "top_k");
    CHECK(rejected_field(with([](auto& p) { p.top_p = 0.0f; })) == "top_p");
    CHECK(rejected_field(with([](auto& p) { p.top_p = -0.1f; })) == "top_p");
    CHECK(rejected_field(with([](auto& p) { p.top_p = 1.01f; })) == "top_p");
    CHECK(rejected_field(with([&](auto& p) { p.top_p = nan; })) == "top_p");
    CHECK(rejected_field(with([](auto& p) { p.min_p = -0.01f; })) == "min_p");
    CHECK(rejected_field(with([](auto& p) { p.min_p = 1.5f; })) == "min_p");
    CHECK(rejected_field(with([&](auto& p) { p.min_p = nan; })) == "min_p");
    CHECK(rejected_field(with([](auto& p) { p.repetition_penalty = 0.0f; })) == "repetition_penalty");
    CHECK(rejected_field(with([](auto& p) { p.repetition_penalty = -1.0f; })) == "repetition_penalty");
    CHECK(rejected_field(with([](auto& p) { p.repetition_penalty = kInf; })) == "repetition_penalty");
    CHECK(rejected_field(with([&](auto& p) { p.presence_penalty = nan; })) == "presence_penalty");
    CHECK(rejected_field(with([](auto& p) { p.frequency_penalty = -kInf; })) == "frequency_penalty");
    CHECK(rejected_field(with([](auto& p) { p.penalty_last_n = -2; })) == "penalty_last_n");
    CHECK(rejected_field(with([&](auto& p) { p.logit_bias = {{3, nan}}; })) == "logit_bias");
    CHECK(rejected_field(with([](auto& p) { p.logit_bias = {{3, kInf}}; })) == "logit_bias");
    // The boundaries themselves are valid.
    CHECK(rejected_field(with([](auto& p) {
              p.temperature = 0;
              p.top_p = 1;
              p.min_p = 1;
              p.penalty_last_n = -1;
              p.presence_penalty = -2;
              p.logit_bias = {{0, -kInf}, {9, 100.0f}};
          })) == "");

    SamplingParams out_of_range;
    out_of_range.logit_bias = {{2, 1.0f}, {10, 1.0f}};
    try {
        Sampler sampler(out_of_range, 10);
        FAIL("an out-of-vocabulary logit_bias id was accepted");
    } catch (const SamplingParamError& e) {
        CHECK(e.field() == "logit_bias");
        CHECK(contains(e.what(), "token id 10"));
        CHECK(contains(e.what(), "[0, 10)"));
    }
    SamplingParams negative_id;
    negative_id.logit_bias = {{-1, 1.0f}};
    CHECK(rejected_field(negative_id) == "logit_bias");
}

TEST_CASE("unusable step inputs are SamplingErrors naming what is wrong", "[sampler][validation]") {
    SamplingParams params;
    params.repetition_penalty = 2.0f;
    params.frequency_penalty = 1.0f;
    params.penalty_last_n = 3;
    Sampler sampler(params, 4);
    CHECK(contains(sampling_error(sampler, {1, 2, 3}, {}), "3 entries"));
    CHECK(contains(sampling_error(sampler, {1, std::nanf(""), 3, 4}, {}), "token 1 is nan"));
    CHECK(contains(sampling_error(sampler, {1, 2, kInf, 4}, {}), "token 2 is inf"));
    CHECK(contains(sampling_error(sampler, {-kInf, -kInf, -kInf, -kInf}, {}), "-inf"));
    // A history id inside the window is checked; one before the window is not read at all.
    CHECK(contains(sampling_error(sampler, {1, 2, 3, 4}, {0, 1, 7, 2}), "history[2] = token id 7"));
    CHECK(contains(sampling_error(sampler, {1, 2, 3, 4}, {0, 1, 2, -1}), "history[3] = token id -1"));
    CHECK(sampling_error(sampler, {1, 2, 3, 4}, {99, 1, 1, 1}) == "");
    // A refused call leaves no stale window counts behind: token 1 counts once (2 / 2 - 1), not twice.
    const auto adjusted = sampler.adjusted_logits(std::vector<float>{1, 2, 3, 4}, std::vector<int32_t>{1});
    CHECK(adjusted[1] == 0.0f);
    CHECK(adjusted[0] == 1.0f);
}

// ---------------------------------------------------------------------------------------------
// Bias and penalties (steps 1-2): exact float results

TEST_CASE("logit bias adds in order, accumulates, and -inf bans a token", "[sampler][bias]") {
    SamplingParams params;
    params.logit_bias = {{1, 0.5f}, {3, -2.0f}, {1, 0.25f}, {2, -kInf}};
    Sampler sampler(params, 4);
    const std::vector<float> logits{1.0f, 1.0f, 9.0f, 1.0f};
    const auto l = sampler.adjusted_logits(logits, {});
    CHECK(l[0] == 1.0f);
    CHECK(l[1] == 1.75f);
    CHECK(l[2] == -kInf);
    CHECK(l[3] == -1.0f);
    // The banned token is never drawn although it had by far the largest logit.
    for (uint64_t step = 0; step < 2000; ++step) REQUIRE(sampler.sample(logits, {}, step) != 2);
    const auto kept = tokens_of(sampler.candidates(logits, {}));
    CHECK(std::find(kept.begin(), kept.end(), 2) == kept.end());

    SamplingParams greedy = params;
    greedy.temperature = 0;
    Sampler greedy_sampler(greedy, 4);
    CHECK(greedy_sampler.sample(logits, {}, 0) == 1);

    SamplingParams ban_all;
    ban_all.logit_bias = {{0, -kInf}, {1, -kInf}, {2, -kInf}, {3, -kInf}};
    Sampler banned(ban_all, 4);
    CHECK(contains(sampling_error(banned, logits, {}), "every token"));
}

TEST_CASE("repetition penalty divides positive and multiplies non-positive logits, once per token",
          "[sampler][penalties]") {
    SamplingParams params;
    params.repetition_penalty = 2.0f;
    Sampler sampler(params, 5);
    const std::vector<float> logits{2.0f, -2.0f, 0.0f, 0.5f, 3.0f};
    const auto l = sampler.adjusted_logits(logits, std::vector<int32_t>{0, 1, 2, 0, 0, 1});
    CHECK(l[0] == 1.0f);  // 2 / 2, once although it occurs three times
    CHECK(l[1] == -4.0f);
    CHECK(l[2] == 0.0f);
    CHECK(l[3] == 0.5f);  // not in the history
    CHECK(l[4] == 3.0f);
}

TEST_CASE("presence penalty subtracts once, frequency penalty once per occurrence", "[sampler][penalties]") {
    const std::vector<float> logits{1.0f, 1.0f, 1.0f};
    const std::vector<int32_t> history{0, 0, 0, 1};
    SamplingParams presence;
    presence.presence_penalty = 0.5f;
    Sampler presence_sampler(presence, 3);
    auto l = presence_sampler.adjusted_logits(logits, history);
    CHECK(l[0] == 0.5f);
    CHECK(l[1] == 0.5f);
    CHECK(l[2] == 1.0f);

    SamplingParams frequency;
    frequency.frequency_penalty = 0.25f;
    Sampler frequency_sampler(frequency, 3);
    l = frequency_sampler.adjusted_logits(logits, history);
    CHECK(l[0] == 0.25f);
    CHECK(l[1] == 0.75f);
    CHECK(l[2] == 1.0f);

    SamplingParams boost;  // negative penalties raise repeated tokens
    boost.presence_penalty = -1.0f;
    boost.frequency_penalty = -0.5f;
    Sampler boost_sampler(boost, 3);
    l = boost_sampler.adjusted_logits(logits, history);
    CHECK(l[0] == 3.5f);
    CHECK(l[1] == 2.5f);
}

TEST_CASE("combined penalties apply bias, then repetition, presence, frequency", "[sampler][penalties]") {
    SamplingParams params;
    params.repetition_penalty = 2.0f;
    params.presence_penalty = 0.5f;
    params.frequency_penalty = 0.25f;
    params.logit_bias = {{4, 1.0f}};
    Sampler sampler(params, 5);
    const std::vector<float> logits{3.0f, -1.0f, 1.0f, 7.0f, -0.5f};
    const auto l = sampler.adjusted_logits(logits, std::vector<int32_t>{0, 0, 1, 2, 0, 4});
    CHECK(l[0] == 0.25f);   // 3 / 2 - 0.5 - 3 * 0.25
    CHECK(l[1] == -2.75f);  // -1 * 2 - 0.5 - 0.25
    CHECK(l[2] == -0.25f);  // 1 / 2 - 0.5 - 0.25 (presence before a second repetition would give -1)
    CHECK(l[3] == 7.0f);
    CHECK(l[4] == -0.5f);  // (-0.5 + 1) / 2 - 0.5 - 0.25: bias first, so the logit is positive when divided
}

TEST_CASE("the penalty window is the last penalty_last_n tokens; 0 is none, -1 the whole history",
          "[sampler][penalties]") {
    const std::vector<float> logits{4.0f, 4.0f, 4.0f, 4.0f};
    std::vector<int32_t> history{0, 1, 2, 2};
    const auto adjusted = [&](int32_t last_n) {
        SamplingParams params;
        params.repetition_penalty = 2.0f;
        params.frequency_penalty = 1.0f;
        params.penalty_last_n = last_n;
        Sampler sampler(params, 4);
        const auto l = sampler.adjusted_logits(logits, history);
        return std::vector<float>(l.begin(), l.end());
    };
    CHECK(adjusted(0) == std::vector<float>{4, 4, 4, 4});
    CHECK(adjusted(1) == std::vector<float>{4, 4, 1, 4});  // window {2}: 4 / 2 - 1
    CHECK(adjusted(2) == std::vector<float>{4, 4, 0, 4});  // window {2, 2}: 4 / 2 - 2
    CHECK(adjusted(3) == std::vector<float>{4, 1, 0, 4});
    CHECK(adjusted(4) == std::vector<float>{1, 1, 0, 4});
    CHECK(adjusted(64) == std::vector<float>{1, 1, 0, 4});  // longer than the history
    history.insert(history.begin(), 100, 3);
    CHECK(adjusted(4) == std::vector<float>{1, 1, 0, 4});
    CHECK(adjusted(-1) == std::vector<float>{1, 1, 0, 2.0f - 100.0f});
}

// ---------------------------------------------------------------------------------------------
// Greedy and temperature

TEST_CASE("temperature 0 is greedy: the largest logit, ties to the lowest id", "[sampler][greedy]") {
    SamplingParams params;
    params.temperature = 0;
    params.top_k = 3;  // ignored by greedy
    params.top_p = 0.1f;
    Sampler sampler(params, 6);
    const std::vector<float> logits{1.0f, 5.0f, -2.0f, 5.0f, 4.9f, 5.0f};
    for (uint64_t step = 0; step < 50; ++step) CHECK(sampler.sample(logits, {}, step) == 1);
    const auto c = sampler.candidates(logits, {});
    REQUIRE(c.size() == 1);
    CHECK(c[0].token == 1);
    CHECK(c[0].probability == 1.0);
    CHECK(sampler.sample(std::vector<float>{-kInf, -kInf, 3.0f, 3.0f, -kInf, -kInf}, {}, 0) == 2);
}

TEST_CASE("temperature > 0 with top_k 1 always draws the greedy token", "[sampler][greedy]") {
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    SamplingParams greedy;
    greedy.temperature = 0;
    SamplingParams top1;
    top1.top_k = 1;
    top1.seed = 99;
    Sampler greedy_sampler(greedy, 1000);
    Sampler top1_sampler(top1, 1000);
    std::vector<float> logits(1000);
    for (uint64_t step = 0; step < 50; ++step) {
        for (auto& l : logits) l = std::round(normal(rng));  // integer logits: plenty of ties
        REQUIRE(top1_sampler.sample(logits, {}, step) == greedy_sampler.sample(logits, {}, step));
    }
}

TEST_CASE("temperature scales logits before the softmax", "[sampler][temperature]") {
    const std::vector<float> logits{2.0f, 1.0f, 0.0f};
    for (const float t : {0.5f, 1.0f, 2.0f}) {
        SamplingParams params;
        params.temperature = t;
        Sampler sampler(params, 3);
        const auto c = sampler.candidates(logits, {});
        const double w1 = std::exp(-1.0 / t);
        const double w2 = std::exp(-2.0 / t);
        const double total = 1.0 + w1 + w2;
        REQUIRE(tokens_of(c) == std::vector<int32_t>{0, 1, 2});
        // Weights are integers near exp(z) * 2^40: relative error below 1e-9 even at e^-4.
        CHECK(c[0].probability == Approx(1.0 / total).epsilon(1e-9));
        CHECK(c[1].probability == Approx(w1 / total).epsilon(1e-9));
        CHECK(c[2].probability == Approx(w2 / total).epsilon(1e-9));
    }
}

// ---------------------------------------------------------------------------------------------
// Filters

TEST_CASE("top-k keeps the k largest logits, ties to the lower id", "[sampler][top_k]") {
    const std::vector<float> logits{1.0f, 3.0f, 3.0f, 2.0f, 0.0f, 3.0f};
    const auto kept = [&](int32_t k) {
        SamplingParams params;
        params.top_k = k;
        Sampler sampler(params, 6);
        return sampler.candidates(logits, {});
    };
    CHECK(tokens_of(kept(1)) == std::vector<int32_t>{1});
    CHECK(tokens_of(kept(2)) == std::vector<int32_t>{1, 2});  // 5 ties with them and loses on id
    CHECK(tokens_of(kept(3)) == std::vector<int32_t>{1, 2, 5});
    const auto four = kept(4);
    REQUIRE(tokens_of(four) == std::vector<int32_t>{1, 2, 5, 3});
    const double total = 3.0 + std::exp(-1.0);  // renormalized over the four kept
    CHECK(four[0].probability == Approx(1.0 / total).epsilon(1e-9));
    CHECK(four[3].probability == Approx(std::exp(-1.0) / total).epsilon(1e-9));
    CHECK(tokens_of(kept(6)) == std::vector<int32_t>{1, 2, 5, 3, 0, 4});
    CHECK(tokens_of(kept(0)) == tokens_of(kept(6)));
    CHECK(tokens_of(kept(100)) == tokens_of(kept(6)));
}

TEST_CASE("top-p keeps the shortest prefix reaching the mass, boundary inclusive", "[sampler][top_p]") {
    // Eight equal logits (p = 1/8 each, exact): cumulative masses are exact multiples of 1/8.
    const std::vector<float> logits(8, 0.5f);
    const auto kept = [&](float top_p, int32_t top_k = 0) {
        SamplingParams params;
        params.top_p = top_p;
        params.top_k = top_k;
        Sampler sampler(params, 8);
        return sampler.candidates(logits, {});
    };
    CHECK(tokens_of(kept(0.5f)) == std::vector<int32_t>{0, 1, 2, 3});  // 4/8 >= 0.5 exactly
    CHECK(tokens_of(kept(std::nextafter(0.5f, 1.0f))) == std::vector<int32_t>{0, 1, 2, 3, 4});
    CHECK(tokens_of(kept(std::nextafter(0.5f, 0.0f))) == std::vector<int32_t>{0, 1, 2, 3});
    CHECK(kept(0.125f).size() == 1);
    CHECK(kept(1e-6f).size() == 1);  // always at least one
    CHECK(kept(0.875f).size() == 7);
    CHECK(kept(1.0f).size() == 8);
    const auto quarter = kept(0.25f);
    REQUIRE(quarter.size() == 2);
    CHECK(quarter[0].probability == 0.5);  // renormalized
    // top-p acts on the top-k renormalized distribution: with k = 4, 0.5 of it is two tokens.
    CHECK(tokens_of(kept(0.5f, 4)) == std::vector<int32_t>{0, 1});

    // Uneven: p = 0.5, 0.3, 0.2 scattered over ids.
    const std::vector<float> uneven = log_of({0.2, 0.5, 0.0001, 0.3});
    const auto uneven_kept = [&](float top_p) {
        SamplingParams params;
        params.top_p = top_p;
        Sampler sampler(params, 4);
        return sampler.candidates(uneven, {});
    };
    CHECK(tokens_of(uneven_kept(0.45f)) == std::vector<int32_t>{1});
    CHECK(tokens_of(uneven_kept(0.55f)) == std::vector<int32_t>{1, 3});
    CHECK(tokens_of(uneven_kept(0.79f)) == std::vector<int32_t>{1, 3});
    const auto three = uneven_kept(0.81f);
    REQUIRE(tokens_of(three) == std::vector<int32_t>{1, 3, 0});
    CHECK(three[2].probability == Approx(0.2).epsilon(1e-6));  // renormalized over 0.5 + 0.3 + 0.2
}

TEST_CASE("min-p keeps tokens with p >= min_p * p_max", "[sampler][min_p]") {
    // w relative to the top: 1, 1, e^-1 ≈ 0.368, e^-2 ≈ 0.135.
    const std::vector<float> logits{-1.0f, 1.0f, 1.0f, 0.0f, -4.0f};
    const auto kept = [&](float min_p, float top_p = 1.0f) {
        SamplingParams params;
        params.min_p = min_p;
        params.top_p = top_p;
        Sampler sampler(params, 5);
        return tokens_of(sampler.candidates(logits, {}));
    };
    CHECK(kept(1.0f) == std::vector<int32_t>{1, 2});  // both equal the maximum: the boundary keeps them
    CHECK(kept(0.37f) == std::vector<int32_t>{1, 2});
    CHECK(kept(0.36f) == std::vector<int32_t>{1, 2, 3});
    CHECK(kept(0.13f) == std::vector<int32_t>{1, 2, 3, 0});
    CHECK(kept(0.0f) == std::vector<int32_t>{1, 2, 3, 0, 4});
    // min-p after top-p: top-p keeps three, min-p then drops nothing more at 0.3 ...
    CHECK(kept(0.3f, 0.8f) == std::vector<int32_t>{1, 2, 3});
    // ... and min-p cuts inside the top-p set at 0.5.
    CHECK(kept(0.5f, 0.8f) == std::vector<int32_t>{1, 2});
}

// ---------------------------------------------------------------------------------------------
// Draws: distribution, determinism

TEST_CASE("seeded draws follow the target distribution (chi-square)", "[sampler][draw]") {
    // Eight tokens, ids shuffled so σ differs from id order.
    const std::vector<double> p{0.10, 0.02, 0.30, 0.08, 0.15, 0.05, 0.20, 0.10};
    const std::vector<float> logits = log_of(p);
    constexpr int kDraws = 200000;

    SECTION("plain temperature 1: 7 degrees of freedom") {
        SamplingParams params;
        params.seed = 2024;
        Sampler sampler(params, 8);
        std::vector<double> observed(8, 0.0);
        for (uint64_t step = 0; step < kDraws; ++step)
            observed[static_cast<size_t>(sampler.sample(logits, {}, step))] += 1;
        // The 0.999 quantile of chi-square(7) is 24.322.
        const double statistic = chi_square(observed, p, kDraws);
        INFO("chi-square = " << statistic);
        CHECK(statistic < 24.322);
        // The test has power: the same counts against p with two tokens swapped fail it.
        std::vector<double> swapped = p;
        std::swap(swapped[0], swapped[4]);
        CHECK(chi_square(observed, swapped, kDraws) > 24.322);
    }

    SECTION("temperature 0.7, top_k 6, top_p 0.9: 4 degrees of freedom") {
        SamplingParams params;
        params.seed = 77;
        params.temperature = 0.7f;
        params.top_k = 6;
        params.top_p = 0.9f;
        Sampler sampler(params, 8);
        // By hand: q = p^(1/0.7) over the top 6 (drops 0.05, 0.02), then the shortest prefix of
        // (0.30, 0.20, 0.15, 0.10, 0.10, 0.08)-ordered q reaching 90% of Σq.
        const std::vector<int32_t> top6{2, 6, 4, 0, 7, 3};
        std::vector<double> q;
        for (const int32_t token : top6) q.push_back(std::pow(p[static_cast<size_t>(token)], 1.0 / 0.7));
        const double total = std::accumulate(q.begin(), q.end(), 0.0);
        size_t keep = 0;
        for (double cumulative = 0; cumulative < 0.9 * total; ++keep) cumulative += q[keep];
        REQUIRE(keep == 5);  // 0.30, 0.20, 0.15, 0.10 and the tied 0.10 of the lower id (0 before 7)
        const double kept_total = std::accumulate(q.begin(), q.begin() + static_cast<std::ptrdiff_t>(keep), 0.0);
        std::vector<double> expected(8, 0.0);
        for (size_t j = 0; j < keep; ++j) expected[static_cast<size_t>(top6[j])] = q[j] / kept_total;
        const auto c = sampler.candidates(logits, {});
        REQUIRE(tokens_of(c) == std::vector<int32_t>(top6.begin(), top6.begin() + 5));
        for (const auto& candidate : c)
            CHECK(candidate.probability == Approx(expected[static_cast<size_t>(candidate.token)]).epsilon(1e-6));

        std::vector<double> observed(8, 0.0);
        for (uint64_t step = 0; step < kDraws; ++step)
            observed[static_cast<size_t>(sampler.sample(logits, {}, step))] += 1;
        std::vector<double> observed_kept;
        std::vector<double> expected_kept;
        for (size_t token = 0; token < 8; ++token) {
            if (expected[token] == 0) {
                CHECK(observed[token] == 0);  // filtered tokens never come out
            } else {
                observed_kept.push_back(observed[token]);
                expected_kept.push_back(expected[token]);
            }
        }
        // 5 kept tokens: 4 degrees of freedom; the 0.999 quantile of chi-square(4) is 18.467.
        const double statistic = chi_square(observed_kept, expected_kept, kDraws);
        INFO("chi-square = " << statistic);
        CHECK(statistic < 18.467);
    }
}

TEST_CASE("the draw position falls into [C_before, C_before + w): exact boundaries", "[sampler][draw]") {
    namespace sm = loom::sampling;
    // σ: token 1, token 3 (tied with 1, higher id), token 0; the -100s weigh nothing.
    const std::vector<float> logits{0.5f, 2.0f, -100.0f, 2.0f, -100.0f};
    const uint64_t top = sm::kTopWeight;
    const uint64_t third = sm::weight(sm::exponent(0.5f, 2.0f, 1.0f));
    const uint64_t total = 2 * top + third;
    // The smallest random bits whose position floor(bits * W / 2^53) reaches `boundary`.
    const auto first_bits_at = [&](uint64_t boundary) {
        const unsigned __int128 scaled = static_cast<unsigned __int128>(boundary) << 53;
        return static_cast<uint64_t>((scaled + total - 1) / total);
    };
    for (const int32_t top_k : {0, 3}) {  // radix selection, and the sorted top-k list
        SamplingParams params;
        params.top_k = top_k;
        Sampler sampler(params, 5);
        INFO("top_k " << top_k);
        CHECK(sampler.sample_at(logits, {}, 0) == 1);
        CHECK(sampler.sample_at(logits, {}, first_bits_at(top) - 1) == 1);
        CHECK(sampler.sample_at(logits, {}, first_bits_at(top)) == 3);
        CHECK(sampler.sample_at(logits, {}, first_bits_at(2 * top) - 1) == 3);
        CHECK(sampler.sample_at(logits, {}, first_bits_at(2 * top)) == 0);
        CHECK(sampler.sample_at(logits, {}, (uint64_t{1} << 53) - 1) == 0);
        CHECK_THROWS_AS(sampler.sample_at(logits, {}, uint64_t{1} << 53), SamplingError);
    }
}

TEST_CASE("a draw is a pure function of (seed, step)", "[sampler][draw]") {
    std::vector<float> logits(64);
    for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(i % 7) * 0.1f;
    const auto sequence = [&](uint64_t seed, bool reverse) {
        SamplingParams params;
        params.seed = seed;
        Sampler sampler(params, 64);
        std::vector<int32_t> tokens(200);
        for (size_t i = 0; i < tokens.size(); ++i) {
            const size_t step = reverse ? tokens.size() - 1 - i : i;
            tokens[step] = sampler.sample(logits, {}, step);
            // Unrelated calls in between leave no trace.
            (void)sampler.sample(std::vector<float>(64, 1.0f), {}, 12345);
        }
        return tokens;
    };
    const auto first = sequence(42, false);
    CHECK(sequence(42, false) == first);
    CHECK(sequence(42, true) == first);
    CHECK(sequence(43, false) != first);
    CHECK(sequence(uint64_t{42} << 32, false) != first);  // the seed's high word is part of the key
    std::map<int32_t, int> distinct;
    for (const int32_t token : first) ++distinct[token];
    CHECK(distinct.size() > 30);  // it really is random
}

TEST_CASE("the sampler agrees with a full-sort reference of the documented semantics", "[sampler][reference]") {
    std::mt19937 rng(1234);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_int_distribution<int> pick(0, 1 << 20);
    const float temperatures[] = {0.0f, 0.05f, 0.3f, 0.7f, 1.0f, 1.5f, 8.0f, 1e-30f};
    const int32_t top_ks[] = {0, 0, 1, 3, 40, 1999, 2000, 5000};
    const float top_ps[] = {1.0f, 1.0f, 0.5f, 0.9f, 0.95f, 0.999f, 0.01f};
    const float min_ps[] = {0.0f, 0.0f, 0.01f, 0.05f, 0.3f, 1.0f};
    constexpr int32_t kVocab = 2000;
    int compared = 0;
    for (int trial = 0; trial < 300; ++trial) {
        SamplingParams params;
        params.temperature = temperatures[pick(rng) % std::size(temperatures)];
        params.top_k = top_ks[pick(rng) % std::size(top_ks)];
        params.top_p = top_ps[pick(rng) % std::size(top_ps)];
        params.min_p = min_ps[pick(rng) % std::size(min_ps)];
        params.seed = static_cast<uint64_t>(pick(rng)) << 20 | static_cast<uint64_t>(pick(rng));
        if (trial % 3 == 0) {
            params.repetition_penalty = 1.3f;
            params.presence_penalty = 0.4f;
            params.frequency_penalty = 0.1f;
            params.penalty_last_n = trial % 2 == 0 ? -1 : 32;
        }
        if (trial % 5 == 0) params.logit_bias = {{5, -kInf}, {17, 3.0f}, {5, 1.0f}};
        // Logits on a grid of 1/4 (many ties) with a spread that varies by trial, a few banned.
        const float spread = 0.5f + static_cast<float>(trial % 10);
        std::vector<float> logits(kVocab);
        for (auto& l : logits) l = std::round(normal(rng) * spread * 4.0f) / 4.0f;
        for (int i = 0; i < 20; ++i) logits[static_cast<size_t>(pick(rng) % kVocab)] = -kInf;
        std::vector<int32_t> history(static_cast<size_t>(pick(rng) % 100));
        for (auto& token : history) token = pick(rng) % 50;

        Sampler sampler(params, kVocab);
        INFO("trial " << trial << " T=" << params.temperature << " top_k=" << params.top_k << " top_p=" << params.top_p
                      << " min_p=" << params.min_p);
        for (uint64_t step = 0; step < 20; ++step) {
            const Reference expected = reference_sample(params, logits, history, step);
            REQUIRE(sampler.sample(logits, history, step) == expected.token);
            ++compared;
        }
        if (params.temperature > 0) {
            const Reference expected = reference_sample(params, logits, history, 0);
            const auto c = sampler.candidates(logits, history);
            REQUIRE(tokens_of(c) == expected.kept);
            for (const auto& candidate : c)
                REQUIRE(candidate.probability == static_cast<double>(expected.w[static_cast<size_t>(candidate.token)]) /
                                                     static_cast<double>(expected.total_kept));
        }
    }
    CHECK(compared == 6000);
}

TEST_CASE("the sampler agrees with the reference at a 151936-token vocabulary", "[sampler][reference]") {
    // Dense buckets for the radix selection: continuous and coarsely rounded logits, several filters.
    std::mt19937 rng(99);
    std::normal_distribution<float> normal(0.0f, 2.5f);
    constexpr int32_t kVocab = 151936;
    std::vector<float> logits(kVocab);
    std::vector<int32_t> history(300);
    for (auto& token : history) token = static_cast<int32_t>(rng() % kVocab);
    for (int trial = 0; trial < 6; ++trial) {
        const bool rounded = trial % 2 == 1;
        for (auto& l : logits) l = rounded ? std::round(normal(rng) * 2.0f) / 2.0f : normal(rng);
        SamplingParams params;
        params.seed = 1000 + static_cast<uint64_t>(trial);
        params.temperature = trial < 2 ? 1.0f : (trial < 4 ? 0.6f : 2.0f);
        params.top_p = trial % 3 == 0 ? 1.0f : 0.9f;
        params.min_p = trial >= 4 ? 0.02f : 0.0f;
        params.repetition_penalty = 1.2f;
        params.penalty_last_n = -1;
        Sampler sampler(params, kVocab);
        INFO("trial " << trial);
        for (uint64_t step = 0; step < 5; ++step)
            REQUIRE(sampler.sample(logits, history, step) == reference_sample(params, logits, history, step).token);
        const Reference expected = reference_sample(params, logits, history, 0);
        REQUIRE(tokens_of(sampler.candidates(logits, history)) == expected.kept);
    }
}

// ---------------------------------------------------------------------------------------------
// Log-probabilities

TEST_CASE("logprobs are the full-vocabulary log-softmax of the adjusted, tempered logits", "[sampler][logprobs]") {
    const std::vector<float> logits{1.0f, 3.0f, 2.0f, 3.0f, -kInf};
    const auto expected_logprob = [&](size_t token, double t) {
        double total = 0;
        for (const float l : logits) total += std::exp((static_cast<double>(l) - 3.0) / t);
        return (static_cast<double>(logits[token]) - 3.0) / t - std::log(total);
    };
    for (const float t : {0.0f, 0.5f, 1.0f, 2.0f}) {
        for (const int32_t top_k : {0, 1}) {
            SamplingParams params;
            params.temperature = t;
            params.top_k = top_k;  // filters do not change logprobs
            Sampler sampler(params, 5);
            const double t_eff = t > 0 ? t : 1.0;
            const SampledToken s = sampler.sample_with_logprobs(logits, {}, 3, 5);
            CHECK(s.token == sampler.sample(logits, {}, 3));
            CHECK(s.logprob == Approx(expected_logprob(static_cast<size_t>(s.token), t_eff)).epsilon(1e-6));
            REQUIRE(s.top_logprobs.size() == 5);
            const int32_t order[] = {1, 3, 2, 0, 4};  // logit desc, ties by id
            for (size_t i = 0; i < 5; ++i) {
                CHECK(s.top_logprobs[i].token == order[i]);
                if (order[i] == 4) {
                    CHECK(s.top_logprobs[i].logprob == -kInf);
                } else {
                    CHECK(s.top_logprobs[i].logprob ==
                          Approx(expected_logprob(static_cast<size_t>(order[i]), t_eff)).epsilon(1e-6));
                }
            }
        }
    }
    SamplingParams params;
    params.logit_bias = {{0, 2.0f}};  // logprobs see the bias
    Sampler sampler(params, 5);
    const auto s = sampler.sample_with_logprobs(logits, {}, 0, 2);
    REQUIRE(s.top_logprobs.size() == 2);
    CHECK(s.top_logprobs[0].token == 0);
    CHECK(s.top_logprobs[1].token == 1);
    CHECK(s.top_logprobs[0].logprob == s.top_logprobs[1].logprob);
    CHECK(sampler.sample_with_logprobs(logits, {}, 0, 0).top_logprobs.empty());
    CHECK(sampler.sample_with_logprobs(logits, {}, 0, 50).top_logprobs.size() == 5);
    try {
        (void)sampler.sample_with_logprobs(logits, {}, 0, -1);
        FAIL("a negative top_logprobs was accepted");
    } catch (const SamplingParamError& e) {
        CHECK(e.field() == "top_logprobs");
    }
}

// ---------------------------------------------------------------------------------------------
// Timing (hidden: run with "[.perf]")

double thread_cpu_micros() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) * 1e-3;
}

TEST_CASE("time one sample at real vocabulary sizes", "[.perf]") {
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    for (const int32_t n_vocab : {49152, 151936}) {
        // A peaked, LLM-like shape: a normal background and a handful of tokens well above it.
        std::vector<float> peaked(static_cast<size_t>(n_vocab));
        for (auto& l : peaked) l = normal(rng);
        for (int i = 0; i < 8; ++i) peaked[static_cast<size_t>(rng() % static_cast<uint32_t>(n_vocab))] = 14.0f - i;
        // A flat one: the normal background alone (top-p 0.9 then keeps thousands of tokens).
        std::vector<float> flat(static_cast<size_t>(n_vocab));
        for (auto& l : flat) l = normal(rng);
        std::vector<int32_t> history(512);
        for (auto& token : history) token = static_cast<int32_t>(rng() % static_cast<uint32_t>(n_vocab));

        struct Setup {
            const char* name;
            SamplingParams params;
            const std::vector<float>* logits;
        };
        SamplingParams greedy;
        greedy.temperature = 0;
        SamplingParams top_p;
        top_p.top_p = 0.9f;
        SamplingParams top_k_p;
        top_k_p.top_k = 40;
        top_k_p.top_p = 0.95f;
        SamplingParams typical = top_p;
        typical.temperature = 0.7f;
        typical.repetition_penalty = 1.1f;
        typical.min_p = 0.05f;
        SamplingParams plain;
        const Setup setups[] = {
            {"greedy", greedy, &peaked},
            {"top_p 0.9 peaked", top_p, &peaked},
            {"top_p 0.9 flat", top_p, &flat},
            {"top_k 40 + top_p 0.95 flat", top_k_p, &flat},
            {"T0.7 rep1.1 top_p min_p", typical, &peaked},
            {"T1 no filter flat", plain, &flat},
        };
        for (const auto& setup : setups) {
            Sampler sampler(setup.params, n_vocab);
            // Wall time, and this thread's CPU time (the development machine is shared).
            std::vector<double> wall;
            std::vector<double> cpu;
            for (uint64_t step = 0; step < 20; ++step) (void)sampler.sample(*setup.logits, history, step);  // warm up
            for (uint64_t step = 0; step < 1000; ++step) {
                const auto start = std::chrono::steady_clock::now();
                const double cpu_start = thread_cpu_micros();
                (void)sampler.sample(*setup.logits, history, step);
                cpu.push_back(thread_cpu_micros() - cpu_start);
                wall.push_back(
                    std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
            }
            std::sort(wall.begin(), wall.end());
            std::sort(cpu.begin(), cpu.end());
            std::printf("n_vocab %6d  %-28s median wall %7.1f us  cpu %7.1f us  (p90 cpu %7.1f us)\n", n_vocab,
                        setup.name, wall[500], cpu[500], cpu[900]);
        }
    }
}
