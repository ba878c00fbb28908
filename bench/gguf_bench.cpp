// GGUF layer throughput: metadata parsing of a large vocabulary, and CPU dequantization per type.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "gguf/quantize.h"
#include "gguf/reader.h"
#include "gguf/writer.h"

using namespace loom::gguf;

namespace {

// A header shaped like a 150k-token BPE vocabulary plus 300 tensor infos (data section elided).
std::vector<uint8_t> vocab_sized_header() {
    Writer w;
    w.set("general.architecture", Value::string("llama"));
    std::vector<std::string> tokens, merges;
    std::vector<float> scores;
    std::vector<int32_t> types;
    for (int i = 0; i < 150000; ++i) {
        tokens.push_back("tok" + std::to_string(i));
        merges.push_back("a" + std::to_string(i) + " b");
        scores.push_back(-static_cast<float>(i));
        types.push_back(1);
    }
    w.set("tokenizer.ggml.tokens", Value::string_array(tokens));
    w.set("tokenizer.ggml.merges", Value::string_array(merges));
    w.set("tokenizer.ggml.scores", Value::f32_array(scores));
    w.set("tokenizer.ggml.token_type", Value::i32_array(types));
    for (int i = 0; i < 300; ++i) w.add_tensor("t" + std::to_string(i), TensorType::F32, {32}, [](auto) {});
    auto bytes = w.header_bytes();
    bytes.resize(w.file_size(), 0);
    return bytes;
}

void BM_ParseVocabHeader(benchmark::State& state) {
    const auto bytes = vocab_sized_header();
    for (auto _ : state) benchmark::DoNotOptimize(File::parse(bytes));
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bytes.size()));
}
BENCHMARK(BM_ParseVocabHeader)->Unit(benchmark::kMillisecond);

void BM_Dequantize(benchmark::State& state) {
    const auto type = static_cast<TensorType>(state.range(0));
    constexpr uint64_t n = 1 << 20;
    std::vector<float> src(n);
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.f, 1.f);
    for (auto& x : src) x = normal(rng);
    std::vector<uint8_t> q(tensor_bytes(type, n));
    quantize(type, src.data(), q.data(), n);
    std::vector<float> out(n);
    for (auto _ : state) {
        dequantize(type, q.data(), out.data(), n);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetLabel(std::string(tensor_type_name(type)));
    state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(n));
}
BENCHMARK(BM_Dequantize)
    ->Arg(int(TensorType::F16))
    ->Arg(int(TensorType::Q4_0))
    ->Arg(int(TensorType::Q4_1))
    ->Arg(int(TensorType::Q8_0))
    ->Arg(int(TensorType::Q4_K))
    ->Arg(int(TensorType::Q6_K))
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
