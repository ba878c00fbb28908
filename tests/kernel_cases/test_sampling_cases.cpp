// The GPU sampler's cases on the host: the generators are deterministic per seed and stay inside
// the harness's capacities, engine::Sampler (the reference) gives the listed error for every broken
// row and tokens for the rest, and the timing setups pack as CudaSampler would.
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "catch.hpp"
#include "kernel_cases/sampling_cases.h"

using namespace loom;

namespace {

bool same_batch(const kcases::SamplingBatch& a, const kcases::SamplingBatch& b) {
    if (a.logits != b.logits || a.histories != b.histories || a.steps != b.steps || a.n_tops != b.n_tops ||
        a.rows != b.rows || a.size() != b.size())
        return false;
    for (size_t i = 0; i < a.size(); ++i) {
        const auto &p = a.params[i], &q = b.params[i];
        if (p.temperature != q.temperature || p.top_k != q.top_k || p.top_p != q.top_p || p.min_p != q.min_p ||
            p.seed != q.seed || p.logit_bias != q.logit_bias || p.penalty_last_n != q.penalty_last_n)
            return false;
    }
    return true;
}

// A sampled token's answer is well-formed: the token in range, log-probabilities <= 0, the top
// list no longer than asked and in descending order.
void check_answer(const kcases::SamplingOutcome& o, const kcases::SamplingBatch& b, size_t i, int n_vocab) {
    CHECK((o.token.token >= 0 && o.token.token < n_vocab));
    if (b.n_tops[i] < 0) return;
    CHECK(o.token.logprob <= 0.f);
    const auto& top = o.token.top_logprobs;
    CHECK(top.size() <= static_cast<size_t>(b.n_tops[i]));
    CHECK(std::is_sorted(top.begin(), top.end(), [](const auto& x, const auto& y) { return x.logprob > y.logprob; }));
}

}  // namespace

TEST_CASE("random sampling batches are the same for a seed and stay inside the harness", "[kernel_cases]") {
    std::mt19937_64 a(kcases::kSamplingRandomSeed), b(kcases::kSamplingRandomSeed), c(kcases::kSamplingRandomSeed + 1);
    const auto first = kcases::random_sampling_batch(512, 32, a);
    CHECK(same_batch(first, kcases::random_sampling_batch(512, 32, b)));
    CHECK_FALSE(same_batch(first, kcases::random_sampling_batch(512, 32, c)));
    REQUIRE(first.size() == 32);
    CHECK(first.logits.size() == 32 * 512);
    for (size_t i = 0; i < first.size(); ++i) {
        CHECK(first.rows[i] <= static_cast<int>(i));  // its own row or an earlier one
        CHECK(first.histories[i].size() < static_cast<size_t>(kcases::kSamplingMaxHistory));
        CHECK(first.params[i].logit_bias.size() <= static_cast<size_t>(kcases::kSamplingMaxBias));
        CHECK(std::all_of(first.histories[i].begin(), first.histories[i].end(),
                          [](int32_t t) { return t >= 0 && t < 512; }));
    }
    CHECK(kcases::sampling_random_cases().size() == 3);
}

TEST_CASE("the sampling reference is deterministic and answers random requests well-formed", "[kernel_cases]") {
    std::mt19937_64 rng(kcases::kSamplingRandomSeed);
    const int n_vocab = 512;
    const auto batch = kcases::random_sampling_batch(n_vocab, 32, rng);
    size_t sampled = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
        INFO("request " << i);
        const auto o = kcases::sampling_reference(batch, i, n_vocab);
        const auto again = kcases::sampling_reference(batch, i, n_vocab);
        CHECK(o.error == again.error);
        if (!o.error.empty()) continue;
        ++sampled;
        CHECK(o.token.token == again.token.token);
        check_answer(o, batch, i, n_vocab);
    }
    CHECK(sampled > batch.size() / 2);  // most random requests are valid and sample a token
}

TEST_CASE("every filter configuration samples 32 steps without error", "[kernel_cases]") {
    std::mt19937_64 rng(kcases::kSamplingFilterSeed);
    const auto configs = kcases::sampling_filter_configs();
    REQUIRE(configs.size() == 9);
    const int n_vocab = 512;
    for (size_t c = 0; c < configs.size(); ++c) {
        INFO("config " << c);
        const auto b = kcases::sampling_filter_batch(n_vocab, configs[c], c, rng);
        REQUIRE(b.size() == 32);
        size_t errors = 0, tokens = 0;
        std::vector<int32_t> seen;
        for (size_t i = 0; i < b.size(); ++i) {
            CHECK(b.params[i].seed == 1234 + c);
            const auto o = kcases::sampling_reference(b, i, n_vocab);
            errors += o.error.empty() ? 0 : 1;
            if (o.error.empty()) seen.push_back(o.token.token);
            tokens += o.error.empty() ? 1 : 0;
        }
        CHECK(errors == 0);
        CHECK(tokens == 32);
        std::sort(seen.begin(), seen.end());
        if (c == 0) CHECK(std::unique(seen.begin(), seen.end()) - seen.begin() <= 2);  // greedy: one token per row
    }
}

TEST_CASE("the CPU reference gives each broken row of the error batch its listed error", "[kernel_cases]") {
    std::mt19937_64 rng(kcases::kSamplingErrorSeed);
    for (const int n_vocab : {512, 49152}) {
        INFO("vocab " << n_vocab);
        const auto e = kcases::sampling_error_batch(n_vocab, rng);
        REQUIRE(e.batch.size() == 12);
        CHECK(e.errors.size() + e.ok.size() == 12);
        for (const auto& want : e.errors) {
            const auto o = kcases::sampling_reference(e.batch, want.request, n_vocab);
            INFO("request " << want.request << ": '" << o.error << "'");
            if (want.exact)
                CHECK(o.error == want.text);
            else
                CHECK(o.error.rfind(want.text, 0) == 0);
        }
        for (const size_t ok : e.ok) {
            const auto o = kcases::sampling_reference(e.batch, ok, n_vocab);
            CHECK(o.error.empty());
            if (o.error.empty()) check_answer(o, e.batch, ok, n_vocab);
        }
    }
}

TEST_CASE("the sampling timing setups pack as CudaSampler would and count their bytes", "[kernel_cases]") {
    const auto setups = kcases::sampling_timing_setups();
    REQUIRE(setups.size() == 3);
    for (const auto& s : setups) {
        INFO(s.name);
        const auto row = kcases::sampling_timing_row(s, 7);
        CHECK(row.temperature == s.params.temperature);
        CHECK(row.top_p == s.params.top_p);
        CHECK(row.top_k == s.params.top_k);
        CHECK(row.step == 7);
        CHECK(row.logits_row == 7);
        CHECK(row.history_count == 0);
        CHECK(row.bias_count == 0);
        CHECK(row.n_top == s.n_top);
        CHECK(kcases::sampling_timing_sorts(s) == (s.label != "greedy"));
    }
    const auto logits = kcases::sampling_timing_logits(100, 2);
    CHECK(logits == kcases::sampling_timing_logits(100, 2));
    CHECK(logits.size() == 200);
    CHECK(std::count(logits.begin(), logits.end(), 0.f) == 0);
    CHECK(kcases::sampling_bytes(2, 10) == 2 * (40.0 + sizeof(kernels::SampleResult)));
    CHECK(kcases::logprob_close(-1.f, -1.f + 5e-6f));
    CHECK_FALSE(kcases::logprob_close(-1.f, -1.f + 5e-5f));
}
