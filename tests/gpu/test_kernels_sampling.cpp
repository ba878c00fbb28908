// The GPU sampler against engine::Sampler on tests/kernel_cases' requests: the exact token for every
// row, log-probabilities within 1e-5, the same top ids in order, the same error causes, over poisoned
// workspace and logits padding; CudaSampler's argument checks; plus per-call timings.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch.hpp"
#include "engine/cuda/cuda_sampler.h"
#include "engine/sampler.h"
#include "kernel_cases/sampling_cases.h"
#include "kernel_test_support.h"
#include "kernels/sampling.h"

using namespace loom;
using engine::SamplingParams;
using engine::cuda::CudaSampler;
using engine::cuda::SampleOutcome;
using engine::cuda::SampleRequest;
using test::DeviceBuffer;

namespace {

using kcases::kSamplingMaxBias;
using kcases::kSamplingMaxHistory;
using kcases::SamplingBatch;

// A CudaSampler over its own device region (with a poisoned guard) and stream, and a logits matrix
// of max_rows rows.
struct Harness {
    Harness(int n_vocab_, int max_rows_)
        : n_vocab(n_vocab_),
          max_rows(max_rows_),
          memory(CudaSampler::device_bytes(n_vocab_, max_rows_, max_rows_ * kSamplingMaxHistory,
                                           max_rows_ * kSamplingMaxBias)),
          logits(static_cast<size_t>(max_rows_) * static_cast<size_t>(n_vocab_)),
          sampler(memory.get(), memory.size(), n_vocab_, max_rows_, max_rows_ * kSamplingMaxHistory,
                  max_rows_ * kSamplingMaxBias, stream.get()) {
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

// Mismatch counts over many rows, with the first of each kind described.
struct Tally {
    size_t rows = 0, tokens = 0, errors = 0, logprobs = 0, tops = 0;
    std::string first;

    void note(size_t& counter, const std::string& what) {
        if (counter++ == 0 && first.empty()) first = what;
    }

    void compare(const SampleOutcome& gpu, const kcases::SamplingOutcome& cpu, const SampleRequest& r,
                 const std::string& where) {
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
        if (!kcases::logprob_close(gpu.token.logprob, cpu.token.logprob))
            note(logprobs, ctx.str() + ": logprob " + std::to_string(gpu.token.logprob) + " vs CPU " +
                               std::to_string(cpu.token.logprob));
        const auto& a = gpu.token.top_logprobs;
        const auto& b = cpu.token.top_logprobs;
        bool same = a.size() == b.size();
        for (size_t i = 0; same && i < a.size(); ++i)
            same = a[i].token == b[i].token && kcases::logprob_close(a[i].logprob, b[i].logprob);
        if (!same) {
            std::string what = ctx.str() + ": top " + std::to_string(a.size()) + " vs CPU " + std::to_string(b.size());
            for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
                if (a[i].token != b[i].token || !kcases::logprob_close(a[i].logprob, b[i].logprob)) {
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

// The requests of a batch, pointing into its parameters and histories.
std::vector<SampleRequest> requests_of(const SamplingBatch& b) {
    std::vector<SampleRequest> r;
    for (size_t i = 0; i < b.size(); ++i)
        r.push_back({&b.params[i], b.histories[i], b.steps[i], b.n_tops[i], b.rows[i]});
    return r;
}

void compare_batch(Harness& h, const SamplingBatch& b, Tally& tally, const std::string& where) {
    const auto requests = requests_of(b);
    const auto gpu = h.run(b.logits, requests);
    REQUIRE(gpu.size() == requests.size());
    for (size_t i = 0; i < requests.size(); ++i)
        tally.compare(gpu[i], kcases::sampling_reference(b, i, h.n_vocab), requests[i],
                      where + " request " + std::to_string(i));
}

}  // namespace

TEST_CASE("GPU sampler matches the CPU sampler on random rows and parameters", "[gpu][sampling]") {
    std::mt19937_64 rng(kcases::kSamplingRandomSeed);
    for (const auto s : kcases::sampling_random_cases()) {
        Harness h(s.n_vocab, 32);
        Tally tally;
        for (const int n : kcases::kSamplingBatchSizes)
            for (int t = 0; t < s.trials; ++t)
                compare_batch(h, kcases::random_sampling_batch(s.n_vocab, n, rng), tally,
                              "vocab " + std::to_string(s.n_vocab) + " batch " + std::to_string(n) + " trial " +
                                  std::to_string(t));
        INFO("vocab " << s.n_vocab);
        tally.check();
        CHECK(h.memory.guard_intact());
    }
}

TEST_CASE("GPU sampler matches each filter alone and combined over many steps", "[gpu][sampling]") {
    std::mt19937_64 rng(kcases::kSamplingFilterSeed);
    const auto configs = kcases::sampling_filter_configs();
    for (const int n_vocab : kcases::kSamplingFilterVocabs) {
        Harness h(n_vocab, 32);
        Tally tally;
        for (size_t c = 0; c < configs.size(); ++c)
            compare_batch(h, kcases::sampling_filter_batch(n_vocab, configs[c], c, rng), tally,
                          "vocab " + std::to_string(n_vocab) + " config " + std::to_string(c));
        INFO("vocab " << n_vocab);
        tally.check();
    }
}

TEST_CASE("GPU sampler reports NaN, +inf and all-banned rows and samples the others", "[gpu][sampling]") {
    std::mt19937_64 rng(kcases::kSamplingErrorSeed);
    for (const int n_vocab : {512, 49152}) {
        Harness h(n_vocab, 32);
        const auto e = kcases::sampling_error_batch(n_vocab, rng);
        Tally tally;
        compare_batch(h, e.batch, tally, "vocab " + std::to_string(n_vocab));
        INFO("vocab " << n_vocab);
        tally.check();
        const auto gpu = h.sampler.results();
        for (const auto& want : e.errors) {
            const std::string& got = gpu[want.request].error;
            INFO("request " << want.request << ": '" << got << "'");
            if (want.exact)
                CHECK(got == want.text);
            else
                CHECK(got.rfind(want.text, 0) == 0);
        }
        for (const size_t ok : e.ok) CHECK(gpu[ok].error.empty());
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
    const SamplingBatch b = kcases::random_sampling_batch(n_vocab, max_rows, rng);
    Tally tally;
    compare_batch(h, b, tally, "vocab 512 before the bad calls");
    const auto before = h.sampler.results();
    for (const int bad : {-1, max_rows, 1 << 30}) {
        auto requests = requests_of(b);
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
        h.sampler.enqueue(h.logits.get(), n_vocab - 1, requests_of(b));
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
    const int n_vocab = kcases::kSamplingTimingVocab;
    Harness h(n_vocab, 32);
    const auto logits = kcases::sampling_timing_logits(n_vocab, 32);
    DeviceBuffer<float> d_logits(logits);
    LOOM_CUDA_CHECK(cudaDeviceSynchronize());  // the upload ran on the legacy default stream
    cudaEvent_t start, stop;
    LOOM_CUDA_CHECK(cudaEventCreate(&start));
    LOOM_CUDA_CHECK(cudaEventCreate(&stop));
    for (const auto& s : kcases::sampling_timing_setups()) {
        for (const int n : kcases::kSamplingTimingRows) {
            std::vector<SampleRequest> requests;
            for (int i = 0; i < n; ++i) requests.push_back({&s.params, {}, static_cast<uint64_t>(i), s.n_top, i});
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
            std::printf("[timing] gpu sampler vocab %d rows %d %s: %.1f us/call (median of %zu)\n", n_vocab, n,
                        s.name.c_str(), static_cast<double>(us[us.size() / 2]), us.size());
            const auto out = h.sampler.results();
            for (const auto& o : out) CHECK(o.error.empty());
        }
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
}
