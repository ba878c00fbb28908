// Chunk and batch invariance of the CPU backend on stories260K: the logits at every position of a
// sequence are bit-identical whether it ran as one prefill, token by token or in chunks of 7, alone or
// next to other sequences prefilling and decoding in the same steps (what token-exact failover needs).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "catch.hpp"
#include "engine/cpu/cpu_backend.h"
#include "engine/kv_manager.h"
#include "gguf/reader.h"
#include "support/random_tokens.h"
#include "support/test_data.h"

using namespace loom::engine;

namespace {

const loom::gguf::File& model() {
    static const auto file = loom::gguf::File::open(loom::test::require_stories260k());
    return file;
}

constexpr int kLength = 40;
constexpr int kCompanions = 3;

// How the sequence under test is cut into steps: every step's token count.
std::vector<int> cuts(int chunk) {
    std::vector<int> sizes;
    for (int done = 0; done < kLength; done += chunk) sizes.push_back(std::min(chunk, kLength - done));
    return sizes;
}

// A sequence that shares the steps: a prompt of its own length, prefilled in chunks of its own
// size, then decoded a token at a time (sampling greedily from its history).
struct Companion {
    int seq = -1;
    std::vector<int32_t> tokens;
    int prompt = 0, chunk = 0, fed = 0;
};

// Runs the test sequence through the given cuts (with companions or alone) and returns its logits
// by position, (kLength, n_vocab).
std::vector<float> run(const std::vector<int>& sizes, bool with_companions) {
    cpu::CpuBackend backend(model(), 256, 2, BatchLimits{.max_seqs = 1 + kCompanions, .max_batch_tokens = 256});
    const int32_t n_vocab = backend.config().n_vocab;
    const std::vector<int32_t> tokens = loom::test::random_tokens(kLength, 1234, n_vocab);
    std::vector<float> logits(static_cast<size_t>(kLength) * n_vocab, NAN);

    std::vector<Companion> companions;
    if (with_companions)
        for (int i = 0; i < kCompanions; ++i) {
            Companion c;
            c.prompt = 5 + 11 * i;
            c.chunk = 3 + 4 * i;
            c.tokens = loom::test::random_tokens(c.prompt + kLength, 99 + i, n_vocab);
            companions.push_back(c);
        }
    // The sequence under test takes the second slot when it has company.
    loom::engine::KvManager kv(backend);
    if (with_companions) companions[0].seq = kv.open();
    const int seq = kv.open();
    for (size_t i = with_companions ? 1 : 0; i < companions.size(); ++i) companions[i].seq = kv.open();

    backend.set_step_logits_sink([&](int s, int pos0, int T, const float* rows) {
        if (s == seq)
            std::copy(rows, rows + static_cast<size_t>(T) * n_vocab, &logits[static_cast<size_t>(pos0) * n_vocab]);
    });
    SamplingParams greedy;
    greedy.temperature = 0;
    int done = 0;
    for (int n : sizes) {
        BatchEntry own;  // prefill only: the sink sees its logits
        own.seq = seq;
        own.tokens = std::span<const int32_t>(tokens).subspan(done, n);
        std::vector<BatchEntry> batch;
        for (size_t i = 0; i < companions.size(); ++i) {
            Companion& c = companions[i];
            const int take = c.fed < c.prompt ? std::min(c.chunk, c.prompt - c.fed) : 1;
            BatchEntry e;
            e.seq = c.seq;
            e.tokens = std::span<const int32_t>(c.tokens).subspan(c.fed, take);
            if (c.fed + take >= c.prompt) {
                e.sampling = &greedy;
                e.history = std::span<const int32_t>(c.tokens).first(c.fed + take);
            }
            c.fed += take;
            batch.push_back(e);
            if (i == 0) batch.push_back(own);
        }
        if (!with_companions) batch.push_back(own);
        kv.step(batch);
        done += n;
    }
    return logits;
}

// The largest |a - b| over two logit tables, and how many floats differ in their bits.
struct Difference {
    double max_abs = 0;
    size_t differing = 0;
};
Difference compare(const std::vector<float>& a, const std::vector<float>& b) {
    Difference d;
    for (size_t i = 0; i < a.size(); ++i) {
        if (std::bit_cast<uint32_t>(a[i]) == std::bit_cast<uint32_t>(b[i])) continue;
        ++d.differing;
        d.max_abs = std::max(d.max_abs, std::isnan(a[i] - b[i]) ? INFINITY : std::fabs(double(a[i]) - b[i]));
    }
    return d;
}

}  // namespace

TEST_CASE("logits at every position are bit-identical across prefill, decode, chunks of 7, alone and batched",
          "[engine][invariance]") {
    const std::vector<float> reference = run(cuts(kLength), false);
    for (float l : reference) REQUIRE(std::isfinite(l));
    const std::pair<const char*, std::vector<int>> ways[] = {
        {"one prefill", cuts(kLength)}, {"one token a step", cuts(1)}, {"chunks of 7", cuts(7)}};
    for (const auto& [name, sizes] : ways)
        for (bool batched : {false, true}) {
            const Difference d = compare(reference, run(sizes, batched));
            std::printf("%-17s %-8s: max |delta| = %g, %zu of %zu logits differ in their bits\n", name,
                        batched ? "batched" : "alone", d.max_abs, d.differing, reference.size());
            INFO(name << (batched ? ", batched" : ", alone") << ": max |delta| " << d.max_abs);
            CHECK(d.differing == 0);
        }
}
