// The request engine over each backend under test (support/backends.h): concurrent requests equal
// their solo runs, chunked prompts, cancellation, KV exhaustion, stop tokens, and request validation.
// stories260K, or the model LOOM_TEST_MODEL_NAME names (support/test_data.h).
#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "catch.hpp"
#include "engine/engine.h"
#include "engine/errors.h"
#include "engine/make_backend.h"
#include "gguf/reader.h"
#include "support/backends.h"
#include "support/test_data.h"

using namespace loom::engine;

namespace {

const loom::gguf::File& model() {
    static const auto file = loom::gguf::File::open(loom::test::require_chosen_model().path);
    return file;
}

constexpr int kCtx = 512;

// threads: the cpu backend's; the cuda backend ignores it.
std::unique_ptr<Backend> make_backend(const std::string& kind, const BatchLimits& limits) {
    return loom::engine::make_backend(kind, model(), {.n_ctx = kCtx, .limits = limits, .threads = 2});
}

// A prompt of n random ids (a fresh model input, never the same two prompts).
std::vector<int32_t> random_prompt(int n, uint32_t seed) {
    static const int32_t n_vocab = ModelConfig::from_gguf(model()).n_vocab;
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> id(3, n_vocab - 1);
    std::vector<int32_t> p(static_cast<size_t>(n));
    for (auto& t : p) t = id(rng);
    return p;
}

RequestOptions greedy(int max_tokens) {
    RequestOptions o;
    o.max_tokens = max_tokens;
    o.sampling.temperature = 0;
    return o;
}

RequestOptions sampled(int max_tokens, uint64_t seed) {
    RequestOptions o;
    o.max_tokens = max_tokens;
    o.sampling.temperature = 0.9f;
    o.sampling.top_p = 0.95f;
    o.sampling.top_k = 40;
    o.sampling.repetition_penalty = 1.1f;
    o.sampling.seed = seed;
    o.top_logprobs = 3;
    return o;
}

struct Outcome {
    std::vector<int32_t> ids;
    std::vector<float> logprobs;
    FinishReason finish = FinishReason::none;
    std::string error;
};

// Steps the engine until idle, collecting each request's tokens and end.
std::map<uint64_t, Outcome> drain(Engine& engine, int max_steps = 100000) {
    std::map<uint64_t, Outcome> out;
    for (int i = 0; i < max_steps && !engine.idle(); ++i)
        for (const TokenEvent& e : engine.step()) {
            Outcome& o = out[e.request];
            REQUIRE(o.finish == FinishReason::none);  // nothing after a request's end
            if (e.has_token) {
                o.ids.push_back(e.token.token);
                o.logprobs.push_back(e.token.logprob);
            }
            if (e.finish != FinishReason::none) {
                o.finish = e.finish;
                o.error = e.error;
            }
        }
    REQUIRE(engine.idle());
    return out;
}

Outcome solo(const std::string& kind, const BatchLimits& limits, const std::vector<int32_t>& prompt,
             const RequestOptions& options) {
    auto backend = make_backend(kind, limits);
    Engine engine(*backend);
    const uint64_t id = engine.add(prompt, options);
    return drain(engine).at(id);
}

void check_concurrent_equals_solo(const std::string& kind, const std::vector<RequestOptions>& options) {
    const BatchLimits limits{8, 0, 64};  // 64-token steps: long prompts are chunked next to decode tokens
    const std::vector<int> lengths = {1, 5, 17, 40, 64, 100, 150, 9};
    std::vector<std::vector<int32_t>> prompts;
    for (size_t i = 0; i < lengths.size(); ++i)
        prompts.push_back(random_prompt(lengths[i], 100 + static_cast<uint32_t>(i)));

    auto backend = make_backend(kind, limits);
    Engine engine(*backend);
    std::vector<uint64_t> ids;
    for (size_t i = 0; i < prompts.size(); ++i) ids.push_back(engine.add(prompts[i], options[i % options.size()]));
    const auto together = drain(engine);
    CHECK(engine.kv_blocks().free_blocks() == engine.kv_blocks().total_blocks());
    CHECK(engine.kv_blocks().open_seqs() == 0);
    for (size_t i = 0; i < prompts.size(); ++i) {
        INFO("request " << i << ", prompt of " << lengths[i] << " tokens");
        const Outcome alone = solo(kind, limits, prompts[i], options[i % options.size()]);
        const Outcome& batched = together.at(ids[i]);
        CHECK(batched.finish == FinishReason::max_tokens);
        CHECK(batched.ids.size() == static_cast<size_t>(options[i % options.size()].max_tokens));
        CHECK(batched.ids == alone.ids);
        CHECK(batched.logprobs == alone.logprobs);
    }
}

}  // namespace

