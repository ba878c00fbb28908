// Quantized matrix-vector products on the GPU (plain, normed, residual) against f64 references
// over the CPU-dequantized weights.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
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

// A random matrix of `type`: its bytes and its exact dequantized values.
struct QuantMatrix {
    std::vector<uint8_t> bytes;
    std::vector<float> values;
};

QuantMatrix random_matrix(TensorType type, int n_out, int n_in, uint32_t seed) {
    const uint64_t n = static_cast<uint64_t>(n_out) * n_in;
    const auto weights = test::random_normal(n, seed, 0.f, 0.05f);
    QuantMatrix m{std::vector<uint8_t>(gguf::tensor_bytes(type, n)), std::vector<float>(n)};
    gguf::quantize(type, weights.data(), m.bytes.data(), n);
    gguf::dequantize(type, m.bytes.data(), m.values.data(), n);
    return m;
}

// Y (n_vec, n_out) = W @ X^T in f64.
std::vector<double> reference_product(const QuantMatrix& m, const std::vector<double>& X, int n_out, int n_in, int n_vec) {
    std::vector<double> y(static_cast<size_t>(n_vec) * n_out);
    for (int t = 0; t < n_vec; ++t)
        for (int o = 0; o < n_out; ++o) {
            double sum = 0;
            for (int i = 0; i < n_in; ++i)
                sum += static_cast<double>(m.values[static_cast<size_t>(o) * n_in + i]) * X[static_cast<size_t>(t) * n_in + i];
            y[static_cast<size_t>(t) * n_out + o] = sum;
        }
    return y;
}

// rmsnorm(x) * w per vector of n, in f64.
std::vector<double> reference_norm(const std::vector<double>& x, const std::vector<float>& w, int n, double eps) {
    std::vector<double> out(x.size());
    for (size_t t = 0; t < x.size() / n; ++t) {
        double ss = 0;
        for (int i = 0; i < n; ++i) ss += x[t * n + i] * x[t * n + i];
        const double scale = 1.0 / std::sqrt(ss / n + eps);
        for (int i = 0; i < n; ++i) out[t * n + i] = x[t * n + i] * scale * w[static_cast<size_t>(i)];
    }
    return out;
}

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

constexpr float kEps = 1e-5f;

// The decode layer's fused chain: norm_inputs over x, a normed product A (n_mid, n), a residual
// product B (n, n_mid) into x, then a normed product of the new x: each output against f64.
void check_fused_chain(TensorType type, int n, int n_mid, int n_vec, uint32_t seed) {
    const std::string what = std::string(gguf::tensor_type_name(type)) + " n=" + std::to_string(n) + " mid=" +
                             std::to_string(n_mid) + " T=" + std::to_string(n_vec);
    INFO(what);
    const QuantMatrix A = random_matrix(type, n_mid, n, seed), B = random_matrix(type, n, n_mid, seed + 1);
    const auto x = test::random_uniform(static_cast<size_t>(n_vec) * n, seed + 2, -2.f, 2.f);
    const auto w1 = test::random_uniform(static_cast<size_t>(n), seed + 3, 0.5f, 1.5f);
    const auto w2 = test::random_uniform(static_cast<size_t>(n), seed + 4, 0.5f, 1.5f);
    const int n_sums = kernels::norm_partial_count(n);

    DeviceBuffer<uint8_t> d_a(A.bytes), d_b(B.bytes);
    DeviceBuffer<float> d_x(x), d_w1(w1), d_w2(w2);
    DeviceBuffer<float> d_xw(static_cast<size_t>(n_vec) * n), d_sums(static_cast<size_t>(n_vec) * n_sums);
    DeviceBuffer<float> d_mid(static_cast<size_t>(n_vec) * n_mid), d_out(static_cast<size_t>(n_vec) * n_mid);
    for (auto* b : {&d_xw, &d_sums, &d_mid, &d_out}) b->poison();
    test::TestStream stream;
    kernels::norm_inputs(d_x.get(), d_w1.get(), d_xw.get(), d_sums.get(), n_vec, n, stream.get());
    kernels::matvec_normed(type, d_a.get(), d_xw.get(), d_sums.get(), kEps, d_mid.get(), n, n_mid, n_vec, stream.get());
    const auto mid = d_mid.download();
    DeviceBuffer<float> d_act(static_cast<size_t>(n_vec) * n_mid / 2);
    d_act.poison();
    kernels::matvec_normed_swiglu(type, d_a.get(), d_xw.get(), d_sums.get(), kEps, d_act.get(), n, n_mid, n_vec,
                                  stream.get());
    const auto act = d_act.download();
    kernels::matvec_residual(type, d_b.get(), d_mid.get(), d_x.get(), d_w2.get(), d_xw.get(), d_sums.get(), n_mid, n,
                             n_vec, stream.get());
    const auto x_new = d_x.download(), xw_new = d_xw.download(), sums_new = d_sums.download();
    kernels::matvec_normed(type, d_a.get(), d_xw.get(), d_sums.get(), kEps, d_out.get(), n, n_mid, n_vec, stream.get());
    const auto out = d_out.download();

    // Each stage against f64 of the GPU's own input to it, so errors do not compound.
    const auto ref_mid = reference_product(A, reference_norm(widen(x), w1, n, kEps), n_mid, n, n_vec);
    std::vector<double> ref_act(act.size());  // A's rows in the pair layout: [gate 2j, gate 2j+1, up 2j, up 2j+1]
    for (int t = 0; t < n_vec; ++t)
        for (int j = 0; j < n_mid / 2; ++j) {
            const size_t g_at = static_cast<size_t>(t) * n_mid + 4 * (j / 2) + j % 2;
            const double g = ref_mid[g_at];
            ref_act[static_cast<size_t>(t) * (n_mid / 2) + j] = g / (1.0 + std::exp(-g)) * ref_mid[g_at + 2];
        }
    std::vector<double> ref_x = reference_product(B, widen(mid), n, n_mid, n_vec);
    for (size_t i = 0; i < ref_x.size(); ++i) ref_x[i] += x[i];
    std::vector<double> ref_xw(ref_x.size()), ref_sums(static_cast<size_t>(n_vec) * n_sums, 0.0);
    for (int t = 0; t < n_vec; ++t)
        for (int i = 0; i < n; ++i) {
            const size_t e = static_cast<size_t>(t) * n + i;
            ref_xw[e] = static_cast<double>(x_new[e]) * w2[static_cast<size_t>(i)];
            ref_sums[static_cast<size_t>(t) * n_sums + i / kernels::kNormRowsPerPartial] += static_cast<double>(x_new[e]) * x_new[e];
        }
    const auto ref_out = reference_product(A, reference_norm(widen(x_new), w2, n, kEps), n_mid, n, n_vec);
    const std::pair<const char*, double> errs[] = {{"normed", test::nmse(mid, ref_mid)},
                                                  {"normed swiglu", test::nmse(act, ref_act)},
                                                  {"residual", test::nmse(x_new, ref_x)},
                                                  {"residual xw", test::nmse(xw_new, ref_xw)},
                                                  {"residual sums", test::nmse(sums_new, ref_sums)},
                                                  {"normed after residual", test::nmse(out, ref_out)}};
    for (const auto& [stage, err] : errs) {
        test::report_nmse("matvec " + std::string(stage), what, err);
        INFO(stage);
        CHECK(err <= kMaxNmse);
    }
    CHECK(test::count_unwritten(out) == 0);
    CHECK(test::count_unwritten(act) == 0);
    CHECK(test::count_unwritten(sums_new) == 0);
    for (auto* b : {&d_xw, &d_sums, &d_mid, &d_out, &d_act}) CHECK(b->guard_intact());
}

