// GPU dequantization to fp16 (bit-exact against the CPU dequantizer), the hi + lo split of activations
// (bit-exact against the CPU split), and the cuBLAS matrix product against f64 references; CUDA graph
// capture; timings of the phases.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch.hpp"
#include "gguf/half.h"
#include "gguf/tensor_type.h"
#include "kernel_cases/gemm_cases.h"
#include "kernel_test_support.h"
#include "kernels/dequantize.h"
#include "kernels/gemm.h"
#include "kernels/split.h"

using namespace loom;
using gguf::TensorType;
using test::DeviceBuffer;

namespace {

using kcases::GemmCase;
using kcases::kGemmMaxNmse;
using kcases::kGemmMaxNmseF16Inputs;
using kcases::kGemmMaxNmseF32;
using kcases::kGemmMaxNmseSplit;
using kernels::HalfType;

std::string type_name(TensorType type) { return std::string(gguf::tensor_type_name(type)); }

// Uploads `bytes`, dequantizes on the GPU and requires every fp16 value to carry the CPU value's bits.
void check_dequantize(TensorType type, const std::vector<uint8_t>& bytes, const std::vector<float>& cpu, int n_in,
                      int64_t n_rows) {
    const std::string what = type_name(type) + " " + std::to_string(n_rows) + "x" + std::to_string(n_in);
    INFO(what);
    DeviceBuffer<uint8_t> d_w(bytes);
    DeviceBuffer<uint16_t> d_out(cpu.size());
    d_out.poison();  // 0xFFFF: a NaN pattern that no finite input rounds to
    test::TestStream stream;
    kernels::dequantize_to_f16(type, d_w.get(), d_out.get(), n_in, n_rows, stream.get());
    const auto out = d_out.download();
    size_t mismatches = 0;
    for (size_t i = 0; i < cpu.size(); ++i) mismatches += out[i] == gguf::float_to_half(cpu[i]) ? 0 : 1;
    std::printf("[exact] dequantize_to_f16 %s: %zu of %zu values differ\n", what.c_str(), mismatches, cpu.size());
    CHECK(mismatches == 0);
    CHECK(d_out.guard_intact());
}

void check_dequantize_random(TensorType type, int n_in, int64_t n_rows, uint32_t seed) {
    const auto q = kcases::random_matrix(type, n_rows, n_in, seed);
    check_dequantize(type, q.bytes, q.values, n_in, n_rows);
}

// The cuBLAS handle and its workspace, as a model load would make them.
struct Gemm {
    DeviceBuffer<uint8_t> cublas_workspace{kernels::GemmContext::cublas_workspace_bytes()};
    test::TestStream stream;
    kernels::GemmContext ctx{cublas_workspace.get(), cublas_workspace.size(), stream.get()};
};

void check_gemm(Gemm& g, const GemmCase& c) {
    const std::string what = c.name();
    INFO(what);
    const auto [w, x] = kcases::gemm_inputs(c);

    DeviceBuffer<uint8_t> d_w(w.bytes);
    DeviceBuffer<float> d_x(x);
    DeviceBuffer<float> d_y(static_cast<size_t>(c.n_rows) * c.n_out);
    DeviceBuffer<uint8_t> d_ws(kernels::gemm_workspace_bytes(c.n_in, c.n_out, c.n_rows));  // exactly what it asks for
    d_y.poison();
    d_ws.poison();
    kernels::gemm(g.ctx, c.type, d_w.get(), d_x.get(), d_y.get(), c.n_in, c.n_out, c.n_rows, d_ws.get(), d_ws.size(),
                  g.stream.get());
    const auto y = d_y.download();

    const auto ref = kcases::gemm_reference(w.values, x, c.n_in, c.n_out, c.n_rows);
    const double err = test::nmse(y, ref.exact), err16 = test::nmse(y, ref.f16);
    test::report_nmse("gemm", what, err);
    test::report_nmse("gemm_vs_f16_inputs", what, err16);
    CHECK(test::count_unwritten(y) == 0);
    CHECK(d_y.guard_intact());
    CHECK(d_ws.guard_intact());
    CHECK(err <= kGemmMaxNmse);
    if (c.type == TensorType::F32)
        CHECK(err <= kGemmMaxNmseF32);
    else if (c.type == TensorType::F16 || c.type == TensorType::BF16)
        CHECK(err <= kGemmMaxNmseSplit);  // the activations' lo halves count: one rounding scores ~2e-8
    else
        CHECK(err16 <= kGemmMaxNmseF16Inputs);
}

const char* half_name(HalfType type) { return type == HalfType::f16 ? "f16" : "bf16"; }

// Splits n fresh activations on the GPU into poisoned hi and lo buffers; every half must carry the CPU
// split's bits, and hi + lo lie within split_error_bound of x (checked on the reference's side in
// kernel_cases_tests; here the bits make it hold for the GPU too).
void check_split(HalfType type, size_t n, uint32_t seed) {
    const std::string what = std::string(half_name(type)) + " n " + std::to_string(n);
    INFO(what);
    const auto x = kcases::split_inputs(n, seed);
    const auto ref = kcases::split_reference(type, x);
    DeviceBuffer<float> d_x(x);
    DeviceBuffer<uint16_t> d_hi(n), d_lo(n);
    d_hi.poison();
    d_lo.poison();
    test::TestStream stream;
    kernels::split_to_half(type, d_x.get(), d_hi.get(), d_lo.get(), static_cast<int64_t>(n), stream.get());
    const auto hi = d_hi.download(), lo = d_lo.download();
    size_t mismatches = 0, over = 0;
    for (size_t i = 0; i < n; ++i) {
        mismatches += hi[i] == ref.hi[i] && lo[i] == ref.lo[i] ? 0 : 1;
        const double sum = kcases::split_value(type, hi[i], lo[i]);
        if (!std::isinf(sum)) over += std::abs(sum - x[i]) > kcases::split_error_bound(type, x[i]) ? 1 : 0;
    }
    std::printf("[exact] split_to_%s: %zu of %zu values differ, %zu beyond the bound\n", what.c_str(), mismatches, n,
                over);
    CHECK(mismatches == 0);
    CHECK(over == 0);
    CHECK(d_hi.guard_intact());
    CHECK(d_lo.guard_intact());
}

}  // namespace

