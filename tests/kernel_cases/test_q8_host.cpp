// The q8 family's host side (kernels/q8_repack.h), no GPU: the repack round trip, the fp16 dequantization
// reference, the positions and the slot tree, x quantization (plain, RMS-normed, of SwiGLU), and the canonical-order
// product against f64 references with stated bounds. The device kernels are held to this reference bit for
// bit in tests/gpu/test_kernels_q8*.cpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch.hpp"
#include "gguf/half.h"
#include "gguf/tensor_type.h"
#include "kernel_cases/elementwise_cases.h"
#include "kernel_cases/inputs.h"
#include "kernel_cases/matvec_cases.h"
#include "kernels/matvec.h"
#include "kernels/q8_repack.h"

using namespace loom;
using gguf::TensorType;
using kernels::Q8Layout;
using kernels::Q8X;
namespace q8 = kernels::q8;

namespace {

// A shape not a multiple of 1024 (a partial last pass of the rows kernel) for each type.
int short_n_in(TensorType t) { return q8::is_k_quant(t) ? 768 : 384; }

std::string name(TensorType t, int rows, int n_in) {
    return std::string(gguf::tensor_type_name(t)) + " " + std::to_string(rows) + "x" + std::to_string(n_in);
}

// m_i of the bound below: |w_i|, or where the kernel adds w_i x̂_i as two parts (Q4_1: d q + m; Q4_K/Q5_K:
// d sc q - dmin m) the sum of their magnitudes.
double unfolded(const Q8Layout& l, const uint8_t* packed, int row, int i, double w) {
    const int u = i / q8::kUnit;
    const uint32_t um = q8::unit_word(l, packed, row, u), sm = q8::super_word(l, packed, row, u);
    if (l.type == TensorType::Q4_1) {
        const double d = q8::half_bits(static_cast<uint16_t>(um & 0xFFFFu));
        const double m = q8::half_bits(static_cast<uint16_t>(um >> 16));
        return d * q8::raw_quant(l, packed, row, u, i % q8::kUnit) + std::fabs(m);
    }
    if (!q8::has_packed_scales(l.type)) return std::fabs(w);
    const double dmin_m = static_cast<double>(q8::half_bits(static_cast<uint16_t>(sm >> 16))) * (um >> 8);
    return w + 2 * dmin_m;
}

}  // namespace

TEST_CASE("q8 repack keeps every weight: dequantized from the streams it equals gguf::dequantize bit for bit", "[q8]") {
    for (const TensorType t : kernels::q8::kTypes)
        for (const auto& [rows, n_in] : {std::pair{33, 4096}, std::pair{5, short_n_in(t)}, std::pair{3, 14336}}) {
            INFO(name(t, rows, n_in));
            const auto w = kcases::random_matrix(t, rows, n_in, 100 + rows);
            const Q8Layout l = kernels::q8_layout(t, rows, n_in);
            const auto packed = kernels::q8_repack(t, w.bytes.data(), rows, n_in);
            REQUIRE(packed.size() == l.bytes);
            // The streams hold the blocks' bytes and no more.
            CHECK((l.qs_row + l.qh_row + l.um_row + l.sm_row) * rows == w.bytes.size());
            CHECK(l.qh_off % 256 == 0);
            CHECK(l.um_off % 256 == 0);
            CHECK(l.sm_off % 256 == 0);
            std::vector<float> row(static_cast<size_t>(n_in));
            size_t mismatches = 0;
            for (int r = 0; r < rows; ++r) {
                kernels::q8_dequantize_row(l, packed.data(), r, row.data());
                mismatches += std::memcmp(row.data(), w.values.data() + static_cast<size_t>(r) * n_in, n_in * 4) != 0;
            }
            CHECK(mismatches == 0);
        }
}

