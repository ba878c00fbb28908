// Quantized matrix-vector products on the GPU against an f64 dot over the CPU-dequantized weights.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch.hpp"
#include "gguf/quantize.h"
#include "gguf/tensor_type.h"
#include "kernel_test_support.h"
#include "kernels/matvec.h"

using namespace loom;
using gguf::TensorType;
using test::DeviceBuffer;

namespace {

// The kernel multiplies by exactly dequantized weights, so only f32 summation separates it from
// the f64 reference: the f32 budget applies, far inside the 5e-4 allowed to quantized products.
constexpr double kMaxNmse = 1e-6;

void check_matvec(TensorType type, int n_out, int n_in, int n_vec, uint32_t seed) {
    const std::string what = std::string(gguf::tensor_type_name(type)) + " " + std::to_string(n_out) + "x" +
                             std::to_string(n_in) + " T=" + std::to_string(n_vec);
    INFO(what);
    const uint64_t n_weights = static_cast<uint64_t>(n_out) * n_in;
    const auto weights = test::random_normal(n_weights, seed, 0.f, 0.05f);
    std::vector<uint8_t> w_bytes(gguf::tensor_bytes(type, n_weights));
    gguf::quantize(type, weights.data(), w_bytes.data(), n_weights);
    std::vector<float> w_ref(n_weights);
    gguf::dequantize(type, w_bytes.data(), w_ref.data(), n_weights);
    const auto x = test::random_uniform(static_cast<size_t>(n_vec) * n_in, seed + 1, -1.f, 1.f);

    DeviceBuffer<uint8_t> d_w(w_bytes);
    DeviceBuffer<float> d_x(x);
    DeviceBuffer<float> d_y(static_cast<size_t>(n_vec) * n_out);
    d_y.poison();
    test::TestStream stream;
    kernels::matvec(type, d_w.get(), d_x.get(), d_y.get(), n_in, n_out, n_vec, stream.get());
    const auto y = d_y.download();

    std::vector<double> ref(y.size());
    for (int t = 0; t < n_vec; ++t)
        for (int o = 0; o < n_out; ++o) {
            const float* w = w_ref.data() + static_cast<size_t>(o) * n_in;
            const float* xt = x.data() + static_cast<size_t>(t) * n_in;
            double sum = 0;
            for (int i = 0; i < n_in; ++i) sum += static_cast<double>(w[i]) * xt[i];
            ref[static_cast<size_t>(t) * n_out + o] = sum;
        }
    const double err = test::nmse(y, ref);
    test::report_nmse("matvec", what, err);
    CHECK(test::count_unwritten(y) == 0);
    CHECK(d_y.guard_intact());
    CHECK(err <= kMaxNmse);
}

}  // namespace

TEST_CASE("matvec with 32-element block formats matches the f64 reference", "[gpu][matvec]") {
    uint32_t seed = 1000;
    for (const auto type : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0}) {
        // SmolLM2-135M: q/o (576x576), gate/up (1536x576), down (576x1536).
        check_matvec(type, 576, 576, 1, seed++);
        check_matvec(type, 1536, 576, 2, seed++);
        check_matvec(type, 576, 1536, 3, seed++);
        // Qwen2.5-0.5B: q/o (896x896), gate/up (4864x896), down (896x4864).
        check_matvec(type, 896, 896, 1, seed++);
        check_matvec(type, 4864, 896, 5, seed++);
        check_matvec(type, 896, 4864, 8, seed++);
        // Odd: rows not a multiple of the warps per block, rows shorter than one warp pass.
        check_matvec(type, 37, 32, 1, seed++);
        check_matvec(type, 131, 96, 4, seed++);
        check_matvec(type, 1, 160, 7, seed++);
    }
}