TEST_CASE("dequantize_to_f16 equals the CPU dequantizer rounded to fp16, bit for bit", "[gpu][gemm][dequantize]") {
    uint32_t seed = 5000;
    for (const auto type : kcases::gemm_types()) {
        check_dequantize_random(type, 1536, 576, seed++);  // SmolLM2 down projection (576, 1536)
        check_dequantize_random(type, 512, 37, seed++);    // rows not filling a thread block
        check_dequantize_random(type, 256, 1, seed++);     // one super-block
    }
    check_dequantize_random(TensorType::Q4_0, 576, 1536, seed++);  // SmolLM2 gate/up (1536, 576)
    check_dequantize_random(TensorType::Q8_0, 96, 5, seed++);
    check_dequantize_random(TensorType::F16, 33, 7, seed++);  // odd rows: F16 takes any n_in
    check_dequantize_random(TensorType::F32, 33, 7, seed++);  // odd total: the one-at-a-time tail
    CHECK_FALSE(kernels::dequantize_f16_supports(TensorType::Q2_K));
}

TEST_CASE("dequantize_to_f16 rounds f32 like the CPU: ties to even, subnormals, overflow", "[gpu][gemm][dequantize]") {
    // Values at and around fp16's edges: halfway ties (1 + 2^-11 -> 1, 1 + 3*2^-11 -> up), the largest
    // finite 65504, the overflow threshold 65520, subnormals down to half the smallest (2^-25 -> 0).
    std::vector<float> v = {1.f + std::ldexp(1.f, -11),
                            1.f + 3 * std::ldexp(1.f, -11),
                            -1.f - std::ldexp(1.f, -11),
                            65504.f,
                            65519.f,
                            65520.f,
                            -70000.f,
                            3e38f,
                            std::ldexp(1.f, -14),
                            std::ldexp(1.f, -24),
                            std::ldexp(1.f, -25),
                            std::ldexp(3.f, -26),
                            -std::ldexp(1.f, -20),
                            1e-30f,
                            0.1f,
                            -0.3f,
                            1234.567f};
    const auto scales = test::random_normal(4000, 77, 0.f, 1.f);
    for (size_t i = 0; i < scales.size(); ++i)
        v.push_back(scales[i] * std::ldexp(1.f, static_cast<int>(i % 48) - 30));  // 2^-30 .. 2^17
    const int n_in = static_cast<int>(v.size());
    std::vector<uint8_t> bytes(v.size() * sizeof(float));
    std::memcpy(bytes.data(), v.data(), bytes.size());
    check_dequantize(TensorType::F32, bytes, v, n_in, 1);
}