TEST_CASE("8 concurrent greedy requests of different lengths each equal their solo run", "[engine][batch]") {
    for (const std::string& kind : loom::test::tested_backends()) DYNAMIC_SECTION(kind) {
            check_concurrent_equals_solo(kind, {greedy(24), greedy(17), greedy(32)});
        }
}

TEST_CASE("8 concurrent sampled requests (top-k, top-p, penalties, logprobs) equal their solo runs",
          "[engine][batch]") {
    for (const std::string& kind : loom::test::tested_backends()) DYNAMIC_SECTION(kind) {
            check_concurrent_equals_solo(kind, {sampled(20, 7), sampled(13, 8), sampled(25, 9)});
        }
}

TEST_CASE("a cancelled request frees its slot and blocks at once and the others go on", "[engine][cancel]") {
    for (const std::string& kind : loom::test::tested_backends()) DYNAMIC_SECTION(kind) {
            auto backend = make_backend(kind, BatchLimits{4, 0, 64});
            Engine engine(*backend);
            const auto prompt_a = random_prompt(30, 1), prompt_b = random_prompt(20, 2);
            const uint64_t a = engine.add(prompt_a, greedy(40));
            const uint64_t b = engine.add(prompt_b, greedy(40));
            const uint64_t queued = engine.add(random_prompt(5, 3), greedy(4));
            CHECK(engine.cancel(queued));  // still waiting: leaves the queue
            for (int i = 0; i < 5; ++i) engine.step();
            const int free_before = engine.kv_blocks().free_blocks();
            CHECK(free_before < engine.kv_blocks().total_blocks());
            CHECK(engine.cancel(a));
            CHECK_FALSE(engine.cancel(a));  // idempotent: already gone
            CHECK(engine.kv_blocks().free_blocks() > free_before);
            CHECK(engine.kv_blocks().open_seqs() == 1);
            const auto rest = drain(engine);
            CHECK(rest.count(a) == 0);  // no event after the cancel
            CHECK(rest.at(b).finish == FinishReason::max_tokens);
            CHECK(engine.kv_blocks().free_blocks() == engine.kv_blocks().total_blocks());
            // b's tokens are its solo tokens (its first 5 steps' tokens are in neither map: compare the tail).
            const Outcome alone = solo(kind, BatchLimits{4, 0, 64}, prompt_b, greedy(40));
            REQUIRE(alone.ids.size() >= rest.at(b).ids.size());
            CHECK(std::equal(rest.at(b).ids.rbegin(), rest.at(b).ids.rend(), alone.ids.rbegin()));
        }
}

TEST_CASE("a full KV cache ends the starved request with a clear error, never corrupts the others", "[engine][kv]") {
    for (const std::string& kind : loom::test::tested_backends()) DYNAMIC_SECTION(kind) {
            // 6 blocks of 16 positions: two prompts of 20 tokens take 2 blocks each; growing to 60 tokens
            // would need 4 each, so one of them must stop.
            const BatchLimits limits{2, 6 * 16, 64};
            auto backend = make_backend(kind, limits);
            Engine engine(*backend);
            const auto prompt_a = random_prompt(20, 11), prompt_b = random_prompt(20, 12);
            const uint64_t a = engine.add(prompt_a, greedy(40));
            const uint64_t b = engine.add(prompt_b, greedy(40));
            const auto out = drain(engine);
            int errors = 0;
            for (const uint64_t id : {a, b}) {
                const Outcome& o = out.at(id);
                if (o.finish == FinishReason::error) {
                    ++errors;
                    CHECK_THAT(o.error, loom::test::contains("kv cache full"));
                } else {
                    CHECK(o.finish == FinishReason::max_tokens);
                }
                // Whatever a request produced equals the start of its solo run.
                const Outcome alone = solo(kind, BatchLimits{1, 0, 64}, id == a ? prompt_a : prompt_b, greedy(40));
                REQUIRE(o.ids.size() <= alone.ids.size());
                CHECK(std::equal(o.ids.begin(), o.ids.end(), alone.ids.begin()));
            }
            CHECK(errors == 1);
            CHECK(engine.kv_blocks().free_blocks() == 6);
        }
}