// Vector t of an n_vec-vector call equals a one-vector call on vector t alone, bit for bit, in
// every mode: what lets a sequence decode the same tokens alone or batched.
void check_batch_invariance(TensorType type, int n_out, int n_in, int n_vec, uint32_t seed) {
    const std::string what = std::string(gguf::tensor_type_name(type)) + " " + std::to_string(n_out) + "x" +
                             std::to_string(n_in) + " T=" + std::to_string(n_vec);
    INFO(what);
    const QuantMatrix m = random_matrix(type, n_out, n_in, seed);
    const auto x = test::random_uniform(static_cast<size_t>(n_vec) * n_in, seed + 1, -1.f, 1.f);
    const auto r = test::random_uniform(static_cast<size_t>(n_vec) * n_out, seed + 2, -1.f, 1.f);
    const auto w = test::random_uniform(static_cast<size_t>(std::max(n_in, n_out)), seed + 3, 0.5f, 1.5f);
    const int in_sums = kernels::norm_partial_count(n_in), out_sums = kernels::norm_partial_count(n_out);
    DeviceBuffer<uint8_t> d_m(m.bytes);
    DeviceBuffer<float> d_x(x), d_w(w), d_y(static_cast<size_t>(n_vec) * n_out);
    DeviceBuffer<float> d_xw(static_cast<size_t>(n_vec) * n_in), d_in_sums(static_cast<size_t>(n_vec) * in_sums);
    DeviceBuffer<float> d_r(r), d_rw(static_cast<size_t>(n_vec) * n_out), d_out_sums(static_cast<size_t>(n_vec) * out_sums);
    test::TestStream stream;
    kernels::norm_inputs(d_x.get(), d_w.get(), d_xw.get(), d_in_sums.get(), n_vec, n_in, stream.get());

    // Runs all three modes on vectors [t0, t0 + count) and returns (plain, normed, r, rw, sums).
    const auto run = [&](int t0, int count) {
        const size_t xi = static_cast<size_t>(t0) * n_in, yi = static_cast<size_t>(t0) * n_out;
        std::vector<std::vector<float>> got;
        kernels::matvec(type, d_m.get(), d_x.get() + xi, d_y.get() + yi, n_in, n_out, count, stream.get());
        got.push_back(d_y.download());
        kernels::matvec_normed(type, d_m.get(), d_xw.get() + xi, d_in_sums.get() + static_cast<size_t>(t0) * in_sums,
                               kEps, d_y.get() + yi, n_in, n_out, count, stream.get());
        got.push_back(d_y.download());
        if (n_out % 4 == 0) {
            kernels::matvec_normed_swiglu(type, d_m.get(), d_xw.get() + xi,
                                          d_in_sums.get() + static_cast<size_t>(t0) * in_sums, kEps,
                                          d_y.get() + static_cast<size_t>(t0) * (n_out / 2), n_in, n_out, count,
                                          stream.get());
            std::vector<float> act = d_y.download();
            act.resize(static_cast<size_t>(n_vec) * (n_out / 2));
            got.push_back(act);
        }
        d_r.upload(r);
        kernels::matvec_residual(type, d_m.get(), d_x.get() + xi, d_r.get() + yi, d_w.get(), d_rw.get() + yi,
                                 d_out_sums.get() + static_cast<size_t>(t0) * out_sums, n_in, n_out, count, stream.get());
        got.push_back(d_r.download());
        got.push_back(d_rw.download());
        got.push_back(d_out_sums.download());
        return got;
    };
    const auto batched = run(0, n_vec);
    std::vector<std::vector<float>> alone(batched.size());
    for (int t = 0; t < n_vec; ++t) {
        const auto one = run(t, 1);
        for (size_t k = 0; k < one.size(); ++k) {
            const size_t per = one[k].size() / n_vec;
            alone[k].insert(alone[k].end(), one[k].begin() + static_cast<std::ptrdiff_t>(t * per),
                            one[k].begin() + static_cast<std::ptrdiff_t>((t + 1) * per));
        }
    }
    const std::vector<std::string> names = n_out % 4 == 0
        ? std::vector<std::string>{"plain", "normed", "normed swiglu", "residual", "residual xw", "residual sums"}
        : std::vector<std::string>{"plain", "normed", "residual", "residual xw", "residual sums"};
    for (size_t k = 0; k < batched.size(); ++k) {
        INFO(names[k]);
        CHECK(test::count_unwritten(batched[k]) == 0);
        CHECK(test::count_mismatches(batched[k], alone[k]) == 0);
    }
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

TEST_CASE("matvec with up to 32 vectors (batched decode) matches the f64 reference", "[gpu][matvec]") {
    uint32_t seed = 4500;
    for (const auto type : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q6_K,
                            TensorType::F16}) {
        check_matvec(type, 576, 1536, 32, seed++);
        check_matvec(type, 1536, 512, 12, seed++);
        check_matvec(type, 131, 256, 9, seed++);
    }
    check_matvec(TensorType::F16, 37, 33, 32, seed++);  // the unaligned path
    check_matvec(TensorType::F32, 64, 172, 17, seed++);
}