TEST_CASE("split_to_f16 and split_to_bf16 equal the CPU split, bit for bit", "[gpu][gemm][split]") {
    uint32_t seed = 5100;
    for (const HalfType type : {HalfType::f16, HalfType::bf16}) {
        check_split(type, 512 * 576, seed++);  // a SmolLM2 prefill's activations
        check_split(type, 4099, seed++);       // n % 4 == 3: the one-at-a-time tail
        check_split(type, 3, seed++);          // the tail alone
    }
    test::TestStream stream;
    DeviceBuffer<uint8_t> buf(4096);
    auto* x = reinterpret_cast<float*>(buf.get());
    auto* hi = reinterpret_cast<uint16_t*>(buf.get() + 1024);
    auto* lo = reinterpret_cast<uint16_t*>(buf.get() + 2048);
    CHECK_NOTHROW(kernels::split_to_f16(x, hi, lo, 0, stream.get()));
    CHECK_THROWS_AS(kernels::split_to_f16(x, hi, lo, -1, stream.get()), std::invalid_argument);
    CHECK_THROWS_AS(kernels::split_to_f16(x, hi + 1, lo, 16, stream.get()), std::invalid_argument);   // misaligned
    CHECK_THROWS_AS(kernels::split_to_bf16(x, hi, hi + 8, 16, stream.get()), std::invalid_argument);  // hi, lo overlap
    CHECK_THROWS_AS(kernels::split_to_bf16(x, reinterpret_cast<uint16_t*>(x) + 8, lo, 16, stream.get()),
                    std::invalid_argument);  // hi inside X
    LOOM_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
}

TEST_CASE("gemm matches the f64 product for every weight type", "[gpu][gemm]") {
    Gemm g;
    for (const auto& c : kcases::gemm_test_cases()) check_gemm(g, c);
}

TEST_CASE("gemm at prefill sizes: 512 rows, the SmolLM2 vocabulary, an 8B MLP", "[gpu][gemm]") {
    Gemm g;
    for (const auto& c : kcases::gemm_prefill_cases()) check_gemm(g, c);
}

TEST_CASE("gemm runs on other streams than the context's and inside CUDA graph capture", "[gpu][gemm]") {
    test::TestStream other;  // made before the context, so it outlives the context bound to it last
    Gemm g;
    const GemmCase c{TensorType::Q4_K, 1536, 576, 64, 8000};
    const TensorType type = c.type;
    const int n_in = c.n_in, n_out = c.n_out, n_rows = c.n_rows;
    const auto [w, x] = kcases::gemm_inputs(c);
    const auto ref = kcases::gemm_reference(w.values, x, n_in, n_out, n_rows);
    DeviceBuffer<uint8_t> d_w(w.bytes);
    DeviceBuffer<float> d_x(x);
    DeviceBuffer<float> d_y(static_cast<size_t>(n_rows) * n_out);
    DeviceBuffer<uint8_t> d_ws(kernels::gemm_workspace_bytes(n_in, n_out, n_rows));
    auto run = [&](cudaStream_t s) {
        kernels::gemm(g.ctx, type, d_w.get(), d_x.get(), d_y.get(), n_in, n_out, n_rows, d_ws.get(), d_ws.size(), s);
    };
    auto check_y = [&](const char* how) {
        const auto y = d_y.download();
        const double err = test::nmse(y, ref.f16);
        test::report_nmse("gemm_vs_f16_inputs", c.name() + " " + how, err);
        CHECK(test::count_unwritten(y) == 0);
        CHECK(err <= kGemmMaxNmseF16Inputs);
    };

    d_y.poison();
    run(g.stream.get());
    check_y("on the context's stream");

    // Captured on the stream the context is bound to, then replayed twice.
    d_y.poison();
    cudaGraph_t graph = nullptr;
    LOOM_CUDA_CHECK(cudaStreamBeginCapture(g.stream.get(), cudaStreamCaptureModeGlobal));
    run(g.stream.get());
    LOOM_CUDA_CHECK(cudaStreamEndCapture(g.stream.get(), &graph));
    cudaGraphExec_t exec = nullptr;
    LOOM_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    for (int i = 0; i < 2; ++i) LOOM_CUDA_CHECK(cudaGraphLaunch(exec, g.stream.get()));
    LOOM_CUDA_CHECK(cudaStreamSynchronize(g.stream.get()));
    check_y("replayed from a CUDA graph");
    LOOM_CUDA_CHECK(cudaGraphExecDestroy(exec));
    LOOM_CUDA_CHECK(cudaGraphDestroy(graph));

    d_y.poison();  // the context rebinds to `other`, workspace included
    run(other.get());
    check_y("on another stream");
}

