// Chunk and batch invariance on each backend under test (support/backends.h), issue 16's acceptance
// test: on small synthetic llama and qwen2 models in Q4_0, Q8_0 and Q4_K_M, a position's logits are
// bit-identical whether it ran in decode steps, one prefill or chunks of 7, alone or among 16 other
// sequences prefilling and decoding in the same steps; and a greedy generation of 256 tokens is the
// same at batch sizes 1, 8 and 32. Every comparison prints its max |delta| and first difference. The
// backends run with BackendOptions::batch_invariant (cuda's mode; the cpu backend is invariant anyway).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "catch.hpp"
#include "engine/engine.h"
#include "engine/kv_manager.h"
#include "engine/make_backend.h"
#include "gguf/reader.h"
#include "gguf/synth.h"
#include "support/backends.h"
#include "support/random_tokens.h"
#include "support/test_data.h"

using namespace loom;
using engine::BatchEntry;
using engine::KvManager;
using engine::SampledToken;

namespace {

// Widths are multiples of 256 (the CUDA q8 path's K-quant rows need n_in % 256 == 0, so it is the
// one exercised); two layers, so a layer hands over to the next and the last to the output norm.
// llama: head_dim 64, 4 query / 2 KV heads, its own output matrix (Q6_K in Q4_K_M); qwen2: head_dim
// 128, 2 / 1, Q/K/V biases, NeoX RoPE, tied embeddings (as Qwen2.5's small models).
struct Spec {
    gguf::SynthArch arch;
    gguf::SynthType type;
    std::string name() const {
        return std::string(gguf::synth_arch_name(arch)) + "-" + std::string(gguf::synth_type_name(type));
    }
};

std::vector<Spec> specs() {
    std::vector<Spec> out;
    for (const auto arch : {gguf::SynthArch::llama, gguf::SynthArch::qwen2})
        for (const auto type : {gguf::SynthType::q4_0, gguf::SynthType::q8_0, gguf::SynthType::q4_k_m})
            out.push_back({arch, type});
    return out;
}

// The model of `spec`, synthesized on first use into this program's temporary folder (tokenizer
// from stories260K: a vocabulary of 512).
const gguf::File& model(const Spec& spec) {
    static std::map<std::string, gguf::File> files;
    const auto it = files.find(spec.name());
    if (it != files.end()) return it->second;
    static const std::filesystem::path dir = test::temp_dir();
    const bool llama = spec.arch == gguf::SynthArch::llama;
    gguf::SynthOptions o;
    o.arch = spec.arch;
    o.type = spec.type;
    o.shape = {.name = spec.name(),
               .vocab = 512,
               .embd = 256,
               .layers = 2,
               .heads = llama ? 4u : 2u,
               .kv_heads = llama ? 2u : 1u,
               .ffn = 768,
               .context = 1024,
               .rope_base = llama ? 10000.f : 1e6f,
               .rms_eps = llama ? 1e-5f : 1e-6f,
               .tied_embeddings = !llama,
               .rope_scaling = std::nullopt};
    o.vocab = test::require_stories260k();
    o.seed = 16 + static_cast<uint64_t>(spec.type) * 2 + (llama ? 0 : 1);
    const std::filesystem::path path = dir / (spec.name() + ".gguf");
    gguf::synthesize(o).writer.write(path);
    return files.emplace(spec.name(), gguf::File::open(path)).first->second;
}

// The sequence under test: kLength tokens; its observed prefixes end at kEnds (a lone first token,
// a short prefill, one and two tokens past it, a 16-row and an odd 31-row prefill, and the whole).
constexpr int kLength = 64;
constexpr int kEnds[] = {1, 7, 8, 9, 16, 31, 64};
constexpr int kCompanions = 16;
constexpr int kWarmup = 4;  // companion-only steps before the test sequence starts

std::unique_ptr<engine::Backend> make(const std::string& kind, const Spec& spec, int n_ctx,
                                      const engine::BatchLimits& limits) {
    return engine::make_backend(kind, model(spec),
                                {.n_ctx = n_ctx, .limits = limits, .threads = 2, .batch_invariant = true});
}

// Step sizes feeding the first n tokens `chunk` at a time (the last step takes the rest).
std::vector<int> cuts(int chunk, int n) {
    std::vector<int> sizes;
    for (int done = 0; done < n; done += chunk) sizes.push_back(std::min(chunk, n - done));
    return sizes;
}

std::string show(float x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", x);
    return buf;
}

bool same_bits(float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }

double abs_delta(float a, float b) { return std::isnan(a - b) ? INFINITY : std::fabs(double(a) - b); }

// ---- Logits at every position, alone (logits passes) ----

// The test sequence's logits (kLength, n_vocab), fed in steps of `sizes` tokens by logits passes
// (KvManager::forward with all_logits): the public interface's one window on every row's logits.
std::vector<float> logits_table(engine::Backend& backend, const std::vector<int32_t>& tokens,
                                const std::vector<int>& sizes) {
    const size_t V = static_cast<size_t>(backend.config().n_vocab);
    std::vector<float> table(tokens.size() * V, NAN);
    KvManager kv(backend);
    size_t done = 0;
    for (const int n : sizes) {
        const auto count = static_cast<size_t>(n);
        kv.forward(std::span<const int32_t>(tokens).subspan(done, count),
                   std::span<float>(table).subspan(done * V, count * V), true);
        done += count;
    }
    return table;
}

// Prints how far `got` is from `want` ((kLength, n_vocab) tables); returns whether every bit agrees.
bool report_tables(const std::string& what, const std::vector<float>& want, const std::vector<float>& got,
                   size_t n_vocab) {
    double max_abs = 0;
    size_t differing = 0, first = want.size();
    for (size_t i = 0; i < want.size(); ++i) {
        if (same_bits(want[i], got[i])) continue;
        if (differing++ == 0) first = i;
        max_abs = std::max(max_abs, abs_delta(want[i], got[i]));
    }
    std::printf("%s: max |delta| %g, %zu of %zu logits differ", what.c_str(), max_abs, differing, want.size());
    if (differing)
        std::printf(" (first: position %zu, token %zu: %.9g vs %.9g)", first / n_vocab, first % n_vocab, want[first],
                    got[first]);
    std::printf("\n");
    return differing == 0;
}

// ---- The sampled step at the end of each prefix, alone and among companions ----

// A sequence sharing the steps: a prompt of its own length prefilled in chunks of its own size,
// then one token a step (random tokens fed, greedy samples taken and dropped).
struct Companion {
    int seq = -1;
    std::vector<int32_t> tokens;
    int prompt = 0, chunk = 0, fed = 0;
};

// Companion i: a prompt of 2 + 6i tokens in chunks of 4 + 3 (i % 5), so that after kWarmup steps
// some decode and some prefill (chunks of 4 to 16 tokens, a 1-token remainder among them) while the
// sequence under test runs.
std::vector<Companion> make_company(int32_t n_vocab) {
    std::vector<Companion> company(kCompanions);
    for (int i = 0; i < kCompanions; ++i) {
        Companion& c = company[static_cast<size_t>(i)];
        c.prompt = 2 + 6 * i;
        c.chunk = 4 + 3 * (i % 5);
        c.tokens = test::random_tokens(c.prompt + kWarmup + kLength, 500 + static_cast<uint32_t>(i), n_vocab);
    }
    return company;
}

BatchEntry next_entry(Companion& c, const engine::SamplingParams& greedy) {
    const int take = c.fed < c.prompt ? std::min(c.chunk, c.prompt - c.fed) : 1;
    BatchEntry e;
    e.seq = c.seq;
    e.tokens = std::span<const int32_t>(c.tokens).subspan(static_cast<size_t>(c.fed), static_cast<size_t>(take));
    c.fed += take;
    if (c.fed >= c.prompt) {
        e.sampling = &greedy;
        e.history = std::span<const int32_t>(c.tokens).first(static_cast<size_t>(c.fed));
    }
    return e;
}

// Feeds the test sequence in steps of `sizes`, alone or in the middle of the companions' batch
// (its slot and its entry between theirs), sampling greedily with 20 log-probabilities after every
// step; returns the samples by the prefix length they end. A step among other sequences shows its
// logits only this way (a logits pass runs one entry), so the 20 alternatives stand in for them.
std::map<int, SampledToken> run_steps(engine::Backend& backend, const std::vector<int32_t>& tokens,
                                      const std::vector<int>& sizes, bool batched) {
    const int32_t n_vocab = backend.config().n_vocab;
    engine::SamplingParams greedy;
    greedy.temperature = 0;
    KvManager kv(backend);
    std::vector<Companion> company = batched ? make_company(n_vocab) : std::vector<Companion>{};
    const size_t half = company.size() / 2;
    for (size_t i = 0; i < half; ++i) company[i].seq = kv.open();
    const int seq = kv.open();
    for (size_t i = half; i < company.size(); ++i) company[i].seq = kv.open();
    const auto companion_entries = [&](std::vector<BatchEntry>& batch, size_t from, size_t to) {
        for (size_t i = from; i < to; ++i) batch.push_back(next_entry(company[i], greedy));
    };
    for (int w = 0; w < kWarmup && batched; ++w) {
        std::vector<BatchEntry> batch;
        companion_entries(batch, 0, company.size());
        kv.step(batch);
    }
    std::map<int, SampledToken> samples;
    size_t done = 0;
    for (const int n : sizes) {
        BatchEntry own;
        own.seq = seq;
        own.tokens = std::span<const int32_t>(tokens).subspan(done, static_cast<size_t>(n));
        done += static_cast<size_t>(n);
        own.sampling = &greedy;
        own.history = std::span<const int32_t>(tokens).first(done);
        own.top_logprobs = engine::kMaxTopLogprobs;
        std::vector<BatchEntry> batch;
        companion_entries(batch, 0, half);
        batch.push_back(own);
        companion_entries(batch, half, company.size());
        const std::vector<engine::BatchOutput> out = kv.step(batch);
        const engine::BatchOutput& mine = out[half];
        INFO("the test sequence's sample after " << done << " tokens: " << mine.error);
        REQUIRE(mine.sampled);
        samples[static_cast<int>(done)] = mine.token;
    }
    return samples;
}

// The samples at every kEnds prefix, fed `way`: one token a step (one run), one prefill per prefix,
// or each prefix in chunks of 7.
enum class Way { decode, prefill, chunks_of_7 };
std::map<int, SampledToken> prefix_samples(engine::Backend& backend, const std::vector<int32_t>& tokens, Way way,
                                           bool batched) {
    if (way == Way::decode) return run_steps(backend, tokens, cuts(1, kLength), batched);
    std::map<int, SampledToken> at;
    for (const int end : kEnds)
        at[end] =
            run_steps(backend, tokens, way == Way::prefill ? std::vector<int>{end} : cuts(7, end), batched).at(end);
    return at;
}

// Prints how far the samples `got` are from `want` at every kEnds prefix (the token, its
// log-probability, the 20 alternatives by rank); returns whether every bit agrees.
bool report_samples(const std::string& what, const std::map<int, SampledToken>& want,
                    const std::map<int, SampledToken>& got) {
    double max_abs = 0;
    int differing = 0, compared = 0;
    std::string first;
    for (const int end : kEnds) {
        const SampledToken &a = want.at(end), &b = got.at(end);
        std::vector<std::pair<engine::TokenLogprob, engine::TokenLogprob>> pairs = {
            {{a.token, a.logprob}, {b.token, b.logprob}}};
        for (size_t r = 0; r < std::max(a.top_logprobs.size(), b.top_logprobs.size()); ++r)
            pairs.push_back({r < a.top_logprobs.size() ? a.top_logprobs[r] : engine::TokenLogprob{-1, NAN},
                             r < b.top_logprobs.size() ? b.top_logprobs[r] : engine::TokenLogprob{-1, NAN}});
        for (size_t r = 0; r < pairs.size(); ++r) {
            const auto& [x, y] = pairs[r];
            ++compared;
            if (x.token == y.token && same_bits(x.logprob, y.logprob)) continue;
            max_abs = std::max(max_abs, x.token == y.token ? abs_delta(x.logprob, y.logprob) : INFINITY);
            if (differing++ == 0)
                first = "prefix " + std::to_string(end) + (r == 0 ? ", sampled" : ", rank " + std::to_string(r - 1)) +
                        ": token " + std::to_string(x.token) + " logprob " + show(x.logprob) + " vs token " +
                        std::to_string(y.token) + " logprob " + show(y.logprob);
        }
    }
    std::printf("%s: max |delta logprob| %g, %d of %d (token, logprob) differ%s\n", what.c_str(), max_abs, differing,
                compared, differing ? (" (first: " + first + ")").c_str() : "");
    return differing == 0;
}

// ---- Greedy generation at batch sizes 1, 8 and 32 ----

constexpr int kGenerated = 256;

struct Generation {
    std::vector<int32_t> ids;
    std::vector<float> logprobs;
};

// The greedy generation of the prompt seeded 7 (40 tokens) among batch_size - 1 requests of other
// prompts (3 to 52 tokens), all of kGenerated tokens, through the Engine on a backend of
// batch_size slots and 64-token steps (so prompts are chunked as it schedules them).
Generation generate(const std::string& kind, const Spec& spec, int batch_size) {
    const auto backend = make(kind, spec, 512, {.max_seqs = batch_size, .max_batch_tokens = 64});
    const int32_t n_vocab = backend->config().n_vocab;
    engine::Engine eng(*backend);
    engine::RequestOptions options;
    options.max_tokens = kGenerated;
    options.sampling.temperature = 0;
    options.top_logprobs = 0;
    uint64_t measured = 0;
    for (int i = 0; i < batch_size; ++i) {
        const bool mine = i == batch_size / 2;  // in the middle of the slots
        const std::vector<int32_t> prompt =
            mine ? test::random_tokens(40, 7, n_vocab)
                 : test::random_tokens(3 + (i * 13) % 50, 900 + static_cast<uint32_t>(i), n_vocab);
        const uint64_t id = eng.add(prompt, options);
        if (mine) measured = id;
    }
    Generation g;
    while (!eng.idle())
        for (const engine::TokenEvent& e : eng.step()) {
            REQUIRE(e.finish != engine::FinishReason::error);
            if (e.request != measured || !e.has_token) continue;
            g.ids.push_back(e.token.token);
            g.logprobs.push_back(e.token.logprob);
        }
    return g;
}

// Prints where the measured request's generations part (`want` at batch 1); true when they do not.
bool report_generations(const std::string& what, const Generation& want, const Generation& got) {
    REQUIRE(want.ids.size() == static_cast<size_t>(kGenerated));
    REQUIRE(got.ids.size() == want.ids.size());
    const size_t n = want.ids.size();
    size_t first_id = n, first_bits = n;
    double max_abs = 0;  // over the tokens before the ids part
    for (size_t i = 0; i < n && first_id == n; ++i) {
        if (want.ids[i] != got.ids[i]) {
            first_id = i;
            continue;
        }
        if (!same_bits(want.logprobs[i], got.logprobs[i])) first_bits = std::min(first_bits, i);
        max_abs = std::max(max_abs, abs_delta(want.logprobs[i], got.logprobs[i]));
    }
    std::printf("%s: ", what.c_str());
    if (first_id < n)
        std::printf("ids part at token %zu of %zu (%d vs %d); ", first_id, n, want.ids[first_id], got.ids[first_id]);
    else
        std::printf("all %zu ids equal; ", n);
    if (first_bits < n)
        std::printf("log-probabilities first differ at token %zu, max |delta| %g before the ids part\n", first_bits,
                    max_abs);
    else
        std::printf("log-probabilities bit-identical%s\n", first_id < n ? " before the ids part" : "");
    return first_id == n && first_bits == n;
}

std::string label(const std::string& kind, const Spec& spec) { return "[invariance] " + kind + " " + spec.name(); }

}  // namespace

