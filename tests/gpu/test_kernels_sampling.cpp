// The GPU sampler against engine::Sampler: the exact token for every row, log-probabilities within
// 1e-5, the same top ids in order, the same error causes, over poisoned workspace and logits
// padding; CudaSampler's argument checks; plus per-call timings.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch.hpp"
#include "engine/cuda/cuda_sampler.h"
#include "engine/sampler.h"
#include "kernel_test_support.h"
#include "kernels/sampling.h"

using namespace loom;
using engine::SamplingParams;
using engine::cuda::CudaSampler;
using engine::cuda::SampleOutcome;
using engine::cuda::SampleRequest;
using test::DeviceBuffer;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr double kLogprobTolerance = 1e-5;
constexpr int kMaxHistory = 400;  // per request
constexpr int kMaxBias = 600;     // per request (a whole small vocabulary banned by bias)

// A CudaSampler over its own device region (with a poisoned guard) and stream, and a logits matrix
// of max_rows rows.
struct Harness {
    Harness(int n_vocab_, int max_rows_)
        : n_vocab(n_vocab_),
          max_rows(max_rows_),
          memory(CudaSampler::device_bytes(n_vocab_, max_rows_, max_rows_ * kMaxHistory, max_rows_ * kMaxBias)),
          logits(static_cast<size_t>(max_rows_) * static_cast<size_t>(n_vocab_)),
          sampler(memory.get(), memory.size(), n_vocab_, max_rows_, max_rows_ * kMaxHistory, max_rows_ * kMaxBias,
                  stream.get()) {
        // The guard once (run repoisons the region only, so an overrun in any call stays visible).
        LOOM_CUDA_CHECK(
            cudaMemsetAsync(memory.get(), test::kPoisonByte, memory.size() + test::kGuardBytes, stream.get()));
    }

    // One enqueue over host_logits (its rows first in the matrix), synchronized. Before it, on the
    // sampler's stream (the legacy default stream would not be ordered with it): every byte of the
    // sampler's region and of the matrix with its guard is poisoned (0xFF, a NaN as a float), then
    // the rows are copied in. So a read of a row the batch does not have, of memory past the
    // matrix, or of workspace the kernels did not write in this call fails every time.
    std::vector<SampleOutcome> run(const std::vector<float>& host_logits, const std::vector<SampleRequest>& requests) {
        REQUIRE(host_logits.size() <= logits.size());
        const cudaStream_t s = stream.get();
        LOOM_CUDA_CHECK(cudaMemsetAsync(memory.get(), test::kPoisonByte, memory.size(), s));
        LOOM_CUDA_CHECK(
            cudaMemsetAsync(logits.get(), test::kPoisonByte, logits.size() * sizeof(float) + test::kGuardBytes, s));
        LOOM_CUDA_CHECK(cudaMemcpyAsync(logits.get(), host_logits.data(), host_logits.size() * sizeof(float),
                                        cudaMemcpyHostToDevice, s));
        sampler.enqueue(logits.get(), n_vocab, requests);
        LOOM_CUDA_CHECK(cudaStreamSynchronize(s));
        return sampler.results();
    }

    int n_vocab, max_rows;
    test::TestStream stream;
    DeviceBuffer<char> memory;
    DeviceBuffer<float> logits;
    CudaSampler sampler;
};

// What the CPU Sampler answers for one request: the token, or the error message.
SampleOutcome cpu_outcome(const SampleRequest& r, const std::vector<float>& logits, int n_vocab) {
    SampleOutcome o;
    try {
        engine::Sampler s(*r.params, n_vocab);
        const std::span<const float> row(logits.data() + static_cast<size_t>(r.logits_row) * n_vocab,
                                         static_cast<size_t>(n_vocab));
        if (r.n_top >= 0) {
            o.token = s.sample_with_logprobs(row, r.history, r.step, r.n_top);
        } else {
            o.token.token = s.sample(row, r.history, r.step);
            o.token.logprob = 0;
        }
    } catch (const std::exception& e) {
        o.error = e.what();
    }
    return o;
}