// The reference of q8_dequantize_f16: the fp16 rounding (nearest even) of gguf::dequantize's values, which is
// also what dequantize_to_f16 writes for the GGUF rows; q8_dequantize_row computes its f32 values with
// q8::weight_value, the function the device kernel calls.
TEST_CASE("q8 fp16 dequantization reference equals gguf::dequantize rounded to fp16, bit for bit", "[q8]") {
    for (const TensorType t : kernels::q8::kTypes)
        for (const auto& [rows, n_in] : {std::pair{33, 4096}, std::pair{1, short_n_in(t)}}) {
            INFO(name(t, rows, n_in));
            const auto w = kcases::random_matrix(t, rows, n_in, 150 + rows);
            const auto packed = kernels::q8_repack(t, w.bytes.data(), rows, n_in);
            const auto half = kernels::q8_dequantize_f16_ref(kernels::q8_layout(t, rows, n_in), packed.data());
            REQUIRE(half.size() == w.values.size());
            size_t mismatches = 0, zeros = 0;
            for (size_t i = 0; i < half.size(); ++i) {
                mismatches += half[i] != gguf::float_to_half(w.values[i]);
                zeros += (half[i] & 0x7FFFu) == 0;
            }
            CHECK(mismatches == 0);
            CHECK(zeros < half.size() / 4);  // a matrix of mostly zeros would prove little
        }
}

TEST_CASE("q8 layout rejects what the kernels cannot take, naming the value", "[q8]") {
    CHECK_THROWS_WITH(kernels::q8_layout(TensorType::F16, 4, 256), test::contains("F16"));
    CHECK_THROWS_WITH(kernels::q8_layout(TensorType::Q4_0, 0, 256), test::contains("rows 0"));
    CHECK_THROWS_WITH(kernels::q8_layout(TensorType::Q4_0, 4, 96), test::contains("n_in 96"));
    CHECK_THROWS_WITH(kernels::q8_layout(TensorType::Q4_K, 4, 384), test::contains("n_in 384"));
    CHECK_THROWS_WITH(kernels::q8_layout(TensorType::Q8_0, 4, -128), test::contains("n_in -128"));
    const std::vector<float> x(128, 0.5f);
    CHECK_THROWS_WITH(kernels::q8_quantize_x_ref(x.data(), 0, 128), test::contains("n_vec 0"));
    CHECK_THROWS_WITH(kernels::q8_quantize_x_ref(x.data(), 1, 64), test::contains("n_in 64"));
    CHECK_THROWS_WITH(kernels::q8_quantize_swiglu_ref(x.data(), 1, 64), test::contains("n_ff 64"));
    CHECK(!kernels::q8_supports(TensorType::Q5_1));
}

TEST_CASE("q8 positions place every quant once and the slot tree equals a warp butterfly", "[q8]") {
    std::vector<int> seen4(64 * 4), seen8(128 * 4), seen6(32 * 4 * 4), seen5(16 * 4 * 8);
    for (int u = 0; u < 16; ++u)
        for (int k = 0; k < q8::kUnit; ++k) {
            if (k < 16) ++seen4[q8::pos4(u, k)];
            ++seen8[q8::pos8(u, k)];
            ++seen6[q8::pos6h(u, k) * 4 + q8::shift6h(u, k) / 2];
            ++seen5[q8::pos5h(u, k) * 8 + q8::shift5h(u, k)];
        }
    const auto all_one = [](const std::vector<int>& s) {
        return std::all_of(s.begin(), s.end(), [](int c) { return c == 1; });
    };
    CHECK(all_one(seen4));
    CHECK(all_one(seen8));
    CHECK(all_one(seen6));
    CHECK(all_one(seen5));
    const auto vals = kcases::random_normal(q8::kSlots, 5, 0.f, 1.f);
    float lanes[q8::kSlots], tree[q8::kSlots];
    std::copy(vals.begin(), vals.end(), lanes);
    std::copy(vals.begin(), vals.end(), tree);
    for (int off = q8::kSlots / 2; off > 0; off /= 2) {
        float next[q8::kSlots];
        for (int l = 0; l < q8::kSlots; ++l) next[l] = lanes[l] + lanes[l ^ off];
        std::copy(next, next + q8::kSlots, lanes);
    }
    const float t = q8::tree32(tree);
    for (int l = 0; l < q8::kSlots; ++l) CHECK(std::memcmp(&lanes[l], &t, 4) == 0);
}

