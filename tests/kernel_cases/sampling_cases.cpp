// GPU sampler cases: random and built requests, the filter configurations, engine::Sampler's answers.
#include "kernel_cases/sampling_cases.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <initializer_list>
#include <limits>
#include <span>

#include "engine/sampling_row.h"
#include "kernel_cases/inputs.h"

namespace loom::kcases {

using engine::SamplingParams;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

template <class T>
T pick(std::mt19937_64& rng, std::initializer_list<T> values) {
    return *(values.begin() + rng() % values.size());
}

// The penalties and bias of random_sampling_params (each half the time, two fifths for the bias).
void random_penalties_and_bias(SamplingParams& p, int n_vocab, std::mt19937_64& rng) {
    if (rng() % 2) {
        p.repetition_penalty = pick(rng, {1.f, 1.1f, 0.8f, 1.5f});
        p.presence_penalty = pick(rng, {0.f, 0.5f, -0.3f});
        p.frequency_penalty = pick(rng, {0.f, 0.2f, -0.1f});
    }
    p.penalty_last_n = pick(rng, {0, -1, 64});
    if (rng() % 5 < 2) {
        const int n = 1 + static_cast<int>(rng() % 8);
        std::normal_distribution<float> bias(0.f, 3.f);
        for (int i = 0; i < n; ++i) {
            const int32_t id = static_cast<int32_t>(rng() % std::min(n_vocab, 16));  // repeats likely
            p.logit_bias.push_back({id, rng() % 7 == 0 ? -kInf : bias(rng)});
        }
    }
}

// Breaks the even rows of an error batch (see sampling_error_batch) and lists their errors.
void break_rows(SamplingErrorBatch& e, int n_vocab) {
    SamplingBatch& b = e.batch;
    const auto at = [&](int row, int id) -> float& { return b.logits[static_cast<size_t>(row) * n_vocab + id]; };
    at(0, 100) = std::numeric_limits<float>::quiet_NaN();
    at(0, 300) = std::numeric_limits<float>::quiet_NaN();
    at(2, 17) = kInf;
    for (int id = 0; id < n_vocab; ++id) at(4, id) = -kInf;
    // Row 6: finite logits that a penalty pushes to +inf.
    at(6, 42) = 3e38f;
    b.params[6].repetition_penalty = 0.01f;
    b.params[6].penalty_last_n = -1;
    b.histories[6] = {42, 1, 42};
    // Row 8: every token banned by bias (all but one by -inf logits, the last by bias).
    for (int id = 1; id < n_vocab; ++id) at(8, id) = -kInf;
    b.params[8].logit_bias = {{0, 2.f}, {0, -kInf}};
    // Row 10: a history id outside the vocabulary; row 11: an invalid parameter.
    b.params[10].repetition_penalty = 1.2f;
    b.params[10].penalty_last_n = -1;
    b.histories[10] = {1, 2, n_vocab + 5};
    b.params[11].top_p = 0;
    const std::string all_banned = "every token's logit is -inf: nothing can be sampled";
    e.errors = {{0, "logit of token 100 is nan", false},
                {2, "logit of token 17 is inf", false},
                {4, all_banned, true},
                {6, "logit of token 42 is inf", false},
                {8, all_banned, true},
                {10, "history[2]", false},
                {11, "invalid sampling parameter top_p", false}};
    e.ok = {1, 3, 5, 7, 9};
}

}  // namespace

bool logprob_close(float a, float b) {
    return a == b || std::fabs(static_cast<double>(a) - b) <= kSamplingLogprobTolerance;
}

std::vector<float> random_sampling_logits(int n_vocab, std::mt19937_64& rng) {
    static const float kScales[] = {0.3f, 1.f, 3.f, 10.f, 40.f};
    const int kind = static_cast<int>(rng() % 6);
    const float scale = kScales[rng() % 5];
    auto row = random_normal(static_cast<size_t>(n_vocab), static_cast<uint32_t>(rng()), 0.f, scale);
    switch (kind) {
        case 1:  // exact ties everywhere
            for (auto& x : row) x = std::round(x * 0.5f);
            break;
        case 2:  // about half banned
            for (auto& x : row)
                if (rng() % 2) x = -kInf;
            break;
        case 3:  // flat: one value repeated, a few higher ties
            std::fill(row.begin(), row.end(), 0.5f);
            for (int i = 0; i < 5; ++i) row[rng() % row.size()] = 1.5f;
            break;
        case 4:  // peaked: one token far above
            row[rng() % row.size()] += 25.f;
            break;
        default: break;
    }
    return row;
}

SamplingParams random_sampling_params(int n_vocab, std::mt19937_64& rng) {
    SamplingParams p;
    p.temperature = rng() % 4 == 0 ? 0.f : pick(rng, {1.f, 0.7f, 1.3f, 1e-30f, 1e-3f, 5.f, 1000.f, 0.05f});
    p.top_k = rng() % 2 ? 0 : pick(rng, {1, 2, 5, 40, 1000, n_vocab, n_vocab + 7});
    p.top_p = rng() % 2 ? 1.f : pick(rng, {0.9f, 0.5f, 0.95f, 0.999f, 1e-6f, 0.3f});
    p.min_p = rng() % 5 < 3 ? 0.f : pick(rng, {0.05f, 0.1f, 0.5f, 1.f, 1e-6f});
    random_penalties_and_bias(p, n_vocab, rng);
    p.seed = rng();
    return p;
}