bool close(float a, float b) { return a == b || std::fabs(static_cast<double>(a) - b) <= kLogprobTolerance; }

// Mismatch counts over many rows, with the first of each kind described.
struct Tally {
    size_t rows = 0, tokens = 0, errors = 0, logprobs = 0, tops = 0;
    std::string first;

    void note(size_t& counter, const std::string& what) {
        if (counter++ == 0 && first.empty()) first = what;
    }

    void compare(const SampleOutcome& gpu, const SampleOutcome& cpu, const SampleRequest& r, const std::string& where) {
        ++rows;
        const SamplingParams& p = *r.params;
        std::ostringstream ctx;
        ctx << where << " (T " << p.temperature << ", top_k " << p.top_k << ", top_p " << p.top_p << ", min_p "
            << p.min_p << ", rep " << p.repetition_penalty << ", pres " << p.presence_penalty << ", freq "
            << p.frequency_penalty << ", last_n " << p.penalty_last_n << ", bias " << p.logit_bias.size()
            << ", history " << r.history.size() << ", seed " << p.seed << ", step " << r.step << ", n_top " << r.n_top
            << ")";
        if (gpu.error != cpu.error) {
            note(errors, ctx.str() + ": error '" + gpu.error + "' vs CPU '" + cpu.error + "'");
            return;
        }
        if (!cpu.error.empty()) return;
        if (gpu.token.token != cpu.token.token) {
            note(tokens, ctx.str() + ": token " + std::to_string(gpu.token.token) + " vs CPU " +
                             std::to_string(cpu.token.token));
            return;
        }
        if (r.n_top < 0) return;
        if (!close(gpu.token.logprob, cpu.token.logprob))
            note(logprobs, ctx.str() + ": logprob " + std::to_string(gpu.token.logprob) + " vs CPU " +
                               std::to_string(cpu.token.logprob));
        const auto& a = gpu.token.top_logprobs;
        const auto& b = cpu.token.top_logprobs;
        bool same = a.size() == b.size();
        for (size_t i = 0; same && i < a.size(); ++i)
            same = a[i].token == b[i].token && close(a[i].logprob, b[i].logprob);
        if (!same) {
            std::string what = ctx.str() + ": top " + std::to_string(a.size()) + " vs CPU " + std::to_string(b.size());
            for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
                if (a[i].token != b[i].token || !close(a[i].logprob, b[i].logprob)) {
                    what += ", first difference at " + std::to_string(i) + ": " + std::to_string(a[i].token) + " " +
                            std::to_string(a[i].logprob) + " vs " + std::to_string(b[i].token) + " " +
                            std::to_string(b[i].logprob);
                    break;
                }
            note(tops, what);
        }
    }

    void check() const {
        INFO("first mismatch: " << first);
        INFO(rows << " rows compared");
        CHECK(tokens == 0);
        CHECK(errors == 0);
        CHECK(logprobs == 0);
        CHECK(tops == 0);
    }
};