TEST_CASE("matvec's fused RMSNorm and residual modes match the f64 reference", "[gpu][matvec]") {
    uint32_t seed = 5000;
    for (const auto type : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0,
                            TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K, TensorType::F16, TensorType::BF16}) {
        const bool k_quant = gguf::tensor_type_info(type).block_elems == 256;
        check_fused_chain(type, k_quant ? 768 : 576, 1536, 1, seed += 10);  // SmolLM2's width: gate_up then down
        check_fused_chain(type, 512, 256, 7, seed += 10);
        check_fused_chain(type, 768, 512, 32, seed += 10);
    }
    check_fused_chain(TensorType::Q4_0, 4096, 1024, 2, seed += 10);  // the 8B width
    check_fused_chain(TensorType::F32, 64, 172, 3, seed += 10);      // stories260K's shapes
    check_fused_chain(TensorType::F16, 64, 172, 4, seed += 10);      // rows of 172 halves: the unaligned path
    check_fused_chain(TensorType::F16, 66, 40, 5, seed += 10);       // 66 rows: a last partial of 2
}

TEST_CASE("matvec gives each vector the same bits alone or batched, in every mode", "[gpu][matvec]") {
    check_batch_invariance(TensorType::Q4_1, 576, 576, 32, 6000);
    check_batch_invariance(TensorType::Q8_0, 131, 512, 8, 6001);
    check_batch_invariance(TensorType::Q4_K, 256, 512, 19, 6002);
    check_batch_invariance(TensorType::F16, 37, 36, 5, 6003);  // the unaligned path
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
    CHECK_THROWS_AS(kernels::matvec(TensorType::Q4_K, p, p, p + 2048, 256, 1, kernels::kMaxMatvecVectors + 1, nullptr),
                    std::invalid_argument);
    CHECK_THROWS_AS(kernels::matvec(TensorType::Q4_K, p, p, p + 2048, 256, 1, 0, nullptr), std::invalid_argument);
    CHECK_THROWS_AS(kernels::matvec(TensorType::Q8_0, reinterpret_cast<char*>(p) + 2, p + 1024, p + 2048, 32, 1, 1,
                                    nullptr),
                    std::invalid_argument);
}
