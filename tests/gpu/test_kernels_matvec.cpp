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
#include "gguf/tensor_type.h"
#include "kernel_cases/matvec_cases.h"
#include "kernel_test_support.h"
#include "kernels/matvec.h"

using namespace loom;
using gguf::TensorType;
using test::DeviceBuffer;

namespace {

using kcases::FusedChainCase;
using kcases::kMatvecEps;
using kcases::kMatvecMaxNmse;
using kcases::MatvecCase;
using kcases::QuantMatrix;

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

void check_matvec(const MatvecCase& c) {
    const std::string what = c.name();
    INFO(what);
    const auto in = kcases::matvec_inputs(c);
    DeviceBuffer<uint8_t> d_w(in.w.bytes);
    DeviceBuffer<float> d_x(in.x);
    DeviceBuffer<float> d_y(static_cast<size_t>(c.n_vec) * c.n_out);
    d_y.poison();
    test::TestStream stream;
    kernels::matvec(c.type, d_w.get(), d_x.get(), d_y.get(), c.n_in, c.n_out, c.n_vec, stream.get());
    const auto y = d_y.download();

    const auto ref = kcases::matvec_reference(in.w, widen(in.x), c.n_out, c.n_in, c.n_vec);
    const double err = test::nmse(y, ref);
    test::report_nmse("matvec", what, err);
    CHECK(test::count_unwritten(y) == 0);
    CHECK(d_y.guard_intact());
    CHECK(err <= kMatvecMaxNmse);
}

// The decode layer's fused chain: norm_inputs over x, a normed product A (n_mid, n), a residual
// product B (n, n_mid) into x, then a normed product of the new x: each output against f64.
void check_fused_chain(const FusedChainCase& c) {
    const TensorType type = c.type;
    const int n = c.n, n_mid = c.n_mid, n_vec = c.n_vec;
    const uint32_t seed = c.seed;
    const std::string what = c.name();
    INFO(what);
    const QuantMatrix A = kcases::random_matrix(type, n_mid, n, seed),
                      B = kcases::random_matrix(type, n, n_mid, seed + 1);
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
    kernels::matvec_normed(type, d_a.get(), d_xw.get(), d_sums.get(), kMatvecEps, d_mid.get(), n, n_mid, n_vec,
                           stream.get());
    const auto mid = d_mid.download();
    DeviceBuffer<float> d_act(static_cast<size_t>(n_vec) * n_mid / 2);
    d_act.poison();
    kernels::matvec_normed_swiglu(type, d_a.get(), d_xw.get(), d_sums.get(), kMatvecEps, d_act.get(), n, n_mid, n_vec,
                                  stream.get());
    const auto act = d_act.download();
    kernels::matvec_residual(type, d_b.get(), d_mid.get(), d_x.get(), d_w2.get(), d_xw.get(), d_sums.get(), n_mid, n,
                             n_vec, stream.get());
    const auto x_new = d_x.download(), xw_new = d_xw.download(), sums_new = d_sums.download();
    kernels::matvec_normed(type, d_a.get(), d_xw.get(), d_sums.get(), kMatvecEps, d_out.get(), n, n_mid, n_vec,
                           stream.get());
    const auto out = d_out.download();

    // Each stage against f64 of the GPU's own input to it, so errors do not compound.
    const auto ref_mid =
        kcases::matvec_reference(A, kcases::rmsnorm_reference_f64(widen(x), w1, n, kMatvecEps), n_mid, n, n_vec);
    std::vector<double> ref_act(act.size());  // A's rows in the pair layout: [gate 2j, gate 2j+1, up 2j, up 2j+1]
    for (int t = 0; t < n_vec; ++t)
        for (int j = 0; j < n_mid / 2; ++j) {
            const size_t g_at = static_cast<size_t>(t) * n_mid + 4 * (j / 2) + j % 2;
            const double g = ref_mid[g_at];
            ref_act[static_cast<size_t>(t) * (n_mid / 2) + j] = g / (1.0 + std::exp(-g)) * ref_mid[g_at + 2];
        }
    std::vector<double> ref_x = kcases::matvec_reference(B, widen(mid), n, n_mid, n_vec);
    for (size_t i = 0; i < ref_x.size(); ++i) ref_x[i] += x[i];
    std::vector<double> ref_xw(ref_x.size()), ref_sums(static_cast<size_t>(n_vec) * n_sums, 0.0);
    for (int t = 0; t < n_vec; ++t)
        for (int i = 0; i < n; ++i) {
            const size_t e = static_cast<size_t>(t) * n + i;
            ref_xw[e] = static_cast<double>(x_new[e]) * w2[static_cast<size_t>(i)];
            ref_sums[static_cast<size_t>(t) * n_sums + i / kernels::kNormRowsPerPartial] +=
                static_cast<double>(x_new[e]) * x_new[e];
        }
    const auto ref_out =
        kcases::matvec_reference(A, kcases::rmsnorm_reference_f64(widen(x_new), w2, n, kMatvecEps), n_mid, n, n_vec);
    const std::pair<const char*, double> errs[] = {{"normed", test::nmse(mid, ref_mid)},
                                                   {"normed swiglu", test::nmse(act, ref_act)},
                                                   {"residual", test::nmse(x_new, ref_x)},
                                                   {"residual xw", test::nmse(xw_new, ref_xw)},
                                                   {"residual sums", test::nmse(sums_new, ref_sums)},
                                                   {"normed after residual", test::nmse(out, ref_out)}};
    for (const auto& [stage, err] : errs) {
        test::report_nmse("matvec " + std::string(stage), what, err);
        INFO(stage);
        CHECK(err <= kMatvecMaxNmse);
    }
    CHECK(test::count_unwritten(out) == 0);
    CHECK(test::count_unwritten(act) == 0);
    CHECK(test::count_unwritten(sums_new) == 0);
    for (auto* b : {&d_xw, &d_sums, &d_mid, &d_out, &d_act}) CHECK(b->guard_intact());
}

// Vector t of an n_vec-vector call equals a one-vector call on vector t alone, bit for bit, in
// every mode: what lets a sequence decode the same tokens alone or batched.
void check_batch_invariance(const MatvecCase& c) {
    const TensorType type = c.type;
    const int n_out = c.n_out, n_in = c.n_in, n_vec = c.n_vec;
    const uint32_t seed = c.seed;
    INFO(c.name());
    const QuantMatrix m = kcases::random_matrix(type, n_out, n_in, seed);
    const auto x = test::random_uniform(static_cast<size_t>(n_vec) * n_in, seed + 1, -1.f, 1.f);
    const auto r = test::random_uniform(static_cast<size_t>(n_vec) * n_out, seed + 2, -1.f, 1.f);
    const auto w = test::random_uniform(static_cast<size_t>(std::max(n_in, n_out)), seed + 3, 0.5f, 1.5f);
    const int in_sums = kernels::norm_partial_count(n_in), out_sums = kernels::norm_partial_count(n_out);
    DeviceBuffer<uint8_t> d_m(m.bytes);
    DeviceBuffer<float> d_x(x), d_w(w), d_y(static_cast<size_t>(n_vec) * n_out);
    DeviceBuffer<float> d_xw(static_cast<size_t>(n_vec) * n_in), d_in_sums(static_cast<size_t>(n_vec) * in_sums);
    DeviceBuffer<float> d_r(r), d_rw(static_cast<size_t>(n_vec) * n_out),
        d_out_sums(static_cast<size_t>(n_vec) * out_sums);
    test::TestStream stream;
    kernels::norm_inputs(d_x.get(), d_w.get(), d_xw.get(), d_in_sums.get(), n_vec, n_in, stream.get());

    // Runs all three modes on vectors [t0, t0 + count) and returns (plain, normed, r, rw, sums).
    const auto run = [&](int t0, int count) {
        const size_t xi = static_cast<size_t>(t0) * n_in, yi = static_cast<size_t>(t0) * n_out;
        std::vector<std::vector<float>> got;
        kernels::matvec(type, d_m.get(), d_x.get() + xi, d_y.get() + yi, n_in, n_out, count, stream.get());
        got.push_back(d_y.download());
        kernels::matvec_normed(type, d_m.get(), d_xw.get() + xi, d_in_sums.get() + static_cast<size_t>(t0) * in_sums,
                               kMatvecEps, d_y.get() + yi, n_in, n_out, count, stream.get());
        got.push_back(d_y.download());
        if (n_out % 4 == 0) {
            kernels::matvec_normed_swiglu(
                type, d_m.get(), d_xw.get() + xi, d_in_sums.get() + static_cast<size_t>(t0) * in_sums, kMatvecEps,
                d_y.get() + static_cast<size_t>(t0) * (n_out / 2), n_in, n_out, count, stream.get());
            std::vector<float> act = d_y.download();
            act.resize(static_cast<size_t>(n_vec) * (n_out / 2));
            got.push_back(act);
        }
        d_r.upload(r);
        kernels::matvec_residual(type, d_m.get(), d_x.get() + xi, d_r.get() + yi, d_w.get(), d_rw.get() + yi,
                                 d_out_sums.get() + static_cast<size_t>(t0) * out_sums, n_in, n_out, count,
                                 stream.get());
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
    const std::vector<std::string> names =
        n_out % 4 == 0
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
    for (const auto& c : kcases::matvec_block32_cases()) check_matvec(c);
}

TEST_CASE("matvec with K-quant super-blocks matches the f64 reference", "[gpu][matvec]") {
    for (const auto& c : kcases::matvec_kquant_cases()) check_matvec(c);
}

TEST_CASE("matvec with F16 and BF16 weights matches the f64 reference, aligned or not", "[gpu][matvec]") {
    for (const auto& c : kcases::matvec_half_cases()) check_matvec(c);
}

TEST_CASE("matvec with F32 weights matches the f64 reference, aligned or not", "[gpu][matvec]") {
    for (const auto& c : kcases::matvec_f32_cases()) check_matvec(c);
}

TEST_CASE("matvec over the SmolLM2 output projection (49152 x 576)", "[gpu][matvec]") {
    for (const auto& c : kcases::matvec_output_cases()) check_matvec(c);
}

TEST_CASE("matvec with up to 32 vectors (batched decode) matches the f64 reference", "[gpu][matvec]") {
    for (const auto& c : kcases::matvec_batched_cases()) check_matvec(c);
}

// The shapes kernel_bench times for SmolLM2-135M, every synth type, checked as it runs them.
TEST_CASE("matvec at kernel_bench's SmolLM2 shapes matches the f64 reference", "[gpu][matvec][bench_shapes]") {
    for (const auto& named : kcases::matvec_bench_cases(kcases::bench_model("smollm2-135m"))) check_matvec(named.c);
}

TEST_CASE("matvec's fused RMSNorm and residual modes match the f64 reference", "[gpu][matvec]") {
    for (const auto& c : kcases::fused_chain_cases()) check_fused_chain(c);
}

TEST_CASE("matvec gives each vector the same bits alone or batched, in every mode", "[gpu][matvec]") {
    for (const auto& c : kcases::matvec_batch_invariance_cases()) check_batch_invariance(c);
}

TEST_CASE("matvec rejects what it cannot do", "[gpu][matvec]") {
    DeviceBuffer<float> buf(4096);
    float* p = buf.get();
    for (const auto type : {TensorType::BF16, TensorType::Q5_1, TensorType::Q5_K})
        CHECK(kernels::matvec_supports(type));
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
    CHECK_THROWS_AS(
        kernels::matvec(TensorType::Q8_0, reinterpret_cast<char*>(p) + 2, p + 1024, p + 2048, 32, 1, 1, nullptr),
        std::invalid_argument);
}