// One row of logits of a random kind: normal at varied scales, integer ties, bans, flat, peaked.
std::vector<float> random_logits(int n_vocab, std::mt19937_64& rng) {
    static const float kScales[] = {0.3f, 1.f, 3.f, 10.f, 40.f};
    const int kind = static_cast<int>(rng() % 6);
    const float scale = kScales[rng() % 5];
    auto row = test::random_normal(static_cast<size_t>(n_vocab), static_cast<uint32_t>(rng()), 0.f, scale);
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

template <class T>
T pick(std::mt19937_64& rng, std::initializer_list<T> values) {
    return *(values.begin() + rng() % values.size());
}

SamplingParams random_params(int n_vocab, std::mt19937_64& rng) {
    SamplingParams p;
    p.temperature = rng() % 4 == 0 ? 0.f : pick(rng, {1.f, 0.7f, 1.3f, 1e-30f, 1e-3f, 5.f, 1000.f, 0.05f});
    p.top_k = rng() % 2 ? 0 : pick(rng, {1, 2, 5, 40, 1000, n_vocab, n_vocab + 7});
    p.top_p = rng() % 2 ? 1.f : pick(rng, {0.9f, 0.5f, 0.95f, 0.999f, 1e-6f, 0.3f});
    p.min_p = rng() % 5 < 3 ? 0.f : pick(rng, {0.05f, 0.1f, 0.5f, 1.f, 1e-6f});
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
    p.seed = rng();
    return p;
}

std::vector<int32_t> random_history(int n_vocab, std::mt19937_64& rng) {
    std::vector<int32_t> h(rng() % kMaxHistory);
    for (auto& t : h) t = static_cast<int32_t>(rng() % 3 ? rng() % std::min(n_vocab, 40) : rng() % n_vocab);
    return h;
}

// Owns the parameters and histories that the requests point into.
struct Batch {
    std::vector<float> logits;
    std::vector<SamplingParams> params;
    std::vector<std::vector<int32_t>> histories;
    std::vector<uint64_t> steps;
    std::vector<int> n_tops, rows;

    std::vector<SampleRequest> requests() const {
        std::vector<SampleRequest> r;
        for (size_t i = 0; i < params.size(); ++i)
            r.push_back({&params[i], histories[i], steps[i], n_tops[i], rows[i]});
        return r;
    }
};

// n random requests over n random logits rows (some shared, so one row meets several steps).
Batch random_batch(int n_vocab, int n, std::mt19937_64& rng) {
    Batch b;
    for (int i = 0; i < n; ++i) {
        const auto row = random_logits(n_vocab, rng);
        b.logits.insert(b.logits.end(), row.begin(), row.end());
        b.params.push_back(random_params(n_vocab, rng));
        b.histories.push_back(random_history(n_vocab, rng));
        b.steps.push_back(rng() % 2 ? rng() : rng() % 1000);
        b.n_tops.push_back(pick(rng, {-1, 0, 1, 5, 20}));
        b.rows.push_back(i > 0 && rng() % 3 == 0 ? static_cast<int>(rng() % static_cast<uint64_t>(i)) : i);
    }
    return b;
}

void compare_batch(Harness& h, const Batch& b, Tally& tally, const std::string& where) {
    const auto requests = b.requests();
    const auto gpu = h.run(b.logits, requests);
    REQUIRE(gpu.size() == requests.size());
    for (size_t i = 0; i < requests.size(); ++i)
        tally.compare(gpu[i], cpu_outcome(requests[i], b.logits, h.n_vocab), requests[i],
                      where + " request " + std::to_string(i));
}

}  // namespace

TEST_CASE("GPU sampler matches the CPU sampler on random rows and parameters", "[gpu][sampling]") {
    struct Shape {
        int n_vocab, trials;
    };
    std::mt19937_64 rng(2024);
    for (const Shape s : {Shape{512, 25}, Shape{49152, 4}, Shape{151936, 2}}) {
        Harness h(s.n_vocab, 32);
        Tally tally;
        for (const int n : {1, 7, 32})
            for (int t = 0; t < s.trials; ++t)
                compare_batch(h, random_batch(s.n_vocab, n, rng), tally,
                              "vocab " + std::to_string(s.n_vocab) + " batch " + std::to_string(n) + " trial " +
                                  std::to_string(t));
        INFO("vocab " << s.n_vocab);
        tally.check();
        CHECK(h.memory.guard_intact());
    }
}