std::vector<int32_t> random_sampling_history(int n_vocab, std::mt19937_64& rng) {
    std::vector<int32_t> h(rng() % kSamplingMaxHistory);
    for (auto& t : h) t = static_cast<int32_t>(rng() % 3 ? rng() % std::min(n_vocab, 40) : rng() % n_vocab);
    return h;
}

SamplingBatch random_sampling_batch(int n_vocab, int n, std::mt19937_64& rng) {
    SamplingBatch b;
    for (int i = 0; i < n; ++i) {
        const auto row = random_sampling_logits(n_vocab, rng);
        b.logits.insert(b.logits.end(), row.begin(), row.end());
        b.params.push_back(random_sampling_params(n_vocab, rng));
        b.histories.push_back(random_sampling_history(n_vocab, rng));
        b.steps.push_back(rng() % 2 ? rng() : rng() % 1000);
        b.n_tops.push_back(pick(rng, {-1, 0, 1, 5, 20}));
        b.rows.push_back(i > 0 && rng() % 3 == 0 ? static_cast<int>(rng() % static_cast<uint64_t>(i)) : i);
    }
    return b;
}

std::vector<SamplingRandomCase> sampling_random_cases() { return {{512, 25}, {49152, 4}, {151936, 2}}; }

std::vector<SamplingParams> sampling_filter_configs() {
    std::vector<SamplingParams> configs(9);
    configs[0].temperature = 0;
    configs[1].temperature = 0.8f;
    configs[2].top_k = 40;
    configs[3].top_p = 0.9f;
    configs[4].min_p = 0.05f;
    configs[5].repetition_penalty = 1.3f;
    configs[5].presence_penalty = 0.4f;
    configs[5].frequency_penalty = 0.25f;
    configs[5].penalty_last_n = -1;
    configs[6].logit_bias = {{3, 5.f}, {3, -1.25f}, {7, -kInf}, {9, 2.f}, {3, 0.5f}};
    configs[7] = configs[5];
    configs[7].temperature = 0.7f;
    configs[7].top_k = 50;
    configs[7].top_p = 0.95f;
    configs[7].min_p = 0.02f;
    configs[7].penalty_last_n = 64;
    configs[7].logit_bias = configs[6].logit_bias;
    configs[8].temperature = 1e-30f;  // only the tied maxima weigh
    return configs;
}

SamplingBatch sampling_filter_batch(int n_vocab, const SamplingParams& config, size_t config_index,
                                    std::mt19937_64& rng) {
    SamplingBatch b;
    for (int r = 0; r < 2; ++r) {
        auto row = random_normal(static_cast<size_t>(n_vocab), static_cast<uint32_t>(rng()), 0.f, 2.f);
        if (r == 1)
            for (auto& x : row) x = std::round(x);
        b.logits.insert(b.logits.end(), row.begin(), row.end());
    }
    const auto history = random_sampling_history(n_vocab, rng);
    for (int i = 0; i < 32; ++i) {
        b.params.push_back(config);
        b.params.back().seed = 1234 + config_index;
        b.histories.push_back(history);
        b.steps.push_back(static_cast<uint64_t>(i));
        b.n_tops.push_back(i % 3 == 0 ? 5 : -1);
        b.rows.push_back(i % 2);
    }
    return b;
}

SamplingErrorBatch sampling_error_batch(int n_vocab, std::mt19937_64& rng) {
    SamplingErrorBatch e{random_sampling_batch(n_vocab, 12, rng), {}, {}};
    for (int i = 0; i < 12; ++i) e.batch.rows[static_cast<size_t>(i)] = i;  // no sharing: rows get broken
    break_rows(e, n_vocab);
    return e;
}

SamplingOutcome sampling_reference(const SamplingBatch& b, size_t i, int n_vocab) {
    SamplingOutcome o;
    try {
        engine::Sampler s(b.params[i], n_vocab);
        const std::span<const float> row(b.logits.data() + static_cast<size_t>(b.rows[i]) * n_vocab,
                                         static_cast<size_t>(n_vocab));
        if (b.n_tops[i] >= 0) {
            o.token = s.sample_with_logprobs(row, b.histories[i], b.steps[i], b.n_tops[i]);
        } else {
            o.token.token = s.sample(row, b.histories[i], b.steps[i]);
            o.token.logprob = 0;
        }
    } catch (const std::exception& e) {
        o.error = e.what();
    }
    return o;
}

std::vector<SamplingTimingSetup> sampling_timing_setups() {
    SamplingParams greedy;
    greedy.temperature = 0;
    SamplingParams top_p;
    top_p.top_p = 0.9f;
    return {{"greedy", "greedy", greedy, -1},
            {"top_p 0.9", "top_p", top_p, -1},
            {"top_p 0.9 + 5 logprobs", "top_p_logprobs", top_p, 5}};
}

std::vector<float> sampling_timing_logits(int n_vocab, int rows) {
    return random_normal(static_cast<size_t>(n_vocab) * rows, 4242, 0.f, 3.f);
}

kernels::SamplingRow sampling_timing_row(const SamplingTimingSetup& s, int row) {
    return engine::sampling_row(s.params, static_cast<uint64_t>(row), row, 0, 0, 0, s.n_top);
}

bool sampling_timing_sorts(const SamplingTimingSetup& s) { return s.params.temperature > 0 || s.n_top > 0; }

}  // namespace loom::kcases