TEST_CASE("matvec with K-quant super-blocks matches the f64 reference", "[gpu][matvec]") {
    uint32_t seed = 2000;
    for (const auto type : {TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K}) {
        check_matvec(type, 576, 1536, 1, seed++);  // SmolLM2 down
        check_matvec(type, 576, 1536, 4, seed++);
        check_matvec(type, 896, 4864, 1, seed++);  // Qwen2.5 down: 19 super-blocks per row
        check_matvec(type, 896, 4864, 8, seed++);
        check_matvec(type, 37, 256, 2, seed++);
        check_matvec(type, 131, 512, 3, seed++);
        check_matvec(type, 1, 768, 6, seed++);
    }
}

TEST_CASE("matvec with F16 and BF16 weights matches the f64 reference, aligned or not", "[gpu][matvec]") {
    uint32_t seed = 3000;
    for (const auto type : {TensorType::F16, TensorType::BF16}) {
        check_matvec(type, 576, 576, 1, seed++);
        check_matvec(type, 4864, 896, 2, seed++);
        check_matvec(type, 1536, 576, 6, seed++);
        check_matvec(type, 131, 1000, 1, seed++);
        check_matvec(type, 37, 33, 3, seed++);  // rows of odd length: the unaligned path
        check_matvec(type, 5, 7, 8, seed++);
    }
}

TEST_CASE("matvec with F32 weights matches the f64 reference, aligned or not", "[gpu][matvec]") {
    uint32_t seed = 3500;
    check_matvec(TensorType::F32, 512, 64, 1, seed++);  // stories260K's output projection
    check_matvec(TensorType::F32, 172, 64, 8, seed++);
    check_matvec(TensorType::F32, 64, 172, 5, seed++);
    check_matvec(TensorType::F32, 1000, 576, 2, seed++);
    check_matvec(TensorType::F32, 37, 30, 4, seed++);  // rows not a multiple of 4: the unaligned path
    check_matvec(TensorType::F32, 3, 1, 1, seed++);
}

TEST_CASE("matvec over the SmolLM2 output projection (49152 x 576)", "[gpu][matvec]") {
    check_matvec(TensorType::Q8_0, 49152, 576, 1, 4000);
    check_matvec(TensorType::Q8_0, 49152, 576, 4, 4001);
    check_matvec(TensorType::F16, 49152, 576, 1, 4002);
    check_matvec(TensorType::BF16, 49152, 576, 2, 4003);
}

TEST_CASE("matvec rejects what it cannot do", "[gpu][matvec]") {
    DeviceBuffer<float> buf(4096);
    float* p = buf.get();
    for (const auto type : {TensorType::BF16, TensorType::Q5_1, TensorType::Q5_K}) CHECK(kernels::matvec_supports(type));
    for (const auto type : {TensorType::Q2_K, TensorType::Q3_K, TensorType::Q8_1, TensorType::I32})
        CHECK_FALSE(kernels::matvec_supports(type));
    CHECK_THROWS_AS(kernels::matvec(TensorType::Q2_K, p, p, p + 2048, 256, 1, 1, nullptr), std::invalid_argument);
    CHECK_THROWS_AS(kernels::matvec(TensorType::Q4_0, p, p, p + 2048, 48, 1, 1, nullptr), std::invalid_argument);
    CHECK_THROWS_AS(kernels::matvec(TensorType::Q5_1, p, p, p + 2048, 48, 1, 1, nullptr), std::invalid_argument);
    CHECK_THROWS_AS(kernels::matvec(TensorType::Q5_K, p, p, p + 2048, 384, 1, 1, nullptr), std::invalid_argument);
    CHECK_THROWS_AS(kernels::matvec(TensorType::F32, p, p, p + 2048, 0, 1, 1, nullptr), std::invalid_argument);
    CHECK_THROWS_AS(kernels::matvec(TensorType::Q4_K, p, p, p + 2048, 256, 1, 9, nullptr), std::invalid_argument);
    CHECK_THROWS_AS(kernels::matvec(TensorType::Q4_K, p, p, p + 2048, 256, 1, 0, nullptr), std::invalid_argument);
    CHECK_THROWS_AS(kernels::matvec(TensorType::Q8_0, reinterpret_cast<char*>(p) + 2, p + 1024, p + 2048, 32, 1, 1,
                                    nullptr),
                    std::invalid_argument);
}