// Each value within half a step of x (round to nearest), the unit's largest at ±127, the sums exact.
TEST_CASE("q8 x quantization is within half a step of x, with exact unit sums", "[q8]") {
    const int n_vec = 3, n_in = 1024;
    const auto x = kcases::random_uniform(static_cast<size_t>(n_vec) * n_in, 13, -2.f, 2.f);
    const Q8X xq = kernels::q8_quantize_x_ref(x.data(), n_vec, n_in);
    double worst = 0;
    size_t bad_max = 0, bad_sums = 0;
    for (size_t u = 0; u < xq.meta.size(); ++u) {
        const q8::XMeta m = xq.meta[u];
        int amax = 0, sa = 0, sb = 0;
        for (int k = 0; k < q8::kUnit; ++k) {
            const size_t i = u * q8::kUnit + k;
            worst = std::max(worst, std::fabs(x[i] - xq.q[i] * static_cast<double>(m.d)) / m.d);
            amax = std::max(amax, std::abs(int{xq.q[i]}));
            (k < 16 ? sa : sb) += xq.q[i];
        }
        bad_max += amax != 127;
        bad_sums += sa != m.sa || sb != m.sb;
    }
    INFO("max |x - q d| / d = " << worst);
    CHECK(worst <= 0.5 + 1e-5);  // half a step, plus the f32 rounding of x / d
    CHECK(bad_max == 0);
    CHECK(bad_sums == 0);
    const auto order = kernels::q8_device_order(xq);
    auto a = order, b = xq.q;
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    CHECK(a == b);
}

// Normed: the quantized values are within half a step of XW / sqrt(mean square + eps) computed in f64.
TEST_CASE("q8 normed x quantization is within half a step of the f64 RMS-normed x", "[q8]") {
    const int n_vec = 4, n_in = 896, n_partials = kernels::norm_partial_count(n_in);
    const float eps = 1e-5f;
    const auto r = kcases::random_normal(static_cast<size_t>(n_vec) * n_in, 21, 0.f, 3.f);
    const auto w = kcases::random_uniform(n_in, 22, 0.5f, 1.5f);
    std::vector<float> xw(r.size()), s(static_cast<size_t>(n_vec) * n_partials, 0.f);
    std::vector<double> normed(r.size());
    for (int v = 0; v < n_vec; ++v) {
        double sum = 0;
        for (int i = 0; i < n_in; ++i) {
            const size_t e = static_cast<size_t>(v) * n_in + i;
            xw[e] = r[e] * w[i];
            s[static_cast<size_t>(v) * n_partials + i / kernels::kNormRowsPerPartial] += r[e] * r[e];
            sum += static_cast<double>(r[e]) * r[e];
        }
        const double scale = 1.0 / std::sqrt(sum / n_in + eps);
        for (int i = 0; i < n_in; ++i) normed[static_cast<size_t>(v) * n_in + i] = double{xw[v * n_in + i]} * scale;
    }
    const Q8X xq = kernels::q8_quantize_x_normed_ref(xw.data(), s.data(), eps, n_vec, n_in);
    double worst = 0;
    for (size_t i = 0; i < normed.size(); ++i) {
        const double d = xq.meta[i / q8::kUnit].d;
        worst = std::max(worst, std::fabs(normed[i] - xq.q[i] * d) / d);
    }
    INFO("max |x_normed - q d| / d = " << worst);
    // Half a step, plus the f32 scale's error (~1e-6 relative) over at most 127 steps.
    CHECK(worst <= 0.5 + 1e-3);
}

// SwiGLU: the reference reads the pair layout as kcases::swiglu_pairs_reference (the rows split, then
// engine::cpu::swiglu) does, so it equals that then q8_quantize_x_ref bit for bit; and its values are within
// half a step of the f64 silu(gate) * up, plus x's f32 error (~4 roundings, 3e-7 relative) over 127 steps.
TEST_CASE("q8 SwiGLU x quantization equals swiglu_pairs then q8_quantize_x, within half a step of f64", "[q8]") {
    for (const auto& [n_vec, n_ff] : {std::pair{1, 1408}, std::pair{3, 14336}}) {
        INFO("n_vec " << n_vec << " n_ff " << n_ff);
        const auto gate_up = kcases::random_uniform(static_cast<size_t>(n_vec) * 2 * n_ff, 31 + n_vec, -8.f, 8.f);
        const Q8X xq = kernels::q8_quantize_swiglu_ref(gate_up.data(), n_vec, n_ff);
        const auto act = kcases::swiglu_pairs_reference(gate_up, n_vec, n_ff);
        const Q8X want = kernels::q8_quantize_x_ref(act.data(), n_vec, n_ff);
        CHECK(xq.q == want.q);
        CHECK(std::memcmp(xq.meta.data(), want.meta.data(), xq.meta.size() * sizeof(q8::XMeta)) == 0);
        double worst = 0;
        for (int v = 0; v < n_vec; ++v)
            for (int i = 0; i < n_ff; ++i) {
                const float* row = gate_up.data() + static_cast<size_t>(v) * 2 * n_ff;
                const int g_at = i / 2 * 4 + i % 2;  // [gate 2j, gate 2j+1, up 2j, up 2j+1]
                const double g = row[g_at], x = g / (1.0 + std::exp(-g)) * row[g_at + 2];
                const size_t e = static_cast<size_t>(v) * n_ff + i;
                const double d = xq.meta[e / q8::kUnit].d;
                worst = std::max(worst, std::fabs(x - xq.q[e] * d) / d);
            }
        INFO("max |silu(gate) up - q d| / d = " << worst);
        CHECK(worst <= 0.5 + 1e-4);
    }
}

