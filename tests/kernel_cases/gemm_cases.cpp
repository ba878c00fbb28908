// Matrix product cases: the tests' shapes, inputs, the f64 references, bytes and FLOPs.
#include "kernel_cases/gemm_cases.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <iterator>
#include <functional>
#include <thread>

#include "gguf/half.h"

namespace loom::kcases {

using gguf::TensorType;

namespace {

float round_to_f16(float v) { return gguf::half_to_float(gguf::float_to_half(v)); }

// fn(i) for i in [0, n), split over the host's cores (the f64 references are the slow part of a run).
void parallel_for(int64_t n, const std::function<void(int64_t)>& fn) {
    const int64_t n_threads = std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::thread> threads;
    for (int64_t t = 0; t < n_threads; ++t)
        threads.emplace_back([&, t] {
            for (int64_t i = t; i < n; i += n_threads) fn(i);
        });
    for (auto& th : threads) th.join();
}

}  // namespace

const std::vector<TensorType>& gemm_types() {
    static const std::vector<TensorType> types = {
        TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0,
        TensorType::Q5_1, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K};
    return types;
}

std::string GemmCase::name() const {
    return std::string(gguf::tensor_type_name(type)) + " " + std::to_string(n_rows) + "x" + std::to_string(n_in) +
           "->" + std::to_string(n_out);
}

std::vector<GemmCase> gemm_test_cases() {
    std::vector<GemmCase> cases;
    uint32_t seed = 6000;
    for (const auto type : gemm_types()) {
        // SmolLM2 gate/up, a few rows (K-quants take 768: 576 is no multiple of their 256-element blocks).
        const bool k_quant = gguf::tensor_type_info(type).block_elems == 256;
        cases.push_back({type, k_quant ? 768 : 576, 1536, 9, seed++});
        cases.push_back({type, 1536, 576, 64, seed++});  // SmolLM2 down
    }
    cases.push_back({TensorType::Q4_0, 576, 576, 1, seed++});  // one row
    cases.push_back({TensorType::Q8_0, 576, 576, 1, seed++});
    cases.push_back({TensorType::F32, 64, 172, 3, seed++});  // stories260K-sized
    cases.push_back({TensorType::F32, 33, 37, 5, seed++});   // odd leading dimensions
    cases.push_back({TensorType::F16, 33, 37, 5, seed++});
    cases.push_back({TensorType::Q4_K, 256, 131, 7, seed++});
    return cases;
}

std::vector<GemmCase> gemm_prefill_cases() {
    return {{TensorType::Q4_1, 576, 1536, 512, 7000}, {TensorType::Q4_K, 1536, 576, 512, 7001},
            {TensorType::Q8_0, 576, 49152, 64, 7002},                                             // output projection
            {TensorType::F16, 576, 49152, 9, 7003},   {TensorType::Q4_0, 4096, 14336, 1, 7004},   // Llama-3-8B gate/up
            {TensorType::Q4_0, 4096, 14336, 9, 7005}, {TensorType::Q6_K, 14336, 4096, 9, 7006}};  // and down
}

std::vector<NamedGemmCase> gemm_bench_cases(const BenchModel& m) {
    const int rows = kBenchTokens[std::size(kBenchTokens) - 1];
    std::vector<NamedGemmCase> cases;
    for (const auto& mat : synth_matrices(m)) {
        std::string type(gguf::tensor_type_name(mat.type));
        for (auto& ch : type) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        cases.push_back(
            {mat.role + "/" + type + "/rows:" + std::to_string(rows), {mat.type, mat.n_in, mat.n_out, rows, 8}});
    }
    return cases;
}

GemmInputs gemm_inputs(const GemmCase& c) {
    return {random_matrix(c.type, c.n_out, c.n_in, c.seed), gemm_activations(c)};
}

std::vector<float> gemm_activations(const GemmCase& c) {
    return random_uniform(static_cast<size_t>(c.n_rows) * c.n_in, c.seed + 1, -1.f, 1.f);
}

GemmReference gemm_reference(const std::vector<float>& w, const std::vector<float>& x, int n_in, int n_out,
                             int n_rows) {
    std::vector<float> w16(w.size()), x16(x.size());
    std::transform(w.begin(), w.end(), w16.begin(), round_to_f16);
    std::transform(x.begin(), x.end(), x16.begin(), round_to_f16);
    const auto n = static_cast<int64_t>(n_rows) * n_out;
    GemmReference ref{std::vector<double>(n), std::vector<double>(n)};
    parallel_for(n, [&](int64_t i) {
        const int64_t r = i / n_out, o = i % n_out;
        const float* wr = w.data() + o * n_in;
        const float* wr16 = w16.data() + o * n_in;
        const float* xr = x.data() + r * n_in;
        const float* xr16 = x16.data() + r * n_in;
        double exact = 0, f16 = 0;
        for (int k = 0; k < n_in; ++k) {
            exact += static_cast<double>(wr[k]) * xr[k];
            f16 += static_cast<double>(wr16[k]) * xr16[k];
        }
        ref.exact[i] = exact;
        ref.f16[i] = f16;
    });
    return ref;
}

SplitHalves split_reference(kernels::HalfType type, const std::vector<float>& x) {
    const bool f16 = type == kernels::HalfType::f16;
    const auto round = [f16](float v) { return f16 ? gguf::float_to_half(v) : gguf::float_to_bf16(v); };
    const auto widen = [f16](uint16_t h) { return f16 ? gguf::half_to_float(h) : gguf::bf16_to_float(h); };
    SplitHalves out{std::vector<uint16_t>(x.size()), std::vector<uint16_t>(x.size())};
    for (size_t i = 0; i < x.size(); ++i) {
        out.hi[i] = round(x[i]);
        const float hi = widen(out.hi[i]);
        out.lo[i] = std::isinf(hi) ? round(0.f) : round(x[i] - hi);
    }
    return out;
}

double split_value(kernels::HalfType type, uint16_t hi, uint16_t lo) {
    if (type == kernels::HalfType::f16) return double(gguf::half_to_float(hi)) + gguf::half_to_float(lo);
    return double(gguf::bf16_to_float(hi)) + gguf::bf16_to_float(lo);
}

double split_error_bound(kernels::HalfType type, float x) {
    const double a = std::abs(double(x));
    return type == kernels::HalfType::f16 ? std::max(std::ldexp(a, -22), std::ldexp(1.0, -25)) : std::ldexp(a, -16);
}

std::vector<float> split_inputs(size_t n, uint32_t seed) {
    std::vector<float> v = {65504.f,
                            -65504.f,
                            65519.f,
                            65520.f,
                            -7e4f,
                            1.f + std::ldexp(1.f, -11),
                            1.f + 3 * std::ldexp(1.f, -11),
                            1.f + std::ldexp(1.f, -23),
                            std::ldexp(1.f, -14),
                            std::ldexp(1.f, -24),
                            -std::ldexp(3.f, -26),
                            1e-30f};
    const auto normal = random_normal(n, seed, 0.f, 1.f);
    for (size_t i = 0; v.size() < n; ++i) v.push_back(std::ldexp(normal[i], static_cast<int>(i % 46) - 30));
    v.resize(n);
    return v;
}

double gemm_flops(int n_in, int n_out, int n_rows) { return 2.0 * n_rows * n_in * n_out; }

double gemm_dequantize_bytes(TensorType type, int n_in, int n_out) {
    const auto n = static_cast<uint64_t>(n_in) * n_out;
    return static_cast<double>(gguf::tensor_bytes(type, n)) + 2.0 * static_cast<double>(n);
}

double gemm_bytes(TensorType type, int n_in, int n_out, int n_rows) {
    const double x = static_cast<double>(n_rows) * n_in, w = static_cast<double>(n_in) * n_out;
    const double y_written = 4.0 * n_rows * static_cast<double>(n_out);
    if (type == TensorType::F32) return 4.0 * w + 4.0 * x + y_written;
    if (type == TensorType::F16 || type == TensorType::BF16)
        return 2 * 2.0 * w + (4.0 + 2 * (2.0 + 2.0)) * x + 3 * y_written;
    return gemm_dequantize_bytes(type, n_in, n_out) + 2.0 * w + (4.0 + 2.0 + 2.0) * x + y_written;
}

}  // namespace loom::kcases
