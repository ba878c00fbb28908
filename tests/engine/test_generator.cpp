// engine::generate on stories260K: greedy ids against transformers, stop strings across token
// boundaries, streamed text, max_tokens, EOS, a full context, an oversized prompt, seeded sampling,
// and the same ids as the forward() + CPU Sampler loop generate() used to run.
#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "catch.hpp"
#include "engine/cpu/cpu_backend.h"
#include "engine/errors.h"
#include "engine/generator.h"
#include "engine/kv_manager.h"
#include "gguf/reader.h"
#include "support/test_data.h"
#include "tokenizer/tokenizer.h"

using namespace loom::engine;
using loom::tokenizer::Tokenizer;

namespace {

struct Stories {
    loom::gguf::File file;
    Tokenizer tok;
    std::vector<int32_t> greedy_ids;  // transformers' 128 greedy ids from BOS
};

const Stories& stories() {
    static const Stories s = [] {
        auto file = loom::gguf::File::open(loom::test::require_stories260k());
        auto tok = Tokenizer::from_gguf(file);
        std::ifstream in(loom::test::require_file(
            std::filesystem::path(LOOM_SOURCE_DIR) / "tests/reference/stories260k_greedy_ids.json",
            "made by tests/reference/hf_reference.py greedy"));
        const auto j = nlohmann::json::parse(in);
        return Stories{std::move(file), std::move(tok), j.at("ids").get<std::vector<int32_t>>()};
    }();
    return s;
}

int32_t bos() { return *stories().tok.special_ids().bos; }
int32_t eos() { return *stories().tok.special_ids().eos; }

std::vector<int32_t> greedy_prefix(size_t n) {
    const auto& ids = stories().greedy_ids;
    return {ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n)};
}

std::string decode(const std::vector<int32_t>& ids) { return stories().tok.decode(ids, {.skip_control = true}); }

// The text `ids` add to the prompt's text: decode(prompt + ids) less decode(prompt).
std::string added_text(const std::vector<int32_t>& prompt, const std::vector<int32_t>& ids) {
    std::vector<int32_t> all = prompt;
    all.insert(all.end(), ids.begin(), ids.end());
    const std::string before = decode(prompt), after = decode(all);
    REQUIRE(after.rfind(before, 0) == 0);
    return after.substr(before.size());
}

// Whether `text` is what the first n greedy tokens produced in a run whose full text is `full`:
// a prefix of it that ends with token n-1's bytes (all ASCII here, so nothing is held back).
bool is_greedy_text(const std::string& text, size_t n, const std::string& full) {
    const std::string& last = stories().tok.token_bytes(stories().greedy_ids[n - 1]);
    return full.rfind(text, 0) == 0 && text.size() >= last.size() &&
           text.compare(text.size() - last.size(), last.size(), last) == 0;
}

GenerateOptions greedy(int max_tokens) {
    GenerateOptions o;
    o.max_tokens = max_tokens;
    o.sampling.temperature = 0;
    o.ignore_eos = true;
    return o;
}

// Runs a generation and checks that the streamed pieces add up to result.text.
GenerateResult run(Backend& backend, const std::vector<int32_t>& prompt, const GenerateOptions& options) {
    std::string streamed;
    GenerateResult r = generate(backend, stories().tok, prompt, options, [&](std::string_view piece) {
        CHECK_FALSE(piece.empty());
        streamed += piece;
    });
    CHECK(streamed == r.text);
    return r;
}

// Forwards to a real backend, counting logits passes and steps; on step `eos_on_step` (1 = the prefill) it
// turns the sampled token into the end-of-sequence token, as a model that finishes would.
class ProbeBackend : public Backend {
public:
    explicit ProbeBackend(Backend& inner) : inner_(inner) {}
    std::string name() const override { return inner_.name(); }
    std::string device() const override { return inner_.device(); }
    const ModelConfig& config() const override { return inner_.config(); }
    int n_ctx() const override { return inner_.n_ctx(); }
    int max_batch_tokens() const override { return inner_.max_batch_tokens(); }
    loom::engine::KvCapacity kv_capacity() const override { return inner_.kv_capacity(); }
    bool batch_invariant() const override { return inner_.batch_invariant(); }
    std::vector<loom::engine::BatchOutput> execute(const loom::engine::StepPlan& plan) override {
        if (!plan.logits.empty()) {
            ++forward_calls;
            return inner_.execute(plan);
        }
        ++steps;
        for (const auto& e : plan.entries)
            max_length = std::max(max_length, e.pos0 + static_cast<int>(e.tokens.size()));
        auto out = inner_.execute(plan);
        if (steps == eos_on_step) {
            REQUIRE(out.size() == 1);
            REQUIRE(out[0].sampled);
            out[0].token.token = eos();
        }
        return out;
    }
    loom::engine::MemoryReport memory() const override { return inner_.memory(); }