TEST_CASE("logits at every position are bit-identical: decode steps, one prefill, chunks of 7 (alone)",
          "[engine][invariance]") {
    for (const std::string& kind : test::tested_backends()) DYNAMIC_SECTION(kind) {
            for (const Spec& spec : specs()) {
                const auto backend = make(kind, spec, 256, {.max_seqs = 1, .max_batch_tokens = kLength});
                const size_t V = static_cast<size_t>(backend->config().n_vocab);
                const std::vector<int32_t> tokens = test::random_tokens(kLength, 1234, backend->config().n_vocab);
                const std::vector<float> reference = logits_table(*backend, tokens, cuts(kLength, kLength));
                REQUIRE(std::all_of(reference.begin(), reference.end(), [](float l) { return std::isfinite(l); }));
                const std::string at = label(kind, spec) + " logits at all " + std::to_string(kLength) + " positions, ";
                INFO(spec.name());
                CHECK(report_tables(at + "decode steps vs one prefill", reference,
                                    logits_table(*backend, tokens, cuts(1, kLength)), V));
                CHECK(report_tables(at + "chunks of 7 vs one prefill", reference,
                                    logits_table(*backend, tokens, cuts(7, kLength)), V));
            }
        }
}

TEST_CASE(
    "the sampled step at the end of prefixes 1, 7, 8, 9, 16, 31, 64 is bit-identical: decode steps, "
    "one prefill, chunks of 7, alone and among 16 other sequences",
    "[engine][invariance]") {
    for (const std::string& kind : test::tested_backends()) DYNAMIC_SECTION(kind) {
            for (const Spec& spec : specs()) {
                const auto backend = make(
                    kind, spec, 256, {.max_seqs = 1 + kCompanions, .max_batch_tokens = kLength + 16 * kCompanions});
                const std::vector<int32_t> tokens = test::random_tokens(kLength, 1234, backend->config().n_vocab);
                const auto reference = prefix_samples(*backend, tokens, Way::prefill, false);
                const std::pair<const char*, Way> ways[] = {
                    {"one prefill", Way::prefill}, {"decode steps", Way::decode}, {"chunks of 7", Way::chunks_of_7}};
                INFO(spec.name());
                for (const auto& [name, way] : ways)
                    for (const bool batched : {false, true}) {
                        if (way == Way::prefill && !batched) continue;  // the reference
                        const std::string what = label(kind, spec) + " samples, " + name +
                                                 (batched ? " among 16" : " alone") + " vs one prefill alone";
                        CHECK(report_samples(what, reference, prefix_samples(*backend, tokens, way, batched)));
                    }
            }
        }
}

TEST_CASE("a greedy generation of 256 tokens is the same at batch sizes 1, 8 and 32", "[engine][invariance]") {
    for (const std::string& kind : test::tested_backends()) DYNAMIC_SECTION(kind) {
            for (const Spec& spec : specs()) {
                const Generation reference = generate(kind, spec, 1);
                INFO(spec.name());
                for (const int batch_size : {8, 32})
                    CHECK(report_generations(
                        label(kind, spec) + " generation at batch " + std::to_string(batch_size) + " vs batch 1",
                        reference, generate(kind, spec, batch_size)));
            }
        }
}
