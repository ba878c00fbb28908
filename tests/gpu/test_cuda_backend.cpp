// CudaBackend against the CPU reference backend on a real model: greedy tokens, teacher-forced logits
// (GEMM prefill passes and single tokens), batched steps with and without CUDA graphs, the memory
// report. One program, run by ctest on three models (LOOM_TEST_MODEL_NAME, support/test_data.h):
// stories260K; SmolLM2; the GGUF named by LOOM_TEST_MODEL (synthetic 0.5B and 8B shapes).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <vector>

#include "catch.hpp"
#include "engine/cpu/cpu_backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/engine.h"
#include "gguf/reader.h"
#include "support/test_data.h"

using namespace loom;

namespace {

// The model under test and what this file asks of it.
struct Subject {
    test::ChosenModel model;
    int forced_positions;         // teacher-forced positions
    double min_argmax_agreement;  // of the teacher-forced positions
    bool random_ids;              // teacher-force fixed random ids (synthetic weights), not the CPU's greedy ids
};

constexpr int kGreedyTokens = 128;  // stories260K's greedy case
constexpr double kMaxNmse = 1e-3;

const Subject& subject() {
    static const Subject s = [] {
        test::ChosenModel m = test::require_chosen_model();
        const test::TestModel which = m.which;
        if (which == test::TestModel::stories260k)
            return Subject{std::move(m), kGreedyTokens + 1, 1.0, false};  // BOS + the greedy tokens
        return Subject{std::move(m), 256, 0.99, which == test::TestModel::file};
    }();
    return s;
}

int argmax(const float* v, int n) { return static_cast<int>(std::max_element(v, v + n) - v); }

double nmse(const float* out, const float* ref, int n) {
    double err = 0, norm = 0;
    for (int i = 0; i < n; ++i) {
        err += (double(out[i]) - ref[i]) * (double(out[i]) - ref[i]);
        norm += double(ref[i]) * ref[i];
    }
    return norm > 0 ? err / norm : err;
}

// A fixed pseudo-random token sequence starting with BOS: a teacher-forced input for models whose
// own continuation would cost too much on the CPU (the 8B shape) or mean nothing (random weights).
std::vector<int32_t> random_sequence(int32_t bos, int n, int32_t n_vocab) {
    std::mt19937 rng(4242);
    std::uniform_int_distribution<int32_t> id(0, n_vocab - 1);
    std::vector<int32_t> seq{bos};
    while (static_cast<int>(seq.size()) < n) seq.push_back(id(rng));
    return seq;
}

// Greedy decode from `prompt`, one forward per token; returns prompt + n generated ids.
std::vector<int32_t> greedy(engine::Backend& b, std::vector<int32_t> ids, int n) {
    const int V = b.config().n_vocab;
    std::vector<float> logits(V);
    engine::KvManager kv(b);
    kv.forward(ids, logits, false);
    for (int i = 0; i < n; ++i) {
        ids.push_back(argmax(logits.data(), V));
        if (i + 1 < n) kv.forward(std::span<const int32_t>(&ids.back(), 1), logits, false);
    }
    return ids;
}

struct Loaded {
    gguf::File file;
    int32_t bos;
    explicit Loaded(const std::filesystem::path& p)
        : file(gguf::File::open(p)), bos(static_cast<int32_t>(file.get_uint("tokenizer.ggml.bos_token_id"))) {}
};

// Compares per-position logits and reports the worst NMSE and the argmax agreement.
void compare(const char* what, const std::vector<float>& gpu, const std::vector<float>& cpu, int positions, int V) {
    double worst = 0, sum = 0;
    int agree = 0;
    for (int p = 0; p < positions; ++p) {
        const float* g = gpu.data() + static_cast<size_t>(p) * V;
        const float* c = cpu.data() + static_cast<size_t>(p) * V;
        const double e = nmse(g, c, V);
        worst = std::max(worst, e);
        sum += e;
        agree += argmax(g, V) == argmax(c, V);
    }
    std::printf("[cuda-backend] %s %s: %d positions, max NMSE %.3e, mean NMSE %.3e, argmax agree %d/%d\n",
                subject().model.label.c_str(), what, positions, worst, sum / positions, agree, positions);
    CHECK(worst <= kMaxNmse);
    CHECK(agree >= subject().min_argmax_agreement * positions);
}

}  // namespace