    int forward_calls = 0;
    int steps = 0;
    int eos_on_step = -1;
    int max_length = 0;  // the most positions a sequence reached

private:
    Backend& inner_;
};

}  // namespace

TEST_CASE("greedy from BOS gives transformers' 128 ids for stories260K", "[engine][generate][stories]") {
    loom::engine::cpu::CpuBackend backend(stories().file, 0, 2);
    const GenerateResult r = run(backend, {bos()}, greedy(128));
    CHECK(r.ids == stories().greedy_ids);
    CHECK(r.finish == FinishReason::max_tokens);
    CHECK(r.text.find("Once upon a time, there was a little girl named Lily. She loved to play outside in the park.") !=
          std::string::npos);
    CHECK(r.timings.prompt_ms > 0);
    CHECK(r.timings.ttft_ms >= r.timings.prompt_ms);
    CHECK(r.timings.decode_ms > 0);
    CHECK(r.timings.decode_tok_s > 0);
}

TEST_CASE("stop strings end the text before the match, also across token boundaries", "[engine][generate][stories]") {
    loom::engine::cpu::CpuBackend backend(stories().file, 0, 2);
    const std::string full = run(backend, {bos()}, greedy(128)).text;
    struct Case {
        std::vector<std::string> stops;
        std::string expected_end;  // how the text before the match ends
    };
    const Case cases[] = {
        // "park." is four tokens (" p", "ar", "k", "."), so its beginnings are held back while it
        // grows; "ttle gi" starts inside " little" and ends inside "ir" (of " g", "ir", "l").
        {{"park."}, "Lily. She loved to play outside in the "},
        {{"ttle gi"}, "upon a time, there was a li"},
        // The earliest match of several wins, whichever is listed first.
        {{"red ball", "Lily"}, "there was a little girl named "},
        {{"Once"}, ""},
        {{"\nLily's mom"}, "but it was too high."},
    };
    for (const Case& c : cases) {
        INFO("stop " << c.stops.front());
        size_t first_match = std::string::npos;
        for (const auto& s : c.stops) first_match = std::min(first_match, full.find(s));
        const std::string expected = full.substr(0, first_match);
        REQUIRE(expected.ends_with(c.expected_end));
        GenerateOptions o = greedy(128);
        o.stop_strings = c.stops;
        const GenerateResult r = run(backend, {bos()}, o);
        CHECK(r.finish == FinishReason::stop_string);
        CHECK(r.text == expected);
        // Generation stops at the token that completes the match.
        size_t needed = 1;
        const auto matched = [&](size_t n) {
            const std::string text = decode(greedy_prefix(n));
            return std::any_of(c.stops.begin(), c.stops.end(),
                               [&](const auto& s) { return text.find(s) != std::string::npos; });
        };
        while (!matched(needed)) ++needed;
        CHECK(r.ids == greedy_prefix(needed));
    }
    // "ttle gi" lies in no single token: the match is made across token boundaries.
    const auto& ids = stories().greedy_ids;
    CHECK(std::none_of(ids.begin(), ids.end(),
                       [](int32_t id) { return stories().tok.token_bytes(id).find("ttle gi") != std::string::npos; }));
}

TEST_CASE("a stop string whose beginnings keep matching but which never completes changes nothing",
          "[engine][generate][stories]") {
    loom::engine::cpu::CpuBackend backend(stories().file, 0, 2);
    GenerateOptions o = greedy(128);
    o.stop_strings = {"Lily. She loved to dance", "a little girl named Tom"};
    const GenerateResult r = run(backend, {bos()}, o);
    CHECK(r.finish == FinishReason::max_tokens);
    CHECK(r.text == run(backend, {bos()}, greedy(128)).text);
    CHECK(r.ids == stories().greedy_ids);

    o.stop_strings = {""};
    CHECK_THROWS_AS(generate(backend, stories().tok, std::vector<int32_t>{bos()}, o), RequestError);
}

TEST_CASE("the generated text is what the ids add to the prompt's text", "[engine][generate][stories]") {
    loom::engine::cpu::CpuBackend backend(stories().file, 0, 2);
    const std::vector<int32_t> prompt = stories().tok.encode("Once upon a time,");
    const GenerateResult r = run(backend, prompt, greedy(24));
    CHECK(r.text == added_text(prompt, r.ids));
    CHECK(r.text.rfind(" there was", 0) == 0);  // the first token's space is real text here
}