TEST_CASE("GPU sampler matches each filter alone and combined over many steps", "[gpu][sampling]") {
    std::mt19937_64 rng(77);
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
    for (const int n_vocab : {512, 49152}) {
        Harness h(n_vocab, 32);
        Tally tally;
        for (size_t c = 0; c < configs.size(); ++c) {
            // 32 steps of one seed over two logits rows (peaked and flat-with-ties).
            Batch b;
            for (int r = 0; r < 2; ++r) {
                auto row = test::random_normal(static_cast<size_t>(n_vocab), static_cast<uint32_t>(rng()), 0.f, 2.f);
                if (r == 1)
                    for (auto& x : row) x = std::round(x);
                b.logits.insert(b.logits.end(), row.begin(), row.end());
            }
            const auto history = random_history(n_vocab, rng);
            for (int i = 0; i < 32; ++i) {
                b.params.push_back(configs[c]);
                b.params.back().seed = 1234 + c;
                b.histories.push_back(history);
                b.steps.push_back(static_cast<uint64_t>(i));
                b.n_tops.push_back(i % 3 == 0 ? 5 : -1);
                b.rows.push_back(i % 2);
            }
            compare_batch(h, b, tally, "vocab " + std::to_string(n_vocab) + " config " + std::to_string(c));
        }
        INFO("vocab " << n_vocab);
        tally.check();
    }
}

TEST_CASE("GPU sampler reports NaN, +inf and all-banned rows and samples the others", "[gpu][sampling]") {
    std::mt19937_64 rng(5);
    for (const int n_vocab : {512, 49152}) {
        Harness h(n_vocab, 32);
        Batch b = random_batch(n_vocab, 12, rng);
        float* L = b.logits.data();
        const auto at = [&](int row, int id) -> float& { return L[static_cast<size_t>(row) * n_vocab + id]; };
        for (int i = 0; i < 12; ++i) b.rows[static_cast<size_t>(i)] = i;  // no sharing: rows get broken below
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
        Tally tally;
        compare_batch(h, b, tally, "vocab " + std::to_string(n_vocab));
        INFO("vocab " << n_vocab);
        tally.check();
        const auto gpu = h.sampler.results();
        CHECK(gpu[0].error.rfind("logit of token 100 is nan", 0) == 0);
        CHECK(gpu[2].error.rfind("logit of token 17 is inf", 0) == 0);
        CHECK(gpu[4].error == "every token's logit is -inf: nothing can be sampled");
        CHECK(gpu[6].error.rfind("logit of token 42 is inf", 0) == 0);
        CHECK(gpu[8].error == "every token's logit is -inf: nothing can be sampled");
        CHECK(gpu[10].error.rfind("history[2]", 0) == 0);
        CHECK(gpu[11].error.rfind("invalid sampling parameter top_p", 0) == 0);
        for (const int ok : {1, 3, 5, 7, 9}) CHECK(gpu[static_cast<size_t>(ok)].error.empty());
    }
}

