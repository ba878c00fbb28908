// The haiku test's re-scoring: plain, and emulating the CUDA backend's int8 activations along a worker's path.
#include <cmath>

#include "catch.hpp"
#include "e2e/reference_scores.h"
#include "engine/model_config.h"
#include "gguf/reader.h"
#include "support/random_tokens.h"
#include "support/test_data.h"

// SmolLM2's down projections are q8-eligible (engine/q8_policy.h), so the emulation changes decode rows.
// The prompt's 24 rows are one prefill part of more than 8 rows, which the CUDA backend keeps in f32
// activations: the first generated token's score comes from that prefill and must equal the plain
// reference bit for bit; every later one comes from a quantized decode step and differs, but only by
// the cost of int8 activations (measured on SmolLM2: max 0.05-0.11 nats over a haiku).
TEST_CASE("reference_logprobs emulates int8 activations on the worker's decode steps only", "[e2e]") {
    const loom::gguf::File model = loom::gguf::File::open(loom::test::require_smollm2());
    const int32_t n_vocab = loom::engine::ModelConfig::from_gguf(model).n_vocab;
    const auto prompt = loom::test::random_tokens(24, 5, n_vocab);
    const auto generated = loom::test::random_tokens(12, 6, n_vocab);
    const auto plain = loom::test::reference_logprobs(model, prompt, generated, 0.7, false);
    const auto q8 = loom::test::reference_logprobs(model, prompt, generated, 0.7, true);
    REQUIRE(plain.size() == generated.size());
    REQUIRE(q8.size() == generated.size());
    CHECK(q8[0] == plain[0]);
    int differ = 0;
    for (size_t i = 0; i < generated.size(); ++i) {
        INFO("token " << i << ": plain " << plain[i] << ", q8 " << q8[i]);
        CHECK(std::isfinite(q8[i]));
        CHECK(q8[i] <= 0);
        CHECK(std::abs(q8[i] - plain[i]) < 0.5);
        if (i > 0 && q8[i] != plain[i]) ++differ;
    }
    CHECK(differ == static_cast<int>(generated.size()) - 1);
}