TEST_CASE("max_tokens bounds the generation", "[engine][generate][stories]") {
    loom::engine::cpu::CpuBackend backend(stories().file, 0, 2);
    const std::string full = run(backend, {bos()}, greedy(128)).text;
    const GenerateResult ten = run(backend, {bos()}, greedy(10));
    CHECK(ten.ids == greedy_prefix(10));
    CHECK(is_greedy_text(ten.text, 10, full));
    CHECK(ten.finish == FinishReason::max_tokens);

    // Prefill only: the prompt runs through one logits pass, nothing is sampled.
    ProbeBackend probe(backend);
    const GenerateResult none = run(probe, {bos()}, greedy(0));
    CHECK(none.ids.empty());
    CHECK(none.text.empty());
    CHECK(none.finish == FinishReason::max_tokens);
    CHECK(none.timings.prompt_ms > 0);
    CHECK(probe.forward_calls == 1);
    CHECK(probe.steps == 0);
    CHECK(run(backend, {bos()}, greedy(10)).ids == greedy_prefix(10));
}

TEST_CASE("an end-of-sequence token stops generation unless ignore_eos", "[engine][generate][stories]") {
    const auto ends = end_of_generation_ids(stories().tok);
    CHECK(std::find(ends.begin(), ends.end(), eos()) != ends.end());

    loom::engine::cpu::CpuBackend cpu(stories().file, 0, 2);
    const std::string full = run(cpu, {bos()}, greedy(128)).text;
    ProbeBackend backend(cpu);
    backend.eos_on_step = 6;  // the prefill step and 4 decode steps give 5 tokens; the 6th is EOS
    GenerateOptions o = greedy(10);
    o.ignore_eos = false;
    o.top_logprobs = 2;
    const GenerateResult r = run(backend, {bos()}, o);
    CHECK(r.finish == FinishReason::stop_token);
    CHECK(r.ids == greedy_prefix(5));  // the EOS id is not part of the result
    CHECK(r.logprobs.size() == 5);
    CHECK(is_greedy_text(r.text, 5, full));
    CHECK(backend.steps == 6);

    backend.steps = 0;
    o.ignore_eos = true;
    const GenerateResult past = run(backend, {bos()}, o);
    CHECK(past.finish == FinishReason::max_tokens);
    REQUIRE(past.ids.size() == 10);
    CHECK(std::vector<int32_t>(past.ids.begin(), past.ids.begin() + 5) == greedy_prefix(5));
    CHECK(past.ids[5] == eos());

    // Biased from the start: EOS comes first and nothing is generated.
    o.ignore_eos = false;
    o.sampling.logit_bias = {{eos(), 1000.0f}};
    const GenerateResult first = run(cpu, {bos()}, o);
    CHECK(first.finish == FinishReason::stop_token);
    CHECK(first.ids.empty());
    CHECK(first.text.empty());
}

TEST_CASE("a full context stops generation with context_full", "[engine][generate][stories]") {
    // The context bounds prompt + generated tokens (the Engine's rule): BOS and 19 tokens fill 20,
    // and the last token, never fed, leaves position 19 unused.
    loom::engine::cpu::CpuBackend small(stories().file, 20, 2);
    ProbeBackend probe(small);
    const GenerateResult r = run(probe, {bos()}, greedy(100));
    CHECK(r.finish == FinishReason::context_full);
    CHECK(r.ids == greedy_prefix(19));
    CHECK(probe.max_length == 19);

    loom::engine::cpu::CpuBackend tiny(stories().file, 8, 2);
    std::vector<int32_t> prompt = {bos()};
    const auto six = greedy_prefix(6);
    prompt.insert(prompt.end(), six.begin(), six.end());  // 7 tokens: room for exactly one more
    const GenerateResult last = run(tiny, prompt, greedy(100));
    CHECK(last.finish == FinishReason::context_full);
    CHECK(last.ids == std::vector<int32_t>{greedy_prefix(7).back()});
}

TEST_CASE("a prompt that does not fit the context is refused before any compute", "[engine][generate][stories]") {
    loom::engine::cpu::CpuBackend cpu(stories().file, 8, 2);
    ProbeBackend backend(cpu);
    std::vector<int32_t> prompt = {bos()};
    const auto seven = greedy_prefix(7);
    prompt.insert(prompt.end(), seven.begin(), seven.end());  // 8 tokens leave no room to generate
    CHECK_THROWS_AS(generate(backend, stories().tok, prompt, greedy(4)), RequestError);
    CHECK_THROWS_AS(generate(backend, stories().tok, greedy_prefix(100), greedy(4)), RequestError);
    CHECK_THROWS_AS(generate(backend, stories().tok, std::vector<int32_t>{}, greedy(4)), RequestError);
    CHECK(backend.steps == 0);
    CHECK(backend.forward_calls == 0);
    std::string message;
    try {
        generate(backend, stories().tok, prompt, greedy(4));
    } catch (const RequestError& e) {
        message = e.what();
    }
    INFO(message);
    CHECK(message.find("8 tokens") != std::string::npos);
    CHECK(message.find("context holds 8") != std::string::npos);
}