TEST_CASE("gemm and dequantize_to_f16 reject what they cannot do", "[gpu][gemm]") {
    Gemm g;
    DeviceBuffer<uint8_t> buf(1 << 20);
    auto* p = buf.get();
    auto* x = reinterpret_cast<float*>(p + 4096);
    auto* y = reinterpret_cast<float*>(p + 8192);
    auto* ws = p + 65536;
    const uint64_t ws_bytes = kernels::gemm_workspace_bytes(256, 4, 2);
    CHECK(ws_bytes == 2048 + 2 * 1024);  // 16-bit W (4 x 256), X's hi and lo (2 x 256), each to 256 bytes
    CHECK(kernels::gemm_workspace_bytes(576, 1536, 9) == 1536 * 576 * 2 + 2 * 10496);
    CHECK(kernels::gemm_workspace_bytes(4096, 14336, 9) >= kernels::gemm_workspace_bytes(4096, 14336, 1));
    const auto s = g.stream.get();
    auto call = [&](TensorType type, const void* w, const float* xp, int n_in, int n_out, int n_rows, void* wsp,
                    uint64_t bytes) { kernels::gemm(g.ctx, type, w, xp, y, n_in, n_out, n_rows, wsp, bytes, s); };
    CHECK_NOTHROW(call(TensorType::Q4_K, p, x, 256, 4, 2, ws, ws_bytes));
    CHECK_THROWS_AS(call(TensorType::Q2_K, p, x, 256, 4, 2, ws, ws_bytes), std::invalid_argument);
    CHECK_THROWS_AS(call(TensorType::Q4_K, p, x, 96, 4, 2, ws, ws_bytes), std::invalid_argument);
    CHECK_THROWS_AS(call(TensorType::Q4_K, p, x, 256, 4, -1, ws, ws_bytes), std::invalid_argument);
    CHECK_THROWS_AS(call(TensorType::Q4_K, p, x, 256, 4, 2, ws, ws_bytes - 1), std::invalid_argument);
    CHECK_THROWS_AS(call(TensorType::Q4_K, p + 2, x, 256, 4, 2, ws, ws_bytes), std::invalid_argument);
    CHECK_THROWS_AS(call(TensorType::Q4_K, p, x, 256, 4, 2, ws + 16, ws_bytes), std::invalid_argument);
    CHECK_THROWS_AS(call(TensorType::Q4_K, p, x, 256, 4, 2, y, ws_bytes), std::invalid_argument);  // Y in it
    CHECK_THROWS_AS(kernels::dequantize_to_f16(TensorType::Q2_K, p, reinterpret_cast<uint16_t*>(ws), 256, 1, s),
                    std::invalid_argument);
    CHECK_THROWS_AS(kernels::dequantize_to_f16(TensorType::Q8_0, p, reinterpret_cast<uint16_t*>(ws), 48, 1, s),
                    std::invalid_argument);
    CHECK_THROWS_AS(kernels::dequantize_to_f16(TensorType::Q8_0, p, reinterpret_cast<uint16_t*>(p + 16), 64, 4, s),
                    std::invalid_argument);  // out overlaps W
    CHECK_THROWS_AS(kernels::GemmContext(p + 16, 4096, s), std::invalid_argument);
    try {
        call(TensorType::Q4_K, p, x, 256, 4, 2, ws, 100);
        FAIL("a 100-byte workspace was accepted");
    } catch (const std::invalid_argument& e) {
        CHECK_THAT(std::string(e.what()), test::contains("needs " + std::to_string(ws_bytes)));
    }
    LOOM_CUDA_CHECK(cudaStreamSynchronize(s));
}

