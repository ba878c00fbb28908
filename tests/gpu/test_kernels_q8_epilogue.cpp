// The residual epilogue a q8 product (which writes plain Y) needs, residual_norm_inputs (kernels/matvec.h):
// against a CPU reference bit for bit (the device rounds every op explicitly; this file is compiled with
// -ffp-contract=off), and against matvec_residual, whose R, RW and S it must equal given the same sums;
// and its fusion with the next product's x quantization (q8_residual_quantize_normed) against the two calls.
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "gguf/tensor_type.h"
#include "kernel_test_support.h"
#include "kernels/matvec.h"
#include "kernels/q8_matmul.h"

using namespace loom;
using gguf::TensorType;
using test::DeviceBuffer;

namespace {

struct NormInputs {
    std::vector<float> R, RW, S;
};

// R (n_vec, n) += Y; RW = R ⊙ w; S[t][p] = ((0 + r0²) + r1²) + ... over the partial's kNormRowsPerPartial elements.
NormInputs residual_norm_inputs_ref(std::vector<float> R, const std::vector<float>& Y, const std::vector<float>& w,
                                    int n_vec, int n) {
    const int n_partials = kernels::norm_partial_count(n);
    NormInputs out{std::move(R), std::vector<float>(Y.size()),
                   std::vector<float>(static_cast<size_t>(n_vec) * n_partials)};
    for (int t = 0; t < n_vec; ++t)
        for (int p = 0; p < n_partials; ++p) {
            float s = 0;
            for (int k = 0; k < kernels::kNormRowsPerPartial; ++k) {
                const int j = p * kernels::kNormRowsPerPartial + k;
                if (j >= n) continue;
                const size_t e = static_cast<size_t>(t) * n + j;
                const float r = out.R[e] + Y[e];
                out.R[e] = r;
                out.RW[e] = r * w[static_cast<size_t>(j)];
                s += r * r;
            }
            out.S[static_cast<size_t>(t) * n_partials + p] = s;
        }
    return out;
}

size_t bit_mismatches(const std::vector<float>& a, const std::vector<float>& b) {
    size_t bad = a.size() != b.size();
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) bad += std::memcmp(&a[i], &b[i], 4) != 0;
    return bad;
}

// Device buffers of one residual_norm_inputs call: R uploaded, RW and S poisoned.
struct DeviceNormInputs {
    DeviceBuffer<float> R, RW, S;
    DeviceNormInputs(const std::vector<float>& r, int n_vec, int n)
        : R(r), RW(r.size()), S(static_cast<size_t>(n_vec) * kernels::norm_partial_count(n)) {
        RW.poison();
        S.poison();
    }
    void check_against(const NormInputs& want) const {
        CHECK(bit_mismatches(R.download(), want.R) == 0);  // max |Δ| = 0
        CHECK(bit_mismatches(RW.download(), want.RW) == 0);
        CHECK(bit_mismatches(S.download(), want.S) == 0);
        CHECK(R.guard_intact());
        CHECK(RW.guard_intact());
        CHECK(S.guard_intact());
    }
};

// Poisoned device buffers for the x quantization of (n_vec, n).
struct QuantizedX {
    DeviceBuffer<int8_t> q;
    DeviceBuffer<kernels::q8::XMeta> meta;
    QuantizedX(int n_vec, int n) : q(kernels::q8_xq_bytes(n_vec, n)), meta(kernels::q8_xmeta_count(n_vec, n)) {
        q.poison();
        meta.poison();
    }
};

}  // namespace

TEST_CASE("residual_norm_inputs equals its CPU reference bit for bit", "[gpu][q8]") {
    test::TestStream stream;
    uint32_t seed = 500;
    for (const auto& [n_vec, n] : {std::pair{1, 4096}, {13, 1030}, {32, 4096}, {512, 896}, {3, 7}}) {
        INFO("n_vec " << n_vec << " n " << n);
        const size_t count = static_cast<size_t>(n_vec) * n;
        const auto R = test::random_uniform(count, seed++, -3.f, 3.f);
        const auto Y = test::random_uniform(count, seed++, -1.f, 1.f);
        const auto w = test::random_uniform(static_cast<size_t>(n), seed++, 0.5f, 1.5f);
        DeviceBuffer<float> d_y(Y), d_w(w);
        DeviceNormInputs d(R, n_vec, n);
        kernels::residual_norm_inputs(d.R.get(), d_y.get(), d_w.get(), d.RW.get(), d.S.get(), n_vec, n, stream.get());
        d.check_against(residual_norm_inputs_ref(R, Y, w, n_vec, n));
        CHECK(d_y.guard_intact());
    }
}

// A plain product then residual_norm_inputs gives the bits of matvec_residual, the epilogue fused today.
TEST_CASE("matvec then residual_norm_inputs equals matvec_residual bit for bit", "[gpu][q8]") {
    test::TestStream stream;
    uint32_t seed = 600;
    for (const TensorType t : {TensorType::Q4_0, TensorType::Q6_K})
        for (const auto& [n_vec, n_out] : {std::pair{1, 4096}, {8, 1030}, {32, 2048}}) {
            INFO(gguf::tensor_type_name(t) << " n_vec " << n_vec << " n_out " << n_out);
            const int n_in = 1024;
            const auto W = kcases::random_matrix(t, n_out, n_in, seed++);
            const auto X = test::random_uniform(static_cast<size_t>(n_vec) * n_in, seed++, -1.f, 1.f);
            const auto R = test::random_uniform(static_cast<size_t>(n_vec) * n_out, seed++, -3.f, 3.f);
            const auto w = test::random_uniform(static_cast<size_t>(n_out), seed++, 0.5f, 1.5f);
            DeviceBuffer<uint8_t> d_w_q(W.bytes);
            DeviceBuffer<float> d_x(X), d_w(w), d_y(R.size());
            d_y.poison();
            DeviceNormInputs fused(R, n_vec, n_out), split(R, n_vec, n_out);
            kernels::matvec_residual(t, d_w_q.get(), d_x.get(), fused.R.get(), d_w.get(), fused.RW.get(), fused.S.get(),
                                     n_in, n_out, n_vec, stream.get());
            kernels::matvec(t, d_w_q.get(), d_x.get(), d_y.get(), n_in, n_out, n_vec, stream.get());
            kernels::residual_norm_inputs(split.R.get(), d_y.get(), d_w.get(), split.RW.get(), split.S.get(), n_vec,
                                          n_out, stream.get());
            CHECK(test::count_unwritten(d_y.download()) == 0);
            split.check_against({fused.R.download(), fused.RW.download(), fused.S.download()});
        }
}