TEST_CASE("seeded sampling at temperature 0.8 is reproducible and depends on the seed", "[engine][generate][stories]") {
    loom::engine::cpu::CpuBackend backend(stories().file, 0, 2);
    const std::vector<int32_t> prompt = stories().tok.encode("Once upon a time");
    REQUIRE(prompt.front() == bos());
    GenerateOptions o;
    o.max_tokens = 48;
    o.ignore_eos = true;
    o.sampling.temperature = 0.8f;
    o.sampling.seed = 1234;
    const GenerateResult a = run(backend, prompt, o);
    const GenerateResult b = run(backend, prompt, o);
    o.sampling.seed = 1235;
    const GenerateResult c = run(backend, prompt, o);
    REQUIRE(a.ids.size() == 48);
    CHECK(a.ids == b.ids);
    CHECK(a.text == b.text);
    CHECK(a.ids != c.ids);
    UNSCOPED_INFO("seed 1234: " << a.text);
    UNSCOPED_INFO("seed 1235: " << c.text);
}

TEST_CASE("top-k/top-p/penalty sampling gives the ids of the forward() + CPU Sampler loop",
          "[engine][generate][stories]") {
    loom::engine::cpu::CpuBackend backend(stories().file, 0, 2);
    const std::vector<int32_t> prompt = stories().tok.encode("Once upon a time, there was a big dog");
    GenerateOptions o;
    o.max_tokens = 64;
    o.ignore_eos = true;
    o.top_logprobs = 3;
    o.sampling.temperature = 0.9f;
    o.sampling.top_k = 40;
    o.sampling.top_p = 0.9f;
    o.sampling.min_p = 0.02f;
    o.sampling.repetition_penalty = 1.15f;
    o.sampling.presence_penalty = 0.3f;
    o.sampling.frequency_penalty = 0.2f;
    o.sampling.seed = 77;
    const GenerateResult r = run(backend, prompt, o);

    // The algorithm generate() ran before it drove an Engine: one forward pass per token, the CPU
    // Sampler on the host with step = the index of the generated token.
    Sampler sampler(o.sampling, backend.config().n_vocab);
    std::vector<float> logits(static_cast<size_t>(backend.config().n_vocab));
    std::vector<int32_t> history = prompt, ids;
    std::vector<SampledToken> logprobs;
    loom::engine::KvManager kv(backend);
    kv.forward(prompt, logits, false);
    for (int step = 0; step < o.max_tokens; ++step) {
        SampledToken s = sampler.sample_with_logprobs(logits, history, static_cast<uint64_t>(step), o.top_logprobs);
        ids.push_back(s.token);
        history.push_back(s.token);
        logprobs.push_back(std::move(s));
        const int32_t next[1] = {ids.back()};
        if (step + 1 < o.max_tokens) kv.forward(next, logits, false);
    }
    CHECK(r.finish == FinishReason::max_tokens);
    CHECK(r.ids == ids);
    CHECK(r.text == added_text(prompt, ids));
    // Not just greedy: some token was not the most likely one.
    CHECK(std::any_of(logprobs.begin(), logprobs.end(),
                      [](const SampledToken& s) { return s.token != s.top_logprobs.front().token; }));
    REQUIRE(r.logprobs.size() == logprobs.size());
    for (size_t i = 0; i < logprobs.size(); ++i) {
        INFO("token " << i);
        CHECK(r.logprobs[i].logprob == logprobs[i].logprob);
        REQUIRE(r.logprobs[i].top_logprobs.size() == logprobs[i].top_logprobs.size());
        for (size_t k = 0; k < logprobs[i].top_logprobs.size(); ++k) {
            CHECK(r.logprobs[i].top_logprobs[k].token == logprobs[i].top_logprobs[k].token);
            CHECK(r.logprobs[i].top_logprobs[k].logprob == logprobs[i].top_logprobs[k].logprob);
        }
    }
}

TEST_CASE("a request that ends in an error throws RequestError and leaves no slot taken",
          "[engine][generate][stories]") {
    // 2 KV blocks of 16 positions: the 33rd position has no block, so the Engine ends the request.
    loom::engine::cpu::CpuBackend backend(stories().file, 0, 2, BatchLimits{1, 32, 512});
    CHECK_THROWS_WITH(generate(backend, stories().tok, std::vector<int32_t>{bos()}, greedy(100)),
                      loom::test::contains("kv cache full"));

    // A throwing on_text leaves the request running in the Engine; the backend serves the next call.
    struct Stop {};
    CHECK_THROWS_AS(generate(backend, stories().tok, std::vector<int32_t>{bos()}, greedy(20),
                             [](std::string_view) { throw Stop{}; }),
                    Stop);
    CHECK(run(backend, {bos()}, greedy(20)).ids == greedy_prefix(20));
}