TEST_CASE("sample_rows without the sort samples greedy rows and flags rows that need it", "[gpu][sampling]") {
    const int n_vocab = 512;
    auto logits = test::random_normal(static_cast<size_t>(n_vocab), 91, 0.f, 1.f);
    std::vector<kernels::SamplingRow> rows(3);
    for (auto& r : rows) r = kernels::SamplingRow{0.f, 1.f, 0.f, 1.f, 0.f, 0.f, 0, 1, 0, 0, 0, 0, 0, 0, -1};
    rows[1].temperature = 1.f;
    rows[2].n_top = 3;
    DeviceBuffer<float> d_logits(logits);
    DeviceBuffer<kernels::SamplingRow> d_rows(rows);
    DeviceBuffer<int32_t> d_history(std::vector<int32_t>{0});
    DeviceBuffer<kernels::LogitBias> d_bias(std::vector<kernels::LogitBias>{{0, 0.f}});
    DeviceBuffer<char> d_workspace(kernels::sampling_workspace_bytes(3, n_vocab));
    DeviceBuffer<kernels::SampleResult> d_results(3);
    d_results.poison();
    d_workspace.poison();
    // The uploads and poisoning ran on the legacy default stream, which `stream` does not wait for.
    LOOM_CUDA_CHECK(cudaDeviceSynchronize());
    test::TestStream stream;
    kernels::sample_rows(d_logits.get(), n_vocab, n_vocab, d_rows.get(), 3, d_history.get(), d_bias.get(),
                         d_workspace.get(), d_workspace.size(), d_results.get(), stream.get(), false);
    const auto results = d_results.download();
    CHECK(d_results.guard_intact());
    CHECK(results[0].status == kernels::kSampleOk);
    CHECK(results[0].token == static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
    CHECK(results[1].status == kernels::kSampleNeedsSort);
    CHECK(results[2].status == kernels::kSampleNeedsSort);
}

TEST_CASE("CudaSampler rejects a logits_row outside [0, max_rows) and a short row stride", "[gpu][sampling]") {
    const int n_vocab = 512, max_rows = 4;
    Harness h(n_vocab, max_rows);
    std::mt19937_64 rng(31);
    const Batch b = random_batch(n_vocab, max_rows, rng);
    Tally tally;
    compare_batch(h, b, tally, "vocab 512 before the bad calls");
    const auto before = h.sampler.results();
    for (const int bad : {-1, max_rows, 1 << 30}) {
        auto requests = b.requests();
        requests[2].logits_row = bad;
        std::string what;
        try {
            h.sampler.enqueue(h.logits.get(), n_vocab, requests);
        } catch (const std::out_of_range& e) {
            what = e.what();
        }
        INFO("logits_row " << bad << ": '" << what << "'");
        CHECK(what.find("logits_row " + std::to_string(bad)) != std::string::npos);
    }
    bool short_stride = false;
    try {
        h.sampler.enqueue(h.logits.get(), n_vocab - 1, b.requests());
    } catch (const std::invalid_argument&) {
        short_stride = true;
    }
    CHECK(short_stride);
    // The rejected calls queued nothing and left the last results in place.
    LOOM_CUDA_CHECK(cudaStreamSynchronize(h.stream.get()));
    const auto after = h.sampler.results();
    REQUIRE(after.size() == before.size());
    for (size_t i = 0; i < after.size(); ++i) {
        CHECK(after[i].error == before[i].error);
        CHECK(after[i].token.token == before[i].token.token);
    }
    tally.check();
}

TEST_CASE("GPU sampler timing", "[gpu][sampling][timing]") {
    const int n_vocab = 151936;
    Harness h(n_vocab, 32);
    const auto logits = test::random_normal(static_cast<size_t>(n_vocab) * 32, 4242, 0.f, 3.f);
    DeviceBuffer<float> d_logits(logits);
    LOOM_CUDA_CHECK(cudaDeviceSynchronize());  // the upload ran on the legacy default stream
    SamplingParams greedy;
    greedy.temperature = 0;
    SamplingParams top_p;
    top_p.top_p = 0.9f;
    cudaEvent_t start, stop;
    LOOM_CUDA_CHECK(cudaEventCreate(&start));
    LOOM_CUDA_CHECK(cudaEventCreate(&stop));
    struct Setup {
        const char* name;
        const SamplingParams* params;
        int n_top;
    };
    for (const Setup s :
         {Setup{"greedy", &greedy, -1}, Setup{"top_p 0.9", &top_p, -1}, Setup{"top_p 0.9 + 5 logprobs", &top_p, 5}}) {
        for (const int n : {1, 32}) {
            std::vector<SampleRequest> requests;
            for (int i = 0; i < n; ++i) requests.push_back({s.params, {}, static_cast<uint64_t>(i), s.n_top, i});
            std::vector<float> us;
            for (int it = 0; it < 55; ++it) {
                LOOM_CUDA_CHECK(cudaEventRecord(start, h.stream.get()));
                h.sampler.enqueue(d_logits.get(), n_vocab, requests);
                LOOM_CUDA_CHECK(cudaEventRecord(stop, h.stream.get()));
                LOOM_CUDA_CHECK(cudaEventSynchronize(stop));
                float ms = 0;
                LOOM_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
                if (it >= 5) us.push_back(ms * 1000.f);
            }
            std::nth_element(us.begin(), us.begin() + static_cast<std::ptrdiff_t>(us.size() / 2), us.end());
            std::printf("[timing] gpu sampler vocab %d rows %d %s: %.1f us/call (median of %zu)\n", n_vocab, n, s.name,
                        static_cast<double>(us[us.size() / 2]), us.size());
            const auto out = h.sampler.results();
            for (const auto& o : out) CHECK(o.error.empty());
        }
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
}
