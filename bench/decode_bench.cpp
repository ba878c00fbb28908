// End-to-end step timings of the CUDA backend on a real model file: batch-1 decode, batched decode
// (aggregate tokens/s) and prompt prefill, next to the bandwidth floor of reading the weights once
// per step. The model comes from LOOM_BENCH_MODEL; without it (or a GPU) the program says so and exits 0.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/kv_manager.h"
#include "engine/make_backend.h"
#include "gguf/reader.h"
#include "kernels/device_info.h"

using namespace loom;

namespace {

constexpr int kCtx = 4096;
constexpr int kMaxSeqs = 32;
constexpr int kPrompt = 512;
constexpr int kTokensPerSequence = 1024;  // decode positions before a sequence is closed and reopened

struct Bench {
    std::unique_ptr<gguf::File> file;
    std::unique_ptr<engine::Backend> backend;
    double copy_gbps = 0;
    uint64_t weight_bytes = 0;
};
Bench g;

std::vector<int32_t> random_tokens(int n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> id(0, g.backend->config().n_vocab - 1);
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = id(rng);
    return t;
}

double seconds(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One step per iteration: every one of `batch` sequences feeds its last token and samples the next
// (greedy, on the GPU). Wall time per step includes the host work and the single synchronisation.
void BM_decode(benchmark::State& state) {
    const int batch = static_cast<int>(state.range(0));
    engine::KvManager b(*g.backend);
    engine::SamplingParams greedy;
    greedy.temperature = 0;
    std::vector<int> seqs;
    std::vector<std::vector<int32_t>> history(static_cast<size_t>(batch));
    const auto open_all = [&] {
        for (int s : seqs) b.close(s);
        seqs.clear();
        for (int i = 0; i < batch; ++i) {
            seqs.push_back(b.open());
            history[static_cast<size_t>(i)] = random_tokens(16, static_cast<uint32_t>(i));
            const engine::BatchEntry e{seqs.back(), history[static_cast<size_t>(i)], &greedy, history[static_cast<size_t>(i)], 0, -1};
            history[static_cast<size_t>(i)].push_back(b.step(std::span(&e, 1)).front().token.token);
        }
    };
    open_all();
    std::vector<engine::BatchEntry> entries(static_cast<size_t>(batch));
    const auto one_step = [&] {
        for (int i = 0; i < batch; ++i) {
            auto& h = history[static_cast<size_t>(i)];
            entries[static_cast<size_t>(i)] = {seqs[static_cast<size_t>(i)], std::span<const int32_t>(&h.back(), 1), &greedy, h,
                                               h.size(), -1};
        }
        const auto out = b.step(entries);
        for (int i = 0; i < batch; ++i) history[static_cast<size_t>(i)].push_back(out[static_cast<size_t>(i)].token.token);
    };
    for (int i = 0; i < 8; ++i) one_step();  // warm-up: graphs captured
    for (auto _ : state) {
        if (history.front().size() >= kTokensPerSequence) {
            state.PauseTiming();
            open_all();
            for (int i = 0; i < 8; ++i) one_step();
            state.ResumeTiming();
        }
        const auto t0 = std::chrono::steady_clock::now();
        one_step();
        state.SetIterationTime(seconds(t0));
    }
    for (int s : seqs) b.close(s);
    const double floor_s = static_cast<double>(g.weight_bytes) / (g.copy_gbps * 1e9);
    state.counters["tok/s"] = benchmark::Counter(static_cast<double>(batch), benchmark::Counter::kIsIterationInvariantRate);
    state.counters["floor_ms"] = floor_s * 1e3;
    state.counters["weights_MB"] = static_cast<double>(g.weight_bytes) / 1e6;
}

// One step per iteration: a whole kPrompt-token prompt of a fresh sequence (one prefill pass).
void BM_prefill(benchmark::State& state) {
    engine::KvManager b(*g.backend);
    const std::vector<int32_t> prompt = random_tokens(kPrompt, 99);
    engine::SamplingParams greedy;
    greedy.temperature = 0;
    for (auto _ : state) {
        const int seq = b.open();
        const engine::BatchEntry e{seq, prompt, &greedy, prompt, 0, -1};
        const auto t0 = std::chrono::steady_clock::now();
        b.step(std::span(&e, 1));
        state.SetIterationTime(seconds(t0));
        b.close(seq);
    }
    state.counters["tok/s"] = benchmark::Counter(kPrompt, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    const char* model = std::getenv("LOOM_BENCH_MODEL");
    if (!model || !*model) {
        std::printf("decode_bench: set LOOM_BENCH_MODEL to a GGUF file; nothing to run\n");
        return 0;
    }
    const auto inv = kernels::query_cuda();
    if (inv.devices.empty()) {
        std::printf("decode_bench: no usable CUDA device (%s); nothing to run\n", inv.error.c_str());
        return 0;
    }
    g.copy_gbps = kernels::measure_copy_bandwidth_gbps(0);
    g.file = std::make_unique<gguf::File>(gguf::File::open(model));
    g.backend = engine::make_backend("cuda", *g.file, {.n_ctx = kCtx, .limits = {kMaxSeqs, 0, kPrompt + kMaxSeqs}});
    for (const engine::MemoryUse& u : g.backend->memory().uses)
        if (u.purpose == "weights") g.weight_bytes = u.used;
    std::printf("decode_bench: %s on %s; copy bandwidth %.0f GB/s; weights %.1f MB -> floor %.3f ms per step\n", model,
                g.backend->device().c_str(), g.copy_gbps, g.weight_bytes / 1e6,
                g.weight_bytes / (g.copy_gbps * 1e9) * 1e3);
    for (const int batch : {1, 8, 32})
        benchmark::RegisterBenchmark("decode/batch", BM_decode)->Arg(batch)->UseManualTime()->Iterations(batch == 1 ? 400 : 200)->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("prefill/512", BM_prefill)->UseManualTime()->Iterations(20)->Unit(benchmark::kMillisecond);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
