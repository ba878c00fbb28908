// End-to-end step timings of the CUDA backend on a real model file: batch-1 decode, batched decode
// (aggregate tokens/s), decode at 4k-32k positions of context, and prompt prefill, next to the
// bandwidth floor of reading the weights once per step. The model comes from LOOM_BENCH_MODEL; without it (or a GPU)
// the program says so and exits 0. LOOM_BENCH_BATCH_INVARIANT=1 times the backend's batch-invariant mode.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "engine/step_timing.h"
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
    bool batch_invariant = false;
    std::unique_ptr<gguf::File> file;
    std::unique_ptr<engine::Backend> backend;
    double copy_gbps = 0;
    uint64_t weight_bytes = 0;
};
Bench g;

// One step per iteration: every one of `batch` sequences feeds its last token and samples the next
// (greedy, on the GPU). Wall time per step includes the host work and the single synchronisation.
void BM_decode(benchmark::State& state) {
    const int batch = static_cast<int>(state.range(0));
    engine::DecodeSteps steps(*g.backend, batch, kTokensPerSequence);
    for (int i = 0; i < 8; ++i) steps.step();  // warm-up: graphs captured
    for (auto _ : state) state.SetIterationTime(steps.step());
    state.counters["tok/s"] =
        benchmark::Counter(static_cast<double>(batch), benchmark::Counter::kIsIterationInvariantRate);
    state.counters["floor_ms"] = engine::floor_ms(g.weight_bytes, g.copy_gbps);
    state.counters["weights_MB"] = static_cast<double>(g.weight_bytes) / 1e6;
}

// Decode at long contexts (issue 16: attention near its KV floor at 4k-32k): a backend of its own,
// made on first use, with n_ctx for the longest case and KV positions for 32 sequences of 4k (an 8B
// model's f16 cache: 22 GB; 32 sequences of 16k or 32k would not fit an 80 GB card beside it).
constexpr int kLongCtx = 32768, kLongMargin = 512;
engine::Backend& long_context_backend() {
    static const std::unique_ptr<engine::Backend> backend = engine::make_backend(
        "cuda", *g.file,
        {.n_ctx = kLongCtx + kLongMargin + 16,
         .limits = {.max_seqs = kMaxSeqs, .kv_tokens = kMaxSeqs * (4096 + kLongMargin + 16), .max_batch_tokens = 512},
         .batch_invariant = g.batch_invariant});
    return *backend;
}

// One step per iteration at range(0) positions of context, range(1) sequences; each sequence decodes
// up to kLongMargin tokens past its context before it is prefilled again (outside the timing).
void BM_decode_context(benchmark::State& state) {
    const int context = static_cast<int>(state.range(0)), batch = static_cast<int>(state.range(1));
    engine::DecodeSteps steps(long_context_backend(), batch, context + kLongMargin, context);
    for (int i = 0; i < 4; ++i) steps.step();
    for (auto _ : state) state.SetIterationTime(steps.step());
    state.counters["tok/s"] =
        benchmark::Counter(static_cast<double>(batch), benchmark::Counter::kIsIterationInvariantRate);
    state.counters["floor_ms"] = engine::floor_ms(g.weight_bytes, g.copy_gbps);
}

// One step per iteration: a whole kPrompt-token prompt of a fresh sequence (one prefill pass).
void BM_prefill(benchmark::State& state) {
    engine::PrefillSteps prefill(*g.backend, kPrompt);
    for (auto _ : state) state.SetIterationTime(prefill.run());
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
    const char* invariant = std::getenv("LOOM_BENCH_BATCH_INVARIANT");
    g.batch_invariant = invariant && std::string(invariant) == "1";
    g.file = std::make_unique<gguf::File>(gguf::File::open(model));
    g.backend = engine::make_backend(
        "cuda", *g.file,
        {.n_ctx = kCtx, .limits = {kMaxSeqs, 0, kPrompt + kMaxSeqs}, .batch_invariant = g.batch_invariant});
    g.copy_gbps = engine::measure_copy_bandwidth_gbps(*g.backend);
    g.weight_bytes = engine::weight_bytes(*g.backend);
    std::printf("decode_bench: %s on %s%s; copy bandwidth %.0f GB/s; weights %.1f MB -> floor %.3f ms per step\n",
                model, g.backend->device().c_str(), g.batch_invariant ? " (batch-invariant mode)" : "", g.copy_gbps,
                g.weight_bytes / 1e6, engine::floor_ms(g.weight_bytes, g.copy_gbps));
    for (const int batch : {1, 8, 32})
        benchmark::RegisterBenchmark("decode/batch", BM_decode)
            ->Arg(batch)
            ->UseManualTime()
            ->Iterations(batch == 1 ? 400 : 200)
            ->Unit(benchmark::kMillisecond);
    for (const auto& [context, batch] :
         {std::pair{4096, 1}, std::pair{4096, 32}, std::pair{16384, 1}, std::pair{16384, 8}, std::pair{32768, 1}})
        benchmark::RegisterBenchmark("decode/context", BM_decode_context)
            ->Args({context, batch})
            ->UseManualTime()
            ->Iterations(100)
            ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("prefill/512", BM_prefill)
        ->UseManualTime()
        ->Iterations(20)
        ->Unit(benchmark::kMillisecond);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