TEST_CASE("residual_norm_inputs rejects bad sizes and overlaps, naming the value", "[gpu][q8]") {
    test::TestStream stream;
    DeviceBuffer<float> a(64), b(64), w(16), rw(64), s(16);
    const auto call = [&](float* R, const float* Y, int n_vec, int n) {
        kernels::residual_norm_inputs(R, Y, w.get(), rw.get(), s.get(), n_vec, n, stream.get());
    };
    CHECK_THROWS_WITH(call(a.get(), b.get(), -1, 16), test::contains("n_vec -1"));
    CHECK_THROWS_WITH(call(a.get(), b.get(), 4, 0), test::contains("n 0"));
    CHECK_THROWS_WITH(call(a.get(), a.get() + 8, 4, 16), test::contains("overlaps"));
}

// Decode rows between two q8 products: one launch against residual_norm_inputs then q8_quantize_x_normed,
// R, xq and xmeta bit for bit; outputs poisoned, guards checked.
TEST_CASE("q8_residual_quantize_normed equals residual_norm_inputs then q8_quantize_x_normed bit for bit",
          "[gpu][q8]") {
    test::TestStream stream;
    uint32_t seed = 700;
    const float eps = 1e-5f;
    for (const auto& [n_vec, n] : {std::pair{1, 4096}, {3, 128}, {32, 4096}, {13, 8192}, {64, 1536}}) {
        INFO("n_vec " << n_vec << " n " << n);
        const size_t count = static_cast<size_t>(n_vec) * n;
        auto R = test::random_uniform(count, seed++, -3.f, 3.f);
        const auto Y = test::random_uniform(count, seed++, -1.f, 1.f);
        const auto w = test::random_uniform(static_cast<size_t>(n), seed++, 0.5f, 1.5f);
        for (int j = 64; j < 96; ++j) R[j] = -Y[j];  // vector 0's unit 2 sums to zeros: its d is 0
        DeviceBuffer<float> d_y(Y), d_w(w), fused_r(R);
        DeviceNormInputs split(R, n_vec, n);
        QuantizedX split_x(n_vec, n), fused_x(n_vec, n);
        kernels::residual_norm_inputs(split.R.get(), d_y.get(), d_w.get(), split.RW.get(), split.S.get(), n_vec, n,
                                      stream.get());
        kernels::q8_quantize_x_normed(split.RW.get(), split.S.get(), eps, split_x.q.get(), split_x.meta.get(), n_vec, n,
                                      stream.get());
        kernels::q8_residual_quantize_normed(fused_r.get(), d_y.get(), d_w.get(), eps, fused_x.q.get(),
                                             fused_x.meta.get(), n_vec, n, stream.get());
        CHECK(bit_mismatches(fused_r.download(), split.R.download()) == 0);  // max |Δ| = 0
        CHECK(fused_x.q.download() == split_x.q.download());
        const auto fm = fused_x.meta.download(), sm = split_x.meta.download();
        CHECK(std::memcmp(fm.data(), sm.data(), fm.size() * sizeof(kernels::q8::XMeta)) == 0);
        CHECK(fused_r.guard_intact());
        CHECK(fused_x.q.guard_intact());
        CHECK(fused_x.meta.guard_intact());
        CHECK(d_y.guard_intact());
    }
}

TEST_CASE("q8_residual_quantize_normed rejects bad sizes and overlaps, naming the value", "[gpu][q8]") {
    test::TestStream stream;
    const int n = kernels::kQ8ResidualMaxN + 128;
    DeviceBuffer<float> a(2 * n), b(2 * n), w(n);
    DeviceBuffer<int8_t> xq(kernels::q8_xq_bytes(2, n));
    DeviceBuffer<kernels::q8::XMeta> xm(kernels::q8_xmeta_count(2, n));
    const auto call = [&](float* R, const float* Y, int n_vec, int width) {
        kernels::q8_residual_quantize_normed(R, Y, w.get(), 1e-5f, xq.get(), xm.get(), n_vec, width, stream.get());
    };
    CHECK_THROWS_WITH(call(a.get(), b.get(), 0, 128), test::contains("n_vec 0"));
    CHECK_THROWS_WITH(call(a.get(), b.get(), 1, 100), test::contains("n 100"));
    CHECK_THROWS_WITH(call(a.get(), b.get(), 1, n), test::contains("n " + std::to_string(n) + " is above"));
    CHECK_THROWS_WITH(call(a.get(), a.get() + 64, 2, 128), test::contains("overlaps"));
    CHECK_THROWS_WITH(call(a.get() + 2, b.get(), 1, 128), test::contains("R is not 16-byte aligned"));
    CHECK_THROWS_WITH(call(a.get(), b.get() + 1, 1, 128), test::contains("Y is not 16-byte aligned"));
}