TEST_CASE("CudaBackend's greedy tokens from BOS equal the CPU backend's", "[gpu][cuda_backend]") {
    if (subject().model.which != test::TestModel::stories260k) return;  // the others are teacher-forced only
    const Loaded m(subject().model.path);
    engine::cpu::CpuBackend cpu(m.file, 256, 0);
    engine::cuda::CudaBackend gpu(m.file, 256);
    CHECK(gpu.name() == "cuda");
    CHECK(!gpu.device().empty());
    const std::vector<int32_t> cpu_seq = greedy(cpu, {m.bos}, kGreedyTokens);
    const std::vector<int32_t> gpu_seq = greedy(gpu, {m.bos}, kGreedyTokens);
    const auto diff = std::mismatch(cpu_seq.begin(), cpu_seq.end(), gpu_seq.begin());
    std::printf("[cuda-backend] %s greedy %d tokens from BOS: %s (first difference at %d)\n",
                subject().model.label.c_str(), kGreedyTokens, gpu_seq == cpu_seq ? "identical" : "DIFFERENT",
                diff.first == cpu_seq.end() ? -1 : static_cast<int>(diff.first - cpu_seq.begin()));
    CHECK(gpu_seq == cpu_seq);
}

TEST_CASE("CudaBackend's teacher-forced logits match the CPU backend's", "[gpu][cuda_backend]") {
    const Loaded m(subject().model.path);
    engine::cpu::CpuBackend cpu(m.file, 512, 0);
    engine::cuda::CudaBackend gpu(m.file, 512);
    const int V = cpu.config().n_vocab;

    // The teacher-forced sequence: the CPU's greedy continuation of BOS, or fixed random ids.
    const int n = subject().forced_positions;
    const std::vector<int32_t> seq = subject().random_ids ? random_sequence(m.bos, n, V) : greedy(cpu, {m.bos}, n - 1);
    const int P = static_cast<int>(seq.size());
    std::vector<float> ref(static_cast<size_t>(P) * V), out(ref.size());
    engine::KvManager(cpu).forward(seq, ref, true);
    engine::KvManager kv(gpu);

    SECTION("one prefill of every position (a GEMM pass, prefill attention)") {
        kv.reset();
        kv.forward(seq, out, true);
        CHECK(kv.n_past() == P);
        compare("prefill", out, ref, P, V);
    }
    SECTION("a 13-token prefill, then one token at a time (decode attention, graph replays)") {
        kv.reset();
        const int first = std::min(13, P);
        kv.forward(std::span<const int32_t>(seq.data(), first), out, true);
        for (int p = first; p < P; ++p)
            kv.forward(std::span<const int32_t>(&seq[p], 1), std::span<float>(&out[static_cast<size_t>(p) * V], V),
                       false);
        compare("decode", out, ref, P, V);
    }
    SECTION("last-token logits and request errors") {
        kv.reset();
        std::vector<float> last(V);
        kv.forward(std::span<const int32_t>(seq.data(), 11), last, false);
        CHECK(nmse(last.data(), &ref[10 * static_cast<size_t>(V)], V) <= kMaxNmse);
        const int32_t bad = V;
        CHECK_THROWS(kv.forward(std::span<const int32_t>(&bad, 1), last, false));
        CHECK(kv.n_past() == 11);
    }
}

TEST_CASE("batched decode steps replay CUDA graphs and give the tokens of eager launches", "[gpu][cuda_backend]") {
    const Loaded m(subject().model.path);
    const engine::BatchLimits limits{6, 0, 128};
    std::vector<std::vector<int32_t>> tokens[2];
    for (const bool graphs : {true, false}) {
        engine::cuda::CudaBackend gpu(m.file, 512, 0, limits, graphs);
        engine::Engine eng(gpu);
        std::vector<uint64_t> ids;
        for (int i = 0; i < 6; ++i) {
            engine::RequestOptions o;
            o.max_tokens = 12 + 3 * i;
            o.sampling.temperature = i % 2 ? 0.8f : 0.f;
            o.sampling.seed = 99 + static_cast<uint64_t>(i);
            ids.push_back(eng.add(random_sequence(m.bos, 3 + 11 * i, gpu.config().n_vocab), o));
        }
        std::map<uint64_t, std::vector<int32_t>> got;
        while (!eng.idle())
            for (const engine::TokenEvent& e : eng.step())
                if (e.has_token) got[e.request].push_back(e.token.token);
        for (const uint64_t id : ids) tokens[graphs ? 0 : 1].push_back(got[id]);
        if (graphs) {
            std::printf("[cuda-backend] %s: %d decode graphs captured\n", subject().model.label.c_str(),
                        gpu.cuda_graphs_captured());
            CHECK(gpu.cuda_graphs_captured() >= 2);  // the batch shrinks as requests finish
        } else {
            CHECK(gpu.cuda_graphs_captured() == 0);
        }
        const engine::MemoryReport mem = gpu.memory();
        CHECK(mem.device_resident);
        CHECK_THAT(mem.where, test::contains(gpu.device()));
        REQUIRE(mem.uses.size() == 3);
        for (const engine::MemoryUse& u : mem.uses) {
            INFO(u.purpose);
            CHECK(u.used > 0);
            CHECK(u.used <= u.reserved);
        }
    }
    CHECK(tokens[0] == tokens[1]);
}