TEST_CASE("a stop token ends the request and is reported with finish 'stop'", "[engine][stop]") {
    for (const std::string& kind : loom::test::tested_backends()) DYNAMIC_SECTION(kind) {
            const auto prompt = random_prompt(12, 21);
            const Outcome free_run = solo(kind, BatchLimits{}, prompt, greedy(10));
            REQUIRE(free_run.ids.size() == 10);
            RequestOptions o = greedy(10);
            o.stop_ids = {free_run.ids[3]};
            const size_t first = static_cast<size_t>(
                std::find(free_run.ids.begin(), free_run.ids.end(), free_run.ids[3]) - free_run.ids.begin());
            const Outcome stopped = solo(kind, BatchLimits{}, prompt, o);
            CHECK(stopped.finish == FinishReason::stop_token);
            CHECK(stopped.ids == std::vector<int32_t>(free_run.ids.begin(), free_run.ids.begin() + first + 1));
            CHECK(to_string(FinishReason::stop_token) == "eos");
            CHECK(to_string(FinishReason::max_tokens) == "max_tokens");
        }
}

TEST_CASE("bad requests are refused by add() with the field named, and nothing is queued", "[engine][errors]") {
    for (const std::string& kind : loom::test::tested_backends()) DYNAMIC_SECTION(kind) {
            auto backend = make_backend(kind, BatchLimits{2, 0, 64});
            Engine engine(*backend);
            const int32_t n_vocab = backend->config().n_vocab;
            CHECK_THROWS_WITH(engine.add({}, greedy(4)), loom::test::contains("prompt: no tokens"));
            CHECK_THROWS_WITH(engine.add({1, n_vocab}, greedy(4)), loom::test::contains("outside the vocabulary"));
            CHECK_THROWS_WITH(engine.add(random_prompt(kCtx, 5), greedy(4)),
                              loom::test::contains("the context holds 512"));
            CHECK_THROWS_WITH(engine.add({1, 2}, greedy(0)), loom::test::contains("max_tokens"));
            RequestOptions bad = greedy(4);
            bad.sampling.top_p = 0;
            CHECK_THROWS_AS(engine.add({1, 2}, bad), SamplingParamError);
            bad = greedy(4);
            bad.top_logprobs = kMaxTopLogprobs + 1;
            CHECK_THROWS_WITH(engine.add({1, 2}, bad), loom::test::contains("top_logprobs"));
            CHECK(engine.idle());
            CHECK(engine.step().empty());
        }
}

TEST_CASE("a request runs to the end of the context and stops with context_full", "[engine][ctx]") {
    for (const std::string& kind : loom::test::tested_backends()) DYNAMIC_SECTION(kind) {
            auto backend = make_backend(kind, BatchLimits{1, 0, 64});
            Engine engine(*backend);
            const uint64_t id = engine.add(random_prompt(kCtx - 5, 31), greedy(100));
            const auto out = drain(engine);
            CHECK(out.at(id).finish == FinishReason::context_full);
            CHECK(out.at(id).ids.size() == 5);
        }
}