// Two bounds per output:
// - against the f64 product with the quantized x̂ = q d: |emu - ref̂| <= 1e-5 Σ_i m_i |x̂_i|. The integer
//   dot is exact, and the f32 part rounds at most ~25 times on the way to an output (unit_term 3-4, a
//   slot's n_units / 32 adds, 5 tree levels: 25 2^-24 = 1.5e-6 relative), each on magnitudes within
//   Σ m_i |x̂_i| (m_i = |w_i| or the two parts' magnitudes, see unfolded); 1e-5 leaves a margin of 6.
//   A lost or doubled unit, a wrong scale or offset errs by a whole term, far above it.
// - against the f64 product with x itself: max |emu - ref| / max |ref| < 2e-2 per vector. Each x̂ error
//   is ~uniform in ±d/2, d ≈ max|x| / 127, so a sum of n products errs by ~ sqrt(n) rms(w) d / sqrt(12)
//   against a typical |y| of sqrt(n) rms(w) rms(x): ~4e-3 relative for uniform x (measured 4-9e-3 over
//   max |ref|); 2e-2 is a few times that.
TEST_CASE("q8 canonical-order product against the f64 reference, within the stated bounds", "[q8]") {
    const int n_vec = 4;
    for (const TensorType t : kernels::q8::kTypes)
        for (const auto& [rows, n_in] : {std::pair{33, 4096}, std::pair{7, short_n_in(t)}, std::pair{4, 14336}}) {
            INFO(name(t, rows, n_in));
            const auto w = kcases::random_matrix(t, rows, n_in, 300 + rows);
            const auto packed = kernels::q8_repack(t, w.bytes.data(), rows, n_in);
            const Q8Layout l = kernels::q8_layout(t, rows, n_in);
            const auto x = kcases::random_uniform(static_cast<size_t>(n_vec) * n_in, 400 + rows, -1.f, 1.f);
            const Q8X xq = kernels::q8_quantize_x_ref(x.data(), n_vec, n_in);
            const auto emu = kernels::q8_product_ref(l, packed.data(), xq);
            const auto ref = kcases::matvec_reference(w, std::vector<double>(x.begin(), x.end()), rows, n_in, n_vec);
            size_t over = 0;
            double worst_rel = 0, worst_pipeline = 0;
            for (int v = 0; v < n_vec; ++v) {
                double err = 0, scale = 0;
                for (int r = 0; r < rows; ++r) {
                    double ref_hat = 0, magnitude = 0;
                    for (int i = 0; i < n_in; ++i) {
                        const size_t e = static_cast<size_t>(v) * n_in + i;
                        const double wi = w.values[static_cast<size_t>(r) * n_in + i];
                        const double xhat = xq.q[e] * static_cast<double>(xq.meta[e / q8::kUnit].d);
                        ref_hat += wi * xhat;
                        magnitude += unfolded(l, packed.data(), r, i, wi) * std::fabs(xhat);
                    }
                    const size_t o = static_cast<size_t>(v) * rows + r;
                    over += std::fabs(emu[o] - ref_hat) > 1e-5 * magnitude;
                    worst_pipeline = std::max(worst_pipeline, std::fabs(emu[o] - ref_hat) / magnitude);
                    err = std::max(err, std::fabs(emu[o] - ref[o]));
                    scale = std::max(scale, std::fabs(ref[o]));
                }
                worst_rel = std::max(worst_rel, err / scale);
            }
            INFO("max |emu - ref_hat| / Σ m |x̂| = " << worst_pipeline);
            INFO("max |emu - ref| / max |ref| = " << worst_rel);
            CHECK(over == 0);
            CHECK(worst_rel < 2e-2);
        }
}