namespace {

// Median of 20 timed runs of `fn` on `stream` (after 3 untimed), in microseconds, by CUDA events.
double median_us(cudaStream_t stream, const std::function<void()>& fn) {
    cudaEvent_t start, stop;
    LOOM_CUDA_CHECK(cudaEventCreate(&start));
    LOOM_CUDA_CHECK(cudaEventCreate(&stop));
    for (int i = 0; i < 3; ++i) fn();
    std::vector<float> ms(20);
    for (auto& t : ms) {
        LOOM_CUDA_CHECK(cudaEventRecord(start, stream));
        fn();
        LOOM_CUDA_CHECK(cudaEventRecord(stop, stream));
        LOOM_CUDA_CHECK(cudaEventSynchronize(stop));
        LOOM_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
    }
    LOOM_CUDA_CHECK(cudaEventDestroy(start));
    LOOM_CUDA_CHECK(cudaEventDestroy(stop));
    std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
    return 1e3 * ms[ms.size() / 2];
}

void time_gemm(Gemm& g, TensorType type, int n_in, int n_out, int n_rows) {
    const GemmCase c{type, n_in, n_out, n_rows, 9000};
    const auto [w, x] = kcases::gemm_inputs(c);
    DeviceBuffer<uint8_t> d_w(w.bytes);
    DeviceBuffer<float> d_x(x);
    DeviceBuffer<float> d_y(static_cast<size_t>(n_rows) * n_out);
    DeviceBuffer<uint8_t> d_ws(kernels::gemm_workspace_bytes(n_in, n_out, n_rows));
    DeviceBuffer<uint16_t> w16(static_cast<size_t>(n_out) * n_in), x16(static_cast<size_t>(n_rows) * n_in),
        x_lo(static_cast<size_t>(n_rows) * n_in);
    const cudaStream_t s = g.stream.get();
    d_y.poison();

    const double dequant_us =
        median_us(s, [&] { kernels::dequantize_to_f16(type, d_w.get(), w16.get(), n_in, n_out, s); });
    const double convert_us =
        median_us(s, [&] { kernels::dequantize_to_f16(TensorType::F32, d_x.get(), x16.get(), n_in, n_rows, s); });
    const double cublas_us = median_us(s, [&] {
        kernels::gemm_half(g.ctx, HalfType::f16, w16.get(), x16.get(), d_y.get(), n_in, n_out, n_rows, false, s);
    });
    const double split_us = median_us(
        s, [&] { kernels::split_to_f16(d_x.get(), x16.get(), x_lo.get(), static_cast<int64_t>(n_rows) * n_in, s); });
    const double total_us = median_us(s, [&] {
        kernels::gemm(g.ctx, type, d_w.get(), d_x.get(), d_y.get(), n_in, n_out, n_rows, d_ws.get(), d_ws.size(), s);
    });
    const double flop = kcases::gemm_flops(n_in, n_out, n_rows);
    const double w_gb = kcases::gemm_dequantize_bytes(type, n_in, n_out) / 1e9;
    std::printf(
        "[timing] gemm %s: dequantize W %.1f us (%.0f GB/s) + convert X %.1f us (split X %.1f us) + one cuBLAS "
        "product %.1f us (%.1f TFLOP/s) | whole gemm %.1f us (%.1f TFLOP/s)\n",
        c.name().c_str(), dequant_us, w_gb / (dequant_us * 1e-6), convert_us, split_us, cublas_us,
        flop / (cublas_us * 1e-6) / 1e12, total_us, flop / (total_us * 1e-6) / 1e12);
    CHECK(test::count_unwritten(d_y.download()) == 0);
}

}  // namespace

// F16 / BF16 weights skip the dequantization and run the split and two products instead (the whole gemm).
TEST_CASE("gemm timing: dequantize vs cuBLAS", "[gpu][gemm][timing]") {
    Gemm g;
    time_gemm(g, TensorType::Q4_1, 576, 1536, 512);    // SmolLM2 gate/up over a 512-token prompt
    time_gemm(g, TensorType::Q4_0, 4096, 14336, 512);  // Llama-3-8B gate/up
    time_gemm(g, TensorType::F16, 4096, 14336, 512);   // the same with F16 weights: split X, two products
}
