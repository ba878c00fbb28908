// Embedding lookup on the GPU against the CPU dequantizer, for every supported table type.
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch.hpp"
#include "gguf/quantize.h"
#include "gguf/tensor_type.h"
#include "kernel_test_support.h"
#include "kernels/embedding.h"

using namespace loom;
using gguf::TensorType;
using test::DeviceBuffer;

namespace {

struct Table {
    std::vector<uint8_t> bytes;
    std::vector<float> dequantized;  // what gguf::dequantize makes of `bytes`: the reference
};

Table make_table(TensorType type, int64_t n_vocab, int n_embd, uint32_t seed) {
    const uint64_t n = static_cast<uint64_t>(n_vocab) * n_embd;
    const auto weights = test::random_normal(n, seed, 0.f, 0.5f);
    Table t;
    t.bytes.resize(gguf::tensor_bytes(type, n));
    gguf::quantize(type, weights.data(), t.bytes.data(), n);
    t.dequantized.resize(n);
    gguf::dequantize(type, t.bytes.data(), t.dequantized.data(), n);
    return t;
}

// Looks up n_tokens random ids (plus the first and last row) and requires the rows to equal the
// CPU dequantizer's bit for bit.
void check_lookup(TensorType type, int64_t n_vocab, int n_embd, int n_tokens, uint32_t seed) {
    const std::string what = std::string(gguf::tensor_type_name(type)) + " " + std::to_string(n_vocab) + "x" +
                             std::to_string(n_embd) + " T=" + std::to_string(n_tokens);
    INFO(what);
    const Table table = make_table(type, n_vocab, n_embd, seed);
    std::mt19937 rng(seed ^ 0x5bd1e995u);
    std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(n_vocab - 1));
    std::vector<int32_t> ids(static_cast<size_t>(n_tokens));
    for (auto& id : ids) id = pick(rng);
    ids.front() = static_cast<int32_t>(n_vocab - 1);
    if (n_tokens > 1) ids[1] = 0;

    DeviceBuffer<uint8_t> d_table(table.bytes);
    DeviceBuffer<int32_t> d_ids(ids);
    DeviceBuffer<float> d_out(static_cast<size_t>(n_tokens) * n_embd);
    d_out.poison();
    test::TestStream stream;
    kernels::embedding_lookup(type, d_table.get(), n_vocab, n_embd, d_ids.get(), n_tokens, d_out.get(), stream.get());
    const auto out = d_out.download();

    std::vector<float> ref(out.size());
    size_t mismatches = 0;
    for (int t = 0; t < n_tokens; ++t)
        for (int i = 0; i < n_embd; ++i) {
            const size_t o = static_cast<size_t>(t) * n_embd + i;
            ref[o] = table.dequantized[static_cast<size_t>(ids[t]) * n_embd + i];
            mismatches += out[o] == ref[o] ? 0 : 1;
        }
    const double err = test::nmse(out, ref);
    test::report_nmse("embedding", what, err);
    CHECK(test::count_unwritten(out) == 0);
    CHECK(d_out.guard_intact());
    CHECK(mismatches == 0);
    CHECK(err == 0.0);
}

}  // namespace

TEST_CASE("embedding rows equal the CPU dequantizer for every table type", "[gpu][embedding]") {
    uint32_t seed = 101;
    // Real shapes: SmolLM2-135M (49152 x 576), Qwen2.5-0.5B width 896 (a shorter vocabulary).
    for (const auto type : {TensorType::Q8_0, TensorType::Q4_0, TensorType::F16})
        check_lookup(type, 49152, 576, 64, seed++);
    for (const auto type : {TensorType::F32, TensorType::F16, TensorType::BF16, TensorType::Q4_0, TensorType::Q4_1,
                            TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0})
        check_lookup(type, 2003, 896, 17, seed++);
    for (const auto type : {TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K}) {
        check_lookup(type, 3001, 1536, 9, seed++);
        check_lookup(type, 777, 256, 1, seed++);
        check_lookup(type, 129, 768, 33, seed++);
    }
    // Odd widths: one block, three blocks, and plain types of any width.
    for (const auto type : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0}) {
        check_lookup(type, 5, 32, 3, seed++);
        check_lookup(type, 301, 96, 7, seed++);
    }
    // Plain types: widths off their 16-byte groups take the one-element-per-thread path.
    check_lookup(TensorType::F32, 11, 37, 5, seed++);
    check_lookup(TensorType::F32, 11, 36, 5, seed++);
    for (const auto type : {TensorType::F16, TensorType::BF16}) {
        check_lookup(type, 13, 1, 4, seed++);
        check_lookup(type, 1000, 577, 2, seed++);
        check_lookup(type, 1000, 8, 6, seed++);
    }
}

TEST_CASE("an id outside the table gives a NaN row, not a stray read", "[gpu][embedding]") {
    const int64_t n_vocab = 100;
    const int n_embd = 64;
    const Table table = make_table(TensorType::Q8_0, n_vocab, n_embd, 7);
    const std::vector<int32_t> ids = {-1, static_cast<int32_t>(n_vocab), 42};
    DeviceBuffer<uint8_t> d_table(table.bytes);
    DeviceBuffer<int32_t> d_ids(ids);
    DeviceBuffer<float> d_out(ids.size() * n_embd);
    d_out.poison();
    kernels::embedding_lookup(TensorType::Q8_0, d_table.get(), n_vocab, n_embd, d_ids.get(), 3, d_out.get(), nullptr);
    const auto out = d_out.download();
    for (int i = 0; i < 2 * n_embd; ++i) {
        CHECK(std::isnan(out[i]));
        CHECK_FALSE(test::is_poison(out[i]));
    }
    for (int i = 0; i < n_embd; ++i) CHECK(out[2 * n_embd + i] == table.dequantized[42 * n_embd + i]);
}

TEST_CASE("embedding_lookup rejects what it cannot do", "[gpu][embedding]") {
    DeviceBuffer<float> d_out(64);
    DeviceBuffer<int32_t> d_ids(std::vector<int32_t>{0});
    for (const auto type : {TensorType::BF16, TensorType::Q5_1, TensorType::Q5_K})
        CHECK(kernels::embedding_supports(type));
    for (const auto type : {TensorType::Q2_K, TensorType::Q3_K, TensorType::Q8_1, TensorType::I32})
        CHECK_FALSE(kernels::embedding_supports(type));
    CHECK_THROWS_AS(
        kernels::embedding_lookup(TensorType::Q2_K, d_out.get(), 1, 256, d_ids.get(), 1, d_out.get(), nullptr),
        std::invalid_argument);
    CHECK_THROWS_AS(
        kernels::embedding_lookup(TensorType::Q4_0, d_out.get(), 1, 48, d_ids.get(), 1, d_out.get(), nullptr),
        std::invalid_argument);
    CHECK_THROWS_AS(
        kernels::embedding_lookup(TensorType::Q5_K, d_out.get(), 1, 128, d_ids.get(), 1, d_out.get(), nullptr),
        std::invalid_argument);
    CHECK_THROWS_AS(kernels::embedding_lookup(TensorType::Q8_0, reinterpret_cast<char*>(d_out.get()) + 2, 1, 32,
                                              d_ids.get(), 1, d_out.get(), nullptr),
                    std::invalid_argument);
}
