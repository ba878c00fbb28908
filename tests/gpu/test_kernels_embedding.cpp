// Embedding lookup on the GPU against the CPU dequantizer, for every supported table type.
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch.hpp"
#include "gguf/tensor_type.h"
#include "kernel_cases/embedding_cases.h"
#include "kernel_test_support.h"
#include "kernels/embedding.h"

using namespace loom;
using gguf::TensorType;
using test::DeviceBuffer;

namespace {

// Looks up the case's ids (random, plus the first and last row) and requires the rows to equal the
// CPU dequantizer's bit for bit.
void check_lookup(const kcases::EmbeddingCase& c) {
    const std::string what = c.name();
    INFO(what);
    const auto table = kcases::embedding_table(c);
    const auto ids = kcases::embedding_ids(c);

    DeviceBuffer<uint8_t> d_table(table.bytes);
    DeviceBuffer<int32_t> d_ids(ids);
    DeviceBuffer<float> d_out(static_cast<size_t>(c.n_tokens) * c.n_embd);
    d_out.poison();
    test::TestStream stream;
    kernels::embedding_lookup(c.type, d_table.get(), c.n_vocab, c.n_embd, d_ids.get(), c.n_tokens, d_out.get(),
                              stream.get());
    const auto out = d_out.download();

    const auto ref = kcases::embedding_reference(table.values, ids, c.n_embd);
    const double err = test::nmse(out, ref);
    test::report_nmse("embedding", what, err);
    CHECK(test::count_unwritten(out) == 0);
    CHECK(d_out.guard_intact());
    CHECK(test::count_mismatches(out, ref) == 0);
    CHECK(err == 0.0);
}

}  // namespace

TEST_CASE("embedding rows equal the CPU dequantizer for every table type", "[gpu][embedding]") {
    for (const auto& c : kcases::embedding_test_cases()) check_lookup(c);
}

TEST_CASE("an id outside the table gives a NaN row, not a stray read", "[gpu][embedding]") {
    const int64_t n_vocab = 100;
    const int n_embd = 64;
    const auto table = kcases::random_matrix(TensorType::Q8_0, n_vocab, n_embd, 7, 0.5f);
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
    for (int i = 0; i < n_embd; ++i) CHECK(out[2 * n_embd + i] == table.values[42 * n_embd + i]);
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