// Every backend: the resumed tokens are fed one per step as the first run decoded them, so the CUDA
// backend, whose prefill (GEMM) and decode (matvec) logits differ in their last bits, continues exactly.
TEST_CASE("a request resumed after k of its tokens generates the rest of the uninterrupted run", "[engine][resume]") {
    for (const std::string& kind : loom::test::tested_backends()) DYNAMIC_SECTION(kind) {
            const BatchLimits limits{4, 0, 64};
            const std::vector<int32_t> prompt = random_prompt(23, 77);
            RequestOptions options = sampled(30, 2024);
            options.sampling.presence_penalty = 0.5f;
            options.sampling.frequency_penalty = 0.3f;
            options.stop_ids.clear();
            const Outcome whole = solo(kind, limits, prompt, options);
            REQUIRE(whole.ids.size() == 30);
            for (int k : {1, 12, 29}) {
                INFO("resumed after " << k << " tokens");
                std::vector<int32_t> resumed = prompt;
                resumed.insert(resumed.end(), whole.ids.begin(), whole.ids.begin() + k);
                RequestOptions rest = options;
                rest.resume_tokens = k;
                rest.max_tokens = 30 - k;
                const Outcome tail = solo(kind, limits, resumed, rest);
                CHECK(tail.finish == FinishReason::max_tokens);
                CHECK(tail.ids == std::vector<int32_t>(whole.ids.begin() + k, whole.ids.end()));
                CHECK(tail.logprobs == std::vector<float>(whole.logprobs.begin() + k, whole.logprobs.end()));
            }
        }
}

// Forwards to a real backend and records each step's entries: (tokens, whether a token is sampled).
class PlanRecorder : public Backend {
public:
    explicit PlanRecorder(Backend& inner) : inner_(inner) {}
    std::string name() const override { return inner_.name(); }
    std::string device() const override { return inner_.device(); }
    const ModelConfig& config() const override { return inner_.config(); }
    int n_ctx() const override { return inner_.n_ctx(); }
    int max_batch_tokens() const override { return inner_.max_batch_tokens(); }
    KvCapacity kv_capacity() const override { return inner_.kv_capacity(); }
    bool batch_invariant() const override { return inner_.batch_invariant(); }
    MemoryReport memory() const override { return inner_.memory(); }
    std::vector<BatchOutput> execute(const StepPlan& plan) override {
        std::vector<std::pair<int, bool>> step;
        for (const auto& e : plan.entries) step.emplace_back(static_cast<int>(e.tokens.size()), e.sampling != nullptr);
        steps.push_back(step);
        return inner_.execute(plan);
    }
    std::vector<std::vector<std::pair<int, bool>>> steps;

private:
    Backend& inner_;
};

// The replay's shape, which the resumed run's equality above relies on for CUDA: the first run's
// prompt in its chunks (none sampled), then each resumed token alone in its own step, beside the
// other requests' decode tokens; only the last one samples.
TEST_CASE("a resumed request feeds its resumed tokens one per step, sampling after the last", "[engine][resume]") {
    auto inner = make_backend("cpu", BatchLimits{4, 0, 64});  // chunks of 64 - 4 = 60 positions
    PlanRecorder backend(*inner);
    Engine engine(backend);
    RequestOptions options = greedy(2);
    options.resume_tokens = 5;
    engine.add(random_prompt(70 + 5, 91), options);  // a first-run prompt of 70: chunks of 60 and 10
    drain(engine);
    using Step = std::vector<std::pair<int, bool>>;
    const std::vector<Step> expected = {{{60, false}}, {{10, false}}, {{1, false}}, {{1, false}},
                                        {{1, false}},  {{1, false}},  {{1, true}},  {{1, true}}};
    CHECK(backend.steps == expected);
}

TEST_CASE("resume_tokens outside 0 .. prompt length - 1 is a RequestError naming it", "[engine][resume]") {
    for (const std::string& kind : loom::test::tested_backends()) DYNAMIC_SECTION(kind) {
            auto backend = make_backend(kind, BatchLimits{2, 0, 64});
            Engine engine(*backend);
            for (int bad : {-1, 5, 6}) {
                RequestOptions o = greedy(2);
                o.resume_tokens = bad;
                INFO(bad);
                CHECK_THROWS_WITH(engine.add(random_prompt(5, 1), o), Catch::Matchers::StartsWith("resume_tokens:"));
                CHECK_THROWS_AS(engine.add(random_prompt(5, 1), o), RequestError);
            }
            RequestOptions o = greedy(2);
            o.resume_tokens = 4;
            CHECK(engine.add(random_prompt(5, 1), o) != 0);
        }
}
