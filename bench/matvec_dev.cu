// matvec_dev: candidate decode matvec kernels for issue 16, each validated against a CPU reference and
// timed beside the current kernels::matvec in one run (reference, validation and timing in one file).
//
// Usage: matvec_dev [--cpu-check] [--types q4_0,q8_0,q4_k,q6_k] [--nvec 1,2,4,8,16,32] [--runs 21]
//                   [--families base,f32,q8,h16,cublas] [--csv FILE]
//   --types      also q4_1, q5_0, q5_k (the q8 and h16 families and base only; default: the four above)
//   --nvec       1..512; above 32 only the h16 family and the cuBLAS prefill path run (base: kernels::matvec
//                takes at most 32 vectors; f32 and q8: the bench's references of their orders cover 32)
//   --families   which rows to run (default all); cublas = today's prefill path, timed for n_vec > 32
//   --cpu-check  validates the CPU side only (repack round trip, x quantization, the canonical int8
//                order against the f64 reference, slot tree = warp butterfly, the kernels' lane mapping,
//                the h16 fragment order and its fp16 values); needs no GPU.
//
// Shapes: the Llama-3-8B decode products 4096x4096 (q/o), 4096x1024 (k/v), 4096x28672 (gate+up),
// 14336x4096 (down). Weights: 256 distinct random rows quantized with gguf::quantize, repeated to n_out
// rows; launches cycle through enough copies of the matrix (>= 4x L2) that L2 never serves them.
//
// Repacked layout (kernels/q8_layout.h, made once at load by kernels::q8_repack, timed): the row's
// 32-element "units" (a Q4_0/Q8_0 block, a K-quant sub-block) in groups of four ("quads"); lane t of a quad
// of lanes reads one 16-byte piece of a quad holding word t of each of its four units (8-bit: words t and
// t+4), exactly the fragment mma.sync m16n8k32 wants. Quants, per-unit scales and per-256 super scales are
// separate streams, so every quant load is a coalesced 16-byte load. Same bytes per row as the GGUF blocks.
//
// Reduction orders (which results can be equal bit for bit):
// - base (kernels::matvec): its own lane-strided order; batch invariant; equals none of the others.
// - f32 family (the library's since it serves the output projection, kernels/q8_kernels.cuh; repacked
//   weights, f32 x, dequantize + FMA): per unit, each of four lanes sums its 8
//   products in element order, the four partials meet by a fixed 2-step exchange (quad_reduce), the
//   unit's term goes to slot (unit mod 32); a slot adds its units in increasing order; the 32 slots
//   end in the fixed tree tree32() (= a warp butterfly). Every f32 variant (rows per warp, warps,
//   unroll, vectors per block) gives the same bits; x is not quantized (f32 accuracy).
// - q8 family (the library kernels of kernels/q8_kernels.cuh, x quantized per unit to int8 + f32 scale by
//   kernels::q8_quantize_x): per unit an exact integer dot product (so its order is free: dp4a or int8
//   MMA), the unit's f32 term by q8::unit_term(), then the same slots and tree32(). dp4a and mma variants
//   and the CPU reference kernels::q8_product_ref give the same bits, so a dispatcher may pick dp4a for
//   small batches and mma for large ones and stay batch invariant. x quantization costs accuracy (the err
//   column) and a small extra kernel.
// - h16 family (here; the candidate for decode AND prefill, issue 16's chunk invariance): each weight
//   dequantized in registers from the repacked streams to fp16, exactly q8_dequantize_f16's value
//   (RN(q8::weight_value)), x rounded to fp16 (RN) by a small kernel into the same fragment order, products
//   on mma.sync m16n8k16 f16 x f16 -> f32. The order of an output (row r at MMA row r % 16, vector v at
//   column v % 8 in every kernel): K is cut into kH16Segments = 8 fixed segments of whole quads (quads
//   [s nq / 8, (s+1) nq / 8)); in a segment the k16 steps (quad, unit, half of the unit) run in increasing
//   order, each MMA adding into the previous one's f32 accumulator, starting from 0; the 8 segment sums
//   are combined as ((s0 + s1) + s2) + ... + s7. Within a unit, elements are permuted to the fragment
//   layout (h16_pos) identically for W and x. Nothing depends on n_vec, the tile or the kernel, so every
//   h16 variant gives the same bits: decode kernels (one warp per segment of 16 rows, 8 warps per block
//   combining the segments in shared memory; one n8 tile of vectors or 2-4 of them) and the prefill tile
//   kernel (32 x 32 outputs per warp, fp16 weights and x staged in shared memory, x by cp.async, weight
//   quads loaded one stage ahead into registers). Accuracy: only the two fp16 roundings (2^-11 each) and
//   the f32 accumulation, so |y - f64 ref| <= (2^-10 + 2^-22 (n_in / 16 + 9)) sum |w x| + 2^-24 sum (|w| + |x|)
//   per output (the bound column; typically ~3e-4 relative to max |ref|, against the q8 family's ~5e-3).
//   The tensor core's summation inside one k16 step is the hardware's: the bits hold on one GPU model.
// - cublas (n_vec > 32): today's prefill path, q8_dequantize_f16 + x to fp16 + gemm_half (cuBLAS), timed
//   as a whole and gemm alone; same fp16 inputs as h16, its own order (held to the same bound).
#include <cuda_runtime.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "gguf/quantize.h"
#include "gguf/tensor_type.h"
#include "kernel_cases/inputs.h"
#include "kernels/cuda_check.h"
#include "kernels/dequantize.h"
#include "kernels/device_info.h"
#include "kernels/gemm.h"
#include "kernels/matvec.h"
#include "kernels/q8_kernels.cuh"
#include "kernels/q8_matmul.h"
#include "kernels/q8_repack.h"

namespace {

using loom::gguf::TensorType;
using loom::kernels::Q8Layout;
using loom::kernels::Q8X;
namespace q8 = loom::kernels::q8;
using q8::kSlots;
using q8::kUnit;

constexpr int kMaxVec = 32;      // base, f32 and q8 rows
constexpr int kMaxVecH16 = 512;  // h16 and cuBLAS rows (--nvec's limit)

// The q8 family's types; the f32 family covers the first four of issue 16's list only.

constexpr bool has_f32_family(TensorType t) {
    return t == TensorType::Q4_0 || t == TensorType::Q8_0 || t == TensorType::Q4_K || t == TensorType::Q6_K;
}

const char* qtype_name(TensorType t) { return loom::gguf::tensor_type_name(t).data(); }  // names are literals

std::string type_arg(TensorType t) {  // "q4_k"
    std::string s(loom::gguf::tensor_type_name(t));
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

// A matrix repacked by the library: its layout and bytes.
struct Repacked {
    Q8Layout layout;
    std::vector<uint8_t> data;
};

Repacked repack(TensorType t, const uint8_t* gguf, int rows, int n_in) {
    return {loom::kernels::q8_layout(t, rows, n_in), loom::kernels::q8_repack(t, gguf, rows, n_in)};
}

// f64 reference: y[v][row] = Σ values[row][i] x[v][i] over the CPU-dequantized weights, with the h16
// bound's terms Σ |w x| and Σ (|w| + |x|) per output; vectors spread over the host's threads.
struct Reference {
    std::vector<double> y, abs_wx, abs_sum;  // (n_vec, rows)
};

Reference reference(const std::vector<float>& values, const std::vector<float>& x, int rows, int n_in, int n_vec) {
    const size_t n = static_cast<size_t>(n_vec) * rows;
    Reference ref{std::vector<double>(n), std::vector<double>(n), std::vector<double>(n)};
    const auto vectors = [&](int from, int step) {
        for (int v = from; v < n_vec; v += step)
            for (int r = 0; r < rows; ++r) {
                double s = 0, a = 0, b = 0;
                for (int i = 0; i < n_in; ++i) {
                    const double w = values[static_cast<size_t>(r) * n_in + i],
                                 xi = x[static_cast<size_t>(v) * n_in + i];
                    s += w * xi;
                    a += std::fabs(w * xi);
                    b += std::fabs(w) + std::fabs(xi);
                }
                const size_t o = static_cast<size_t>(v) * rows + r;
                ref.y[o] = s, ref.abs_wx[o] = a, ref.abs_sum[o] = b;
            }
    };
    const int threads = std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, std::min(n_vec, 64));
    std::vector<std::thread> pool;
    for (int k = 1; k < threads; ++k) pool.emplace_back(vectors, k, threads);
    vectors(0, threads);
    for (auto& th : pool) th.join();
    return ref;
}

// max |y - ref| / max |ref| over a vector's outputs, the worst vector. y: (n_vec, n_out) with row r
// equal to tile row r % tile_rows of ref (tile_rows, per vector).
double max_rel_err(const std::vector<float>& y, const std::vector<double>& ref, int n_out, int tile_rows, int n_vec) {
    double worst = 0;
    for (int v = 0; v < n_vec; ++v) {
        double scale = 0, err = 0;
        for (int r = 0; r < tile_rows; ++r)
            scale = std::max(scale, std::fabs(ref[static_cast<size_t>(v) * tile_rows + r]));
        for (int r = 0; r < n_out; ++r) {
            const double got = y[static_cast<size_t>(v) * n_out + r];
            const double e = std::fabs(got - ref[static_cast<size_t>(v) * tile_rows + r % tile_rows]);
            err = std::isnan(got) ? INFINITY : std::max(err, e);  // poison left: infinite, and max keeps it
        }
        worst = std::max(worst, err / scale);
    }
    return worst;
}

constexpr int kH16Segments = 8;  // the h16 order's fixed split of K (see the top of the file)

// The h16 bound of one output: two fp16 roundings (2^-11 relative each, 2^-25 absolute below fp16's normal
// range) and the f32 accumulation (at most 2^-22 of Σ |w x| per k16 step and per segment add); the cuBLAS
// path, with the same fp16 inputs, is held to it too.
double h16_bound(const Reference& ref, size_t o, int n_in) {
    return (std::ldexp(1.0, -10) + std::ldexp(1.0, -22) * (n_in / 16 + kH16Segments + 1)) * ref.abs_wx[o] +
           std::ldexp(1.0, -24) * ref.abs_sum[o];
}

// max over outputs of |y - ref| / h16_bound (<= 1: within the bound); y as in max_rel_err.
double max_bound_ratio(const std::vector<float>& y, const Reference& ref, int n_out, int tile_rows, int n_vec,
                       int n_in) {
    double worst = 0;
    for (int v = 0; v < n_vec; ++v)
        for (int r = 0; r < n_out; ++r) {
            const size_t o = static_cast<size_t>(v) * tile_rows + r % tile_rows;
            const double got = y[static_cast<size_t>(v) * n_out + r];
            worst = std::isnan(got) ? INFINITY : std::max(worst, std::fabs(got - ref.y[o]) / h16_bound(ref, o, n_in));
        }
    return worst;
}
// ---------------------------------------------------------------------------------------------
// --cpu-check: the CPU logic the GPU results are judged by (the library's; tests/kernel_cases/test_q8_host.cpp
// holds it to bounds in CI).

bool check_type_cpu(TensorType t, int rows, int n_in) {
    const auto w = loom::kcases::random_matrix(t, rows, n_in, 11);
    const auto t0 = std::chrono::steady_clock::now();
    const Repacked r = repack(t, w.bytes.data(), rows, n_in);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const Q8Layout& l = r.layout;
    // The streams hold the same bytes as the blocks (no padding for these shapes).
    const size_t streams = (l.qs_row + l.qh_row + l.um_row + l.sm_row) * rows;
    size_t mismatches = 0;
    std::vector<float> row_values(static_cast<size_t>(n_in));
    for (int row = 0; row < rows; ++row) {
        loom::kernels::q8_dequantize_row(l, r.data.data(), row, row_values.data());
        for (int i = 0; i < n_in; ++i)
            if (std::memcmp(&row_values[i], &w.values[static_cast<size_t>(row) * n_in + i], 4) != 0) ++mismatches;
    }
    const int n_vec = 4;
    const auto x = loom::kcases::random_uniform(static_cast<size_t>(n_vec) * n_in, 12, -1.f, 1.f);
    const Q8X xq = loom::kernels::q8_quantize_x_ref(x.data(), n_vec, n_in);
    const Reference ref = reference(w.values, x, rows, n_in, n_vec);
    const auto emu = loom::kernels::q8_product_ref(l, r.data.data(), xq);
    const double err = max_rel_err(emu, ref.y, rows, rows, n_vec);
    const bool ok = mismatches == 0 && streams == w.bytes.size() && err < 2e-2;
    std::printf(
        "  %s %dx%d: repack %.1f ms, %zu stream bytes (GGUF %zu), round trip %zu mismatching values; "
        "q8 canonical order vs f64 reference: max rel err %.2e (< 2e-2) -> %s\n",
        qtype_name(t), rows, n_in, ms, streams, w.bytes.size(), mismatches, err, ok ? "ok" : "FAIL");
    return ok;
}

// The slot tree equals a warp butterfly on every lane; the repacked positions are bijections; the x
// quantization's values are within half a step of x.
bool check_orders_cpu() {
    bool ok = true;
    const auto vals = loom::kcases::random_normal(kSlots, 5, 0.f, 1.f);
    float lanes[kSlots], tree[kSlots];
    std::copy(vals.begin(), vals.end(), lanes);
    std::copy(vals.begin(), vals.end(), tree);
    for (int off = kSlots / 2; off > 0; off /= 2) {
        float next[kSlots];
        for (int l = 0; l < kSlots; ++l) next[l] = lanes[l] + lanes[l ^ off];
        std::copy(next, next + kSlots, lanes);
    }
    const float t = q8::tree32(tree);
    for (int l = 0; l < kSlots; ++l) ok = ok && std::memcmp(&lanes[l], &t, 4) == 0;
    std::printf("  tree32 equals the warp butterfly on all 32 lanes: %s\n", ok ? "ok" : "FAIL");
    std::vector<int> seen4(64 * 4), seen8(128 * 4), seen6(32 * 4 * 4), seen5(16 * 4 * 8);
    for (int u = 0; u < 16; ++u)
        for (int k = 0; k < kUnit; ++k) {
            if (k < 16) ++seen4[q8::pos4(u, k)];
            ++seen8[q8::pos8(u, k)];
            ++seen6[q8::pos6h(u, k) * 4 + q8::shift6h(u, k) / 2];
            ++seen5[q8::pos5h(u, k) * 8 + q8::shift5h(u, k)];
        }
    const auto all_one = [](const std::vector<int>& s) {
        return std::all_of(s.begin(), s.end(), [](int c) { return c == 1; });
    };
    const bool perm = all_one(seen4) && all_one(seen8) && all_one(seen6) && all_one(seen5);
    std::printf("  pos4 / pos8 / pos6h / pos5h place every quant once: %s\n", perm ? "ok" : "FAIL");
    const int n_in = 1024;
    const auto x = loom::kcases::random_uniform(n_in, 13, -1.f, 1.f);
    const Q8X xq = loom::kernels::q8_quantize_x_ref(x.data(), 1, n_in);
    double worst = 0;
    for (int i = 0; i < n_in; ++i) {
        const float d = xq.meta[i / kUnit].d;
        worst = std::max(worst, std::fabs(x[i] - xq.q[i] * static_cast<double>(d)) / d);
    }
    std::printf("  quantize_x: max |x - q d| / d = %.3f (<= 0.5): %s\n", worst, worst <= 0.5 + 1e-6 ? "ok" : "FAIL");
    return ok && perm && worst <= 0.5 + 1e-6;
}

// ---------------------------------------------------------------------------------------------
// ---------------------------------------------------------------------------------------------
// The h16 family's kernels (order and accuracy at the top of the file). Helpers run on the host too,
// rounding like the device, for --cpu-check.

// Segment s of a row of n_quads quads (n_quads >= kH16Segments): quads [h16_seg(s), h16_seg(s + 1)).
__host__ __device__ constexpr int h16_seg(int s, int n_quads) { return s * n_quads / kH16Segments; }

// The fragment order of a unit's 32 fp16 values (x in memory, W and x in shared memory, a lane's registers):
// lane t of a quad of lanes holds positions 8t .. 8t + 7 = elements 4t, 4t + 2, 4t + 1, 4t + 3, then the same
// + 16; as f16x2 words: the A (or B) registers of the unit's two k16 steps, word 2h for MMA slots 2t, 2t + 1 and
// word 2h + 1 for slots 2t + 8, 2t + 9 of step h (elements 16h ..). Element k's position, and position p's element:
constexpr int h16_pos(int k) { return 8 * ((k % 16) / 4) + 4 * (k / 16) + 2 * (k % 2) + (k % 4) / 2; }
constexpr int h16_elem(int p) { return 16 * ((p % 8) / 4) + 4 * (p / 8) + 2 * (p % 2) + (p % 4) / 2; }

// The project's round to nearest even (gguf::float_to_half); host branches only, so unused in the device pass.
[[maybe_unused]] uint16_t host_f16(float f) {
    uint16_t h;
    loom::gguf::quantize(TensorType::F16, &f, &h, 1);
    return h;
}

__host__ __device__ __forceinline__ float bits_float(uint32_t b) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(b);
#else
    float f;
    std::memcpy(&f, &b, 4);
    return f;
#endif
}

__host__ __device__ __forceinline__ uint32_t byte_perm(uint32_t a, uint32_t b, uint32_t sel) {
#ifdef __CUDA_ARCH__
    return __byte_perm(a, b, sel);
#else
    const uint64_t v = static_cast<uint64_t>(b) << 32 | a;
    uint32_t r = 0;
    for (int i = 0; i < 4; ++i) r |= static_cast<uint32_t>(v >> (8 * ((sel >> (4 * i)) & 7u)) & 0xFFu) << (8 * i);
    return r;
#endif
}

// f16x2 a - b and a * b, each half rounded once to nearest even (.rn: never contracted). The host computes
// in f32 and rounds: exact here, as the operands are small integers (sub) or f16 values (mul: 22-bit products).
enum class H2 { sub, mul };
template <H2 Op>
__host__ __device__ __forceinline__ uint32_t h2(uint32_t a, uint32_t b) {
#ifdef __CUDA_ARCH__
    uint32_t d;
    if constexpr (Op == H2::sub)
        asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    else
        asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    return d;
#else
    uint32_t d = 0;
    for (int i = 0; i < 2; ++i) {
        const float x = q8::half_bits(static_cast<uint16_t>(a >> (16 * i))),
                    y = q8::half_bits(static_cast<uint16_t>(b >> (16 * i)));
        d |= static_cast<uint32_t>(host_f16(Op == H2::sub ? x - y : x * y)) << (16 * i);
    }
    return d;
#endif
}

// Two floats -> f16x2 (lo in the low half), each rounded to nearest even.
__host__ __device__ __forceinline__ uint32_t pack_h2(float lo, float hi) {
#ifdef __CUDA_ARCH__
    uint32_t d;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
    return d;
#else
    return host_f16(lo) | static_cast<uint32_t>(host_f16(hi)) << 16;
#endif
}

__host__ __device__ __forceinline__ float ffma(float a, float b, float c) {
#ifdef __CUDA_ARCH__
    return __fmaf_rn(a, b, c);
#else
    return std::fma(a, b, c);
#endif
}

// Byte e of w (a raw quant) minus `off` as a float, exactly: the bits 2^23 + q placed by one byte permute,
// then 2^23 + off subtracted (no int -> float conversion, which runs at a quarter of the FMA rate).
__host__ __device__ __forceinline__ float quant_minus(uint32_t w, int e, float off) {
    return q8::fsub(bits_float(byte_perm(w, 0x4B00u, 0x5440u | static_cast<uint32_t>(e))), 8388608.0f + off);
}

// Lane t's eight weights of unit i of a quad (unit_bytes' lo: elements 4t + e, hi: 16 + 4t + e) as fp16 in
// fragment order, each RN(q8::weight_value). Q4_0/Q5_0/Q8_0 in f16 arithmetic: 1024 + q placed by a byte
// permute, minus 1024 + offset (exact), times d rounded once; (q - offset) d is exact in f32, so this is
// weight_value's value rounded. The others in f32 with weight_value's roundings (a product that is exact
// there fused into an FMA), then one conversion per pair.
template <TensorType T>
__host__ __device__ __forceinline__ uint4 h16_unit(const q8::QuadWords<T>& q, int i) {
    uint32_t lo, hi;
    q8::unit_bytes(q, i, lo, hi);
    const uint32_t um = q8::unit_um(q, i);
    if constexpr (T == TensorType::Q4_0 || T == TensorType::Q5_0 || T == TensorType::Q8_0) {
        if constexpr (T == TensorType::Q8_0) lo ^= 0x80808080u, hi ^= 0x80808080u;  // int8 q -> q + 128
        constexpr uint32_t bias = T == TensorType::Q4_0   ? 0x64086408u
                                  : T == TensorType::Q5_0 ? 0x64106410u
                                                          : 0x64806480u;
        const uint32_t d2 = (um & 0xFFFFu) * 0x10001u;
        const auto w = [&](uint32_t b, uint32_t sel) {
            return h2<H2::mul>(h2<H2::sub>(byte_perm(b, 0x64u, sel), bias), d2);
        };
        return make_uint4(w(lo, 0x4240u), w(lo, 0x4341u), w(hi, 0x4240u), w(hi, 0x4341u));
    } else {
        float v[8];
        if constexpr (T == TensorType::Q4_1) {
            const float d = q8::half_bits(static_cast<uint16_t>(um & 0xFFFFu)),
                        m = q8::half_bits(static_cast<uint16_t>(um >> 16));
#pragma unroll
            for (int e = 0; e < 8; ++e) v[e] = ffma(quant_minus(e < 4 ? lo : hi, e % 4, 0.0f), d, m);
        } else if constexpr (T == TensorType::Q4_K || T == TensorType::Q5_K) {
            const float scale =
                q8::fmul(q8::half_bits(static_cast<uint16_t>(q.sm & 0xFFFFu)), static_cast<float>(um & 0xFFu));
            const float min = q8::fmul(q8::half_bits(static_cast<uint16_t>(q.sm >> 16)), static_cast<float>(um >> 8));
#pragma unroll
            for (int e = 0; e < 8; ++e) v[e] = ffma(scale, quant_minus(e < 4 ? lo : hi, e % 4, 0.0f), -min);
        } else {
            static_assert(T == TensorType::Q6_K, "h16 family: the q8 family's types");
            const float d = q8::half_bits(static_cast<uint16_t>(q.sm));
            const float ds[2] = {q8::fmul(d, static_cast<float>(static_cast<int8_t>(um & 0xFFu))),
                                 q8::fmul(d, static_cast<float>(static_cast<int8_t>(um >> 8)))};
#pragma unroll
            for (int e = 0; e < 8; ++e) v[e] = q8::fmul(ds[e / 4], quant_minus(e < 4 ? lo : hi, e % 4, 32.0f));
        }
        return make_uint4(pack_h2(v[0], v[2]), pack_h2(v[1], v[3]), pack_h2(v[4], v[6]), pack_h2(v[5], v[7]));
    }
}

// x (n_vec, n_in) -> fp16 (nearest even) in fragment order, as h16_x_kernel writes it.
std::vector<uint16_t> h16_x_ref(const float* x, int n_vec, int n_in) {
    std::vector<uint16_t> natural(static_cast<size_t>(n_vec) * n_in), out(natural.size());
    loom::gguf::quantize(TensorType::F16, x, natural.data(), natural.size());
    for (size_t base = 0; base < out.size(); base += kUnit)
        for (int k = 0; k < kUnit; ++k) out[base + h16_pos(k)] = natural[base + k];
    return out;
}

struct H16Params {
    q8::MatView w;
    const uint4* x;  // (n_vec, n_in) fp16 in fragment order: n_in / 8 words per vector, unit u at 4u .. 4u + 3
    float* y;        // (n_vec, n_out)
    int n_in, n_out, n_vec;
};

// One thread per (vector, unit, lane t): the lane's 16 bytes of the fragment order.
__global__ void __launch_bounds__(256) h16_x_kernel(const float* x, uint4* out, int n_vec, int n_in) {
    loom::kernels::wait_for_previous_kernel();
    const int64_t i = blockIdx.x * int64_t{256} + threadIdx.x;  // (v * n_units + unit) * 4 + t
    if (i >= int64_t{n_vec} * n_in / 8) return;
    const float* p = x + i / 4 * kUnit + 4 * (i % 4);
    const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 16);
    out[i] = make_uint4(pack_h2(a.x, a.z), pack_h2(a.y, a.w), pack_h2(b.x, b.z), pack_h2(b.y, b.w));
}

// The in-register dequantization alone, for the GPU check against q8_dequantize_f16_ref: one thread per
// (row, quad, lane t) writes h16_unit of the quad's four units (rows x n_in fp16 in fragment order).
template <TensorType T>
__global__ void __launch_bounds__(256) h16_dequant_kernel(const q8::MatView w, int rows, uint4* out) {
    const int64_t i = blockIdx.x * int64_t{256} + threadIdx.x;  // (row * n_quads + gq) * 4 + t
    const int n_quads = w.n_units / 4;
    if (i >= int64_t{rows} * n_quads * 4) return;
    const int t = static_cast<int>(i % 4), gq = static_cast<int>(i / 4 % n_quads),
              row = static_cast<int>(i / 4 / n_quads);
    q8::QuadWords<T> q;
    q8::load_quad<T>(w, row, gq, t, q);
    for (int u = 0; u < 4; ++u) out[(int64_t{row} * w.n_units + 4 * gq + u) * 4 + t] = h16_unit<T>(q, u);
}

// The MMA registers of k16 step h of a unit: rows g (words ra) and g + 8 (rb), vector g (xb), all in
// fragment order (--cpu-check builds the fragments with this too).
struct StepRegs {
    uint32_t a[4], b[2];
};
__host__ __device__ __forceinline__ StepRegs step_regs(const uint4& ra, const uint4& rb, const uint4& xb, int h) {
    return {{h ? ra.z : ra.x, h ? rb.z : rb.x, h ? ra.w : ra.y, h ? rb.w : rb.y}, {h ? xb.z : xb.x, h ? xb.w : xb.y}};
}

__device__ __forceinline__ void mma_step(float (&c)[4], const uint4& ra, const uint4& rb, const uint4& xb, int h) {
    const StepRegs r = step_regs(ra, rb, xb, h);
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(r.a[0]), "r"(r.a[1]), "r"(r.a[2]), "r"(r.a[3]), "r"(r.b[0]), "r"(r.b[1]));
}

// Decode kernel: warp s of a block takes segment s of RT x 16 rows for NT x 8 vectors (blockIdx.y picks
// the vector group), QB quads of 16-byte weight loads issued before they are used; the 8 segment sums
// meet in shared memory and are added in order by one thread per output.
template <TensorType T, int NT, int RT, int QB>
__global__ void __launch_bounds__(kH16Segments * 32) h16_rows_kernel(const H16Params p) {
    loom::kernels::wait_for_previous_kernel();
    const int lane = threadIdx.x % 32, seg = threadIdx.x / 32, g = lane / 4, t = lane % 4;
    const int row_base = blockIdx.x * 16 * RT, vec_base = blockIdx.y * 8 * NT;
    const int n_quads = p.w.n_units / 4, q_end = h16_seg(seg + 1, n_quads), x_words = p.n_in / 8;
    float acc[RT][NT][4] = {};
    for (int q0 = h16_seg(seg, n_quads); q0 < q_end; q0 += QB) {
        q8::QuadWords<T> w[QB][RT][2];
#pragma unroll
        for (int b = 0; b < QB; ++b)
#pragma unroll
            for (int m = 0; m < RT; ++m)
#pragma unroll
                for (int h = 0; h < 2; ++h)
                    q8::load_quad<T>(p.w, min(row_base + 16 * m + g + 8 * h, p.n_out - 1), min(q0 + b, q_end - 1), t,
                                     w[b][m][h]);
#pragma unroll
        for (int b = 0; b < QB; ++b) {
            if (q0 + b >= q_end) break;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                uint4 xf[NT], a[RT][2];
#pragma unroll
                for (int n = 0; n < NT; ++n) {
                    const int vec = vec_base + 8 * n + g;
                    xf[n] = vec < p.n_vec ? __ldg(p.x + static_cast<size_t>(vec) * x_words + (q0 + b) * 16 + 4 * i + t)
                                          : make_uint4(0, 0, 0, 0);
                }
#pragma unroll
                for (int m = 0; m < RT; ++m)
#pragma unroll
                    for (int h = 0; h < 2; ++h) a[m][h] = h16_unit<T>(w[b][m][h], i);
#pragma unroll
                for (int h = 0; h < 2; ++h)
#pragma unroll
                    for (int m = 0; m < RT; ++m)
#pragma unroll
                        for (int n = 0; n < NT; ++n) mma_step(acc[m][n], a[m][0], a[m][1], xf[n], h);
            }
        }
    }
    __shared__ float red[kH16Segments][RT * 16][NT * 8];
#pragma unroll
    for (int m = 0; m < RT; ++m)
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
            for (int k = 0; k < 4; ++k) red[seg][16 * m + g + 8 * (k / 2)][8 * n + 2 * t + k % 2] = acc[m][n][k];
    __syncthreads();
    for (int o = threadIdx.x; o < RT * 16 * NT * 8; o += kH16Segments * 32) {
        const int r = o % (RT * 16), c = o / (RT * 16), row = row_base + r, vec = vec_base + c;
        float s = red[0][r][c];
#pragma unroll
        for (int k = 1; k < kH16Segments; ++k) s = __fadd_rn(s, red[k][r][c]);
        if (row < p.n_out && vec < p.n_vec) p.y[static_cast<size_t>(vec) * p.n_out + row] = s;
    }
}

__device__ __forceinline__ void cp_async16(void* shared_dst, const void* global_src) {
    const auto dst = static_cast<unsigned>(__cvta_generic_to_shared(shared_dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(global_src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;" ::: "memory"); }

// 16-byte word j (unit j / 4, lane j % 4) of tile row (or vector) r in shared memory: odd rows swap the
// halves of the quad's 16 words, so the 8 lanes of one LDS.128 phase (two rows, four lanes) hit distinct banks.
__device__ __forceinline__ int swz(int r, int j) { return r * 16 + (j ^ ((r & 1) << 2)); }

// Prefill tile kernel's shared memory: fp16 weights and x, two quads each, and the folded segment sums.
template <int WM, int WN>
constexpr int h16_tile_shared() {
    return (2 * 32 * WM + 2 * 32 * WN) * 16 * 16 + WM * WN * 32 * 32 * 4;
}

// Prefill tile kernel: WM x WN warps of 32 rows x 32 vectors each (2 x 4 MMA tiles). Per quad of K the
// block's weights are loaded into registers two quads ahead and dequantized into shared memory one quad
// ahead, its x copied by cp.async one quad ahead (two buffers each, one barrier per quad). The running
// segment sums wait in shared memory (a thread's own 32 words, touched 8 times), which keeps the
// accumulators, fragments and prefetched quads within 128 registers. Grid x runs over vector tiles, so
// the blocks sharing a row tile run together and read its weights from L2.
template <TensorType T, int WM, int WN>
__global__ void __launch_bounds__(WM* WN * 32) h16_tile_kernel(const H16Params p) {
    constexpr int kThreads = WM * WN * 32, kRows = 32 * WM, kVecs = 32 * WN;
    constexpr int kPieces = kRows * 4 / kThreads, kChunks = kVecs * 16 / kThreads;
    static_assert(kPieces * kThreads == kRows * 4 && kChunks * kThreads == kVecs * 16, "tile and block mismatch");
    loom::kernels::wait_for_previous_kernel();
    extern __shared__ uint4 smem[];
    uint4* const w16 = smem;                                            // [2][kRows * 16]
    uint4* const xs = smem + 2 * kRows * 16;                            // [2][kVecs * 16]
    float* const sums = reinterpret_cast<float*>(xs + 2 * kVecs * 16);  // [32][kThreads]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int wm = warp % WM, wn = warp / WM, vec_base = blockIdx.x * kVecs, row_base = blockIdx.y * kRows;
    const int n_quads = p.w.n_units / 4, x_words = p.n_in / 8;
    q8::QuadWords<T> pre[kPieces];
    const auto load_w = [&](int gq) {
#pragma unroll
        for (int k = 0; k < kPieces; ++k) {
            const int piece = threadIdx.x + k * kThreads;
            q8::load_quad<T>(p.w, min(row_base + piece / 4, p.n_out - 1), gq, piece % 4, pre[k]);
        }
    };
    const auto store_w = [&](int buf) {
#pragma unroll
        for (int k = 0; k < kPieces; ++k) {
            const int piece = threadIdx.x + k * kThreads;
#pragma unroll
            for (int i = 0; i < 4; ++i)
                w16[buf * kRows * 16 + swz(piece / 4, 4 * i + piece % 4)] = h16_unit<T>(pre[k], i);
        }
    };
    const auto load_x = [&](int gq, int buf) {
#pragma unroll
        for (int k = 0; k < kChunks; ++k) {
            const int c = threadIdx.x + k * kThreads, v = c / 16;
            const uint4* src = p.x + static_cast<size_t>(min(vec_base + v, p.n_vec - 1)) * x_words + gq * 16 + c % 16;
            cp_async16(xs + buf * kVecs * 16 + swz(v, c % 16), src);
        }
        cp_async_commit();
    };
    load_w(0);
    load_x(0, 0);
    store_w(0);
    if (n_quads > 1) load_w(1);
    cp_async_wait_all();
    __syncthreads();
    float acc[2][4][4] = {};
    int seg = 0, seg_end = h16_seg(1, n_quads);
    for (int gq = 0; gq < n_quads; ++gq) {
        if (gq + 1 < n_quads) load_x(gq + 1, (gq + 1) % 2);  // its buffer was last read before the last barrier
        const uint4* wb = w16 + (gq % 2) * kRows * 16;
        const uint4* xb = xs + (gq % 2) * kVecs * 16;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            uint4 a[2][2], b[4];
#pragma unroll
            for (int m = 0; m < 2; ++m)
#pragma unroll
                for (int h = 0; h < 2; ++h) a[m][h] = wb[swz(32 * wm + 16 * m + g + 8 * h, 4 * i + t)];
#pragma unroll
            for (int n = 0; n < 4; ++n) b[n] = xb[swz(32 * wn + 8 * n + g, 4 * i + t)];
#pragma unroll
            for (int h = 0; h < 2; ++h)
#pragma unroll
                for (int m = 0; m < 2; ++m)
#pragma unroll
                    for (int n = 0; n < 4; ++n) mma_step(acc[m][n], a[m][0], a[m][1], b[n], h);
        }
        if (gq + 1 == seg_end) {  // fold the segment: sum = s0, then sum + s1, ...
#pragma unroll
            for (int k = 0; k < 32; ++k) {
                float& sum = sums[k * kThreads + threadIdx.x];
                sum = seg == 0 ? acc[k / 16][k / 4 % 4][k % 4] : __fadd_rn(sum, acc[k / 16][k / 4 % 4][k % 4]);
                acc[k / 16][k / 4 % 4][k % 4] = 0.0f;
            }
            seg_end = h16_seg(++seg + 1, n_quads);
        }
        if (gq + 1 < n_quads) store_w((gq + 1) % 2);
        if (gq + 2 < n_quads) load_w(gq + 2);
        cp_async_wait_all();
        __syncthreads();
    }
#pragma unroll
    for (int k = 0; k < 32; ++k) {
        const int m = k / 16, n = k / 4 % 4, c = k % 4;
        const int row = row_base + 32 * wm + 16 * m + g + 8 * (c / 2), vec = vec_base + 32 * wn + 8 * n + 2 * t + c % 2;
        if (row < p.n_out && vec < p.n_vec)
            p.y[static_cast<size_t>(vec) * p.n_out + row] = sums[k * kThreads + threadIdx.x];
    }
}

template <TensorType T, int NT, int RT, int QB>
void launch_h16_rows_n(const H16Params& p, cudaStream_t stream) {
    const dim3 grid((p.n_out + 16 * RT - 1) / (16 * RT), (p.n_vec + 8 * NT - 1) / (8 * NT));
    loom::kernels::launch_kernel("h16 rows_kernel", h16_rows_kernel<T, NT, RT, QB>,
                                 loom::kernels::LaunchShape{grid, dim3(kH16Segments * 32), 0, stream}, p);
}

template <TensorType T, int WM, int WN>
void launch_h16_tile_n(const H16Params& p, cudaStream_t stream) {
    constexpr int kShared = h16_tile_shared<WM, WN>();
    static const bool sized = [] {  // once per instantiation: above 48 KiB of dynamic shared memory
        LOOM_CUDA_CHECK(
            cudaFuncSetAttribute(h16_tile_kernel<T, WM, WN>, cudaFuncAttributeMaxDynamicSharedMemorySize, kShared));
        return true;
    }();
    (void)sized;
    const dim3 grid((p.n_vec + 32 * WN - 1) / (32 * WN), (p.n_out + 32 * WM - 1) / (32 * WM));
    loom::kernels::launch_kernel("h16 tile_kernel", h16_tile_kernel<T, WM, WN>,
                                 loom::kernels::LaunchShape{grid, dim3(WM * WN * 32), kShared, stream}, p);
}

// ---------------------------------------------------------------------------------------------
// --cpu-check, continued: the lane mapping and the whole check.

// The kernels' lane mapping, run on the CPU: the four lanes' dp4a partials of a unit add up to its
// exact integer dot, and the MMA fragments (PTX ISA "Matrix Fragments for mma.m16n8k32": A reg r of
// lane (g, t) = row g + 8 (r % 2), k = 4t + 16 (r / 2); B reg r = column g, k = 4t + 16 r) give it too.
template <TensorType T>
bool check_lanes_cpu() {
    const int rows = 16, n_in = 1024, units = n_in / kUnit, n_vec = 8;
    const auto w = loom::kcases::random_matrix(T, rows, n_in, 21);
    const Repacked r = repack(T, w.bytes.data(), rows, n_in);
    const auto x = loom::kcases::random_uniform(static_cast<size_t>(n_vec) * n_in, 22, -1.f, 1.f);
    const Q8X xq = loom::kernels::q8_quantize_x_ref(x.data(), n_vec, n_in);
    const auto order = loom::kernels::q8_device_order(xq);  // the quantize kernel's layout
    const std::vector<uint8_t> image(order.begin(), order.end());
    const Q8Layout& l = r.layout;
    const uint8_t* d = r.data.data();
    const q8::MatView m{d + l.qs_off, d + l.qh_off, d + l.um_off, d + l.sm_off, l.qs_row,
                        l.qh_row,     l.um_row,     l.sm_row,     units};
    const auto exact = [&](int row, int v, int u, int k_from, int k_to) {
        int dot = 0;
        for (int k = k_from; k < k_to; ++k) {
            const int q = q8::raw_quant(r.layout, d, row, u, k);
            dot += (T == TensorType::Q8_0 ? static_cast<int8_t>(q) : q) *
                   xq.q[static_cast<size_t>(v) * n_in + u * kUnit + k];
        }
        return dot;
    };
    const auto combine = [&](int row, int u, int lo, int hi) {
        const uint32_t um = q8::unit_word(r.layout, d, row, u);
        return T == TensorType::Q6_K ? static_cast<int8_t>(um & 0xFFu) * lo + static_cast<int8_t>(um >> 8) * hi
                                     : lo + hi;
    };
    size_t bad_lanes = 0, bad_mma = 0, bad_scales = 0;
    for (int gq = 0; gq < units / 4; ++gq)
        for (int i = 0; i < 4; ++i) {
            const int u = 4 * gq + i;
            int a[16][32], b[32][8];
            for (int lane = 0; lane < 32; ++lane) {
                const int g = lane / 4, t = lane % 4;
                q8::QuadWords<T> qa{}, qb{};
                q8::load_quad<T>(m, g, gq, t, qa);
                q8::load_quad<T>(m, g + 8, gq, t, qb);
                uint32_t regs[4], xw[8];
                q8::unit_bytes(qa, i, regs[0], regs[2]);
                q8::unit_bytes(qb, i, regs[1], regs[3]);
                q8::load_x8(image.data(), n_in, g, gq, t, xw);
                for (int e = 0; e < 4; ++e) {
                    for (int reg = 0; reg < 4; ++reg)
                        a[g + 8 * (reg % 2)][4 * t + 16 * (reg / 2) + e] = static_cast<int8_t>(regs[reg] >> (8 * e));
                    for (int reg = 0; reg < 2; ++reg)
                        b[4 * t + 16 * reg + e][g] = static_cast<int8_t>(xw[2 * i + reg] >> (8 * e));
                }
            }
            for (int row = 0; row < rows; ++row)
                for (int v = 0; v < n_vec; ++v) {
                    const int want = combine(row, u, exact(row, v, u, 0, 16), exact(row, v, u, 16, 32));
                    int lanes_sum = 0, lo = 0, hi = 0;
                    for (int t = 0; t < 4; ++t) {
                        q8::QuadWords<T> q{};
                        uint32_t xw[8];
                        q8::load_quad<T>(m, row, gq, t, q);
                        q8::load_x8(image.data(), n_in, v, gq, t, xw);
                        lanes_sum += q8::lane_partial(q, i, xw);
                        // Every lane holds the unit's scale words as the CPU reads them (the super word: K-quants).
                        const bool super = q8::is_k_quant(T) && q.sm != q8::super_word(l, d, row, u);
                        bad_scales += v == 0 && (q8::unit_um(q, i) != q8::unit_word(l, d, row, u) || super);
                    }
                    for (int k = 0; k < kUnit; ++k) (k < 16 ? lo : hi) += a[row][k] * b[k][v];
                    bad_lanes += lanes_sum != want;
                    bad_mma += combine(row, u, lo, hi) != want;
                }
        }
    const bool ok = bad_lanes == 0 && bad_mma == 0 && bad_scales == 0;
    std::printf(
        "  %s lane mapping: %zu dp4a quad sums and %zu MMA fragment dots differ from the exact unit dots, %zu lane "
        "scale words from the CPU's -> %s\n",
        qtype_name(T), bad_lanes, bad_mma, bad_scales, ok ? "ok" : "FAIL");
    return ok;
}

// The h16 family on the CPU: h16_pos and h16_elem are inverse bijections; every lane's words (h16_unit,
// rounding as the device does) hold q8_dequantize_f16_ref's values at their positions; the MMA fragments
// built from them and from h16_x_ref by step_regs (PTX ISA "Matrix Fragments for mma.m16n8k16" with .f16:
// A reg r of lane (g, t) = row g + 8 (r % 2), k = 2t + 8 (r / 2) + 0..1; B reg r = column g, k = 2t + 8r +
// 0..1) put one and the same element of W and of x at each k slot, a permutation of the step's half of the
// unit; and the fp16 model of the product (exact sums of the fp16 products) stays within h16_bound.
template <TensorType T>
bool check_h16_cpu() {
    const int rows = 16, n_in = 1024, units = n_in / kUnit, n_vec = 8;
    const auto w = loom::kcases::random_matrix(T, rows, n_in, 31);
    const Repacked r = repack(T, w.bytes.data(), rows, n_in);
    const Q8Layout& l = r.layout;
    const uint8_t* d = r.data.data();
    const auto w16 = loom::kernels::q8_dequantize_f16_ref(l, d);
    const auto x = loom::kcases::random_uniform(static_cast<size_t>(n_vec) * n_in, 32, -1.f, 1.f);
    std::vector<uint16_t> x16(x.size());
    loom::gguf::quantize(TensorType::F16, x.data(), x16.data(), x.size());
    const auto image = h16_x_ref(x.data(), n_vec, n_in);
    const q8::MatView m{d + l.qs_off, d + l.qh_off, d + l.um_off, d + l.sm_off, l.qs_row,
                        l.qh_row,     l.um_row,     l.sm_row,     units};
    bool perm = true;
    for (int k = 0; k < kUnit; ++k) perm = perm && h16_elem(h16_pos(k)) == k && h16_pos(h16_elem(k)) == k;
    size_t bad_values = 0, bad_slots = 0;
    const auto half_of = [](uint32_t word, int e) { return static_cast<uint16_t>(word >> (16 * e)); };
    for (int u = 0; u < units; ++u) {
        uint16_t a[2][16][16], b[2][16][8];  // [step][row or slot][slot or vector]
        for (int lane = 0; lane < 32; ++lane) {
            const int g = lane / 4, t = lane % 4;
            uint4 words[2];
            for (int hr = 0; hr < 2; ++hr) {
                q8::QuadWords<T> q{};
                q8::load_quad<T>(m, g + 8 * hr, u / 4, t, q);
                words[hr] = h16_unit<T>(q, u % 4);
                const uint32_t ws[4] = {words[hr].x, words[hr].y, words[hr].z, words[hr].w};
                for (int p = 0; p < 8; ++p) {
                    const size_t at = static_cast<size_t>(g + 8 * hr) * n_in + u * kUnit + h16_elem(8 * t + p);
                    bad_values += half_of(ws[p / 2], p % 2) != w16[at];
                }
            }
            uint4 xw;
            std::memcpy(&xw, image.data() + static_cast<size_t>(g) * n_in + u * kUnit + 8 * t, 16);
            for (int h = 0; h < 2; ++h) {
                const StepRegs s = step_regs(words[0], words[1], xw, h);
                for (int e = 0; e < 2; ++e) {
                    for (int reg = 0; reg < 4; ++reg)
                        a[h][g + 8 * (reg % 2)][2 * t + 8 * (reg / 2) + e] = half_of(s.a[reg], e);
                    for (int reg = 0; reg < 2; ++reg) b[h][2 * t + 8 * reg + e][g] = half_of(s.b[reg], e);
                }
            }
        }
        for (int h = 0; h < 2; ++h) {
            std::vector<int> seen(kUnit);
            for (int slot = 0; slot < 16; ++slot) {
                int match = -1, matches = 0;
                for (int k = 0; k < kUnit; ++k) {
                    bool same = true;
                    for (int row = 0; row < rows; ++row)
                        same = same && a[h][row][slot] == w16[static_cast<size_t>(row) * n_in + u * kUnit + k];
                    for (int v = 0; v < n_vec; ++v)
                        same = same && b[h][slot][v] == x16[static_cast<size_t>(v) * n_in + u * kUnit + k];
                    if (same) match = k, ++matches;
                }
                const bool ok = matches == 1 && match / 16 == h && seen[match]++ == 0;
                bad_slots += !ok;
            }
        }
    }
    // The fp16 model: Σ f16(w) f16(x) in f64 against the f64 reference of the unrounded values.
    std::vector<float> wv(w16.size()), xv(x16.size());
    for (size_t i = 0; i < w16.size(); ++i) wv[i] = q8::half_bits(w16[i]);
    for (size_t i = 0; i < x16.size(); ++i) xv[i] = q8::half_bits(x16[i]);
    const Reference model = reference(wv, xv, rows, n_in, n_vec), ref = reference(w.values, x, rows, n_in, n_vec);
    const std::vector<float> y(model.y.begin(), model.y.end());  // rounding to f32 adds <= 2^-24 |y|
    const double err = max_rel_err(y, ref.y, rows, rows, n_vec),
                 ratio = max_bound_ratio(y, ref, rows, rows, n_vec, n_in);
    const bool ok = perm && bad_values == 0 && bad_slots == 0 && ratio <= 1.0;
    std::printf(
        "  %s h16: positions %s, %zu lane fp16 values differ from q8_dequantize_f16_ref, %zu MMA k slots not one "
        "element of W and x; fp16 model vs f64: max rel err %.2e, max |err| / bound %.3f (<= 1) -> %s\n",
        qtype_name(T), perm ? "a bijection" : "NOT A BIJECTION", bad_values, bad_slots, err, ratio, ok ? "ok" : "FAIL");
    return ok;
}

int cpu_check() {
    std::printf("matvec_dev --cpu-check\n");
    bool ok = check_orders_cpu();
    for (TensorType t : q8::kTypes) {
        ok = check_type_cpu(t, 48, 4096) && ok;
        ok = check_type_cpu(t, 8, 14336) && ok;
    }
    ok = check_lanes_cpu<TensorType::Q4_0>() && ok;
    ok = check_lanes_cpu<TensorType::Q4_1>() && ok;
    ok = check_lanes_cpu<TensorType::Q5_0>() && ok;
    ok = check_lanes_cpu<TensorType::Q8_0>() && ok;
    ok = check_lanes_cpu<TensorType::Q4_K>() && ok;
    ok = check_lanes_cpu<TensorType::Q5_K>() && ok;
    ok = check_lanes_cpu<TensorType::Q6_K>() && ok;
    ok = check_h16_cpu<TensorType::Q4_0>() && ok;
    ok = check_h16_cpu<TensorType::Q4_1>() && ok;
    ok = check_h16_cpu<TensorType::Q5_0>() && ok;
    ok = check_h16_cpu<TensorType::Q8_0>() && ok;
    ok = check_h16_cpu<TensorType::Q4_K>() && ok;
    ok = check_h16_cpu<TensorType::Q5_K>() && ok;
    ok = check_h16_cpu<TensorType::Q6_K>() && ok;
    std::printf("cpu-check: %s\n", ok ? "all ok" : "FAILED");
    return ok ? 0 : 1;
}
// ---------------------------------------------------------------------------------------------
// Variants.

enum class Family { base, f32, q8, h16, cublas, gemm };

const char* family_name(Family f) {
    switch (f) {
        case Family::base: return "base";
        case Family::f32: return "f32";
        case Family::q8: return "q8";
        case Family::h16: return "h16";
        case Family::cublas: return "cublas";
        default: return "gemm";
    }
}

struct LaunchArgs {
    TensorType type;
    const uint8_t* gguf;     // this copy's GGUF bytes (base)
    const uint8_t* rep;      // this copy's repacked streams
    const Q8Layout* layout;  // their layout
    const float* x;          // (n_vec, n_in) f32: base and f32 family
    const uint8_t* xq;       // quantized x: q8 family
    const q8::XMeta* xm;
    const uint4* x16;  // fp16 x in fragment order: h16 family
    float* y;
    int n_vec;
    cudaStream_t stream;
};

q8::MatView view_of(const LaunchArgs& a) {
    const Q8Layout& l = *a.layout;
    return {a.rep + l.qs_off, a.rep + l.qh_off, a.rep + l.um_off, a.rep + l.sm_off, l.qs_row,
            l.qh_row,         l.um_row,         l.sm_row,         l.n_in / kUnit};
}

q8::ProductParams q8_params(const LaunchArgs& a) {
    return {view_of(a), a.xq, a.xm, a.y, a.layout->n_in, a.layout->rows, a.n_vec};
}

H16Params h16_params(const LaunchArgs& a) {
    if (a.layout->n_in / kUnit / 4 < kH16Segments)
        throw std::invalid_argument("h16: n_in " + std::to_string(a.layout->n_in) + " < 1024 leaves a segment empty");
    return {view_of(a), a.x16, a.y, a.layout->n_in, a.layout->rows, a.n_vec};
}

struct Variant {
    std::string name;
    Family family;
    int max_vec;  // largest n_vec it takes
    std::function<void(const LaunchArgs&)> launch;
};

template <TensorType T, int RPW, int WPB, int U>
void launch_f32(const LaunchArgs& a) {
    q8::launch_f32<T, RPW, WPB, U>({view_of(a), a.x, a.y, a.layout->n_in, a.layout->rows, a.n_vec}, a.stream);
}

template <TensorType T, int RPW, int WPB, int U>
void launch_dp4a(const LaunchArgs& a) {
    q8::launch_rows<T, RPW, WPB, U>(q8_params(a), a.stream);
}

template <TensorType T, int MT>
void launch_mma(const LaunchArgs& a) {
    q8::launch_mma<T, MT>(q8_params(a), a.stream);
}

// h16 decode: NT x 8 vectors per block; a variable-width variant picks NT 2 up to 16 vectors, else 4.
template <TensorType T, int NT, int RT, int QB>
void launch_h16_rows(const LaunchArgs& a) {
    launch_h16_rows_n<T, NT, RT, QB>(h16_params(a), a.stream);
}

template <TensorType T, int RT, int QB>
void launch_h16_rows_wide(const LaunchArgs& a) {
    if (a.n_vec <= 16) return launch_h16_rows_n<T, 2, RT, QB>(h16_params(a), a.stream);
    launch_h16_rows_n<T, 4, RT, QB>(h16_params(a), a.stream);
}

template <TensorType T, int WM, int WN>
void launch_h16_tile(const LaunchArgs& a) {
    launch_h16_tile_n<T, WM, WN>(h16_params(a), a.stream);
}

// The library's public entry: kernels::q8_product with the automatic choice.
void launch_library(const LaunchArgs& a) {
    loom::kernels::q8_product({*a.layout, a.rep}, reinterpret_cast<const int8_t*>(a.xq), a.xm, a.y, a.n_vec,
                              loom::kernels::Q8Kernel::automatic, a.stream);
}

template <TensorType T>
std::vector<Variant> variants_of() {
    const auto base = [](const LaunchArgs& a) {
        loom::kernels::matvec(a.type, a.gguf, a.x, a.y, a.layout->n_in, a.layout->rows, a.n_vec, a.stream);
    };
    std::vector<Variant> out{{"base", Family::base, kMaxVec, base}};
    if constexpr (has_f32_family(T)) {
        out.push_back({"f32 r1w4", Family::f32, kMaxVec, launch_f32<T, 1, 4, 1>});
        out.push_back({"f32 r2w4", Family::f32, kMaxVec, launch_f32<T, 2, 4, 1>});
        out.push_back({"f32 r1w8u2", Family::f32, kMaxVec, launch_f32<T, 1, 8, 2>});
        out.push_back({"f32 r4w2", Family::f32, kMaxVec, launch_f32<T, 4, 2, 1>});
    }
    const std::vector<Variant> q8_variants{
        {"dp4a r1w4", Family::q8, kMaxVec, launch_dp4a<T, 1, 4, 1>},
        {"dp4a r2w4", Family::q8, kMaxVec, launch_dp4a<T, 2, 4, 1>},
        {"dp4a r4w4", Family::q8, kMaxVec, launch_dp4a<T, 4, 4, 1>},
        {"dp4a r1w8u2", Family::q8, kMaxVec, launch_dp4a<T, 1, 8, 2>},
        {"dp4a r2w8u2", Family::q8, kMaxVec, launch_dp4a<T, 2, 8, 2>},
        // every pass of a 4096-wide row in flight at once: the small products (o, k/v) are a few sequential
        // trips to memory per warp at one vector
        {"dp4a r2w4u2", Family::q8, kMaxVec, launch_dp4a<T, 2, 4, 2>},
        {"dp4a r2w4u4", Family::q8, kMaxVec, launch_dp4a<T, 2, 4, 4>},
        {"dp4a r1w4u4", Family::q8, kMaxVec, launch_dp4a<T, 1, 4, 4>},
        {"mma m1", Family::q8, kMaxVec, launch_mma<T, 1>},
        {"mma m2", Family::q8, kMaxVec, launch_mma<T, 2>},
        {"q8_product", Family::q8, kMaxVec, launch_library},
    };
    out.insert(out.end(), q8_variants.begin(), q8_variants.end());
    // h16: (a) decode, one n8 tile of vectors per block of 16 (q4: 4 quads of loads at once) or 32 rows (r2);
    // (b) 16 or 32 vectors per block (each block reads all of x, so 32 rows read half as much x per weight);
    // (c) prefill tiles, rows x vectors per block. Every one takes any n_vec; max_vec only bounds the timing.
    const std::vector<Variant> h16_variants{
        {"h16 n8 q4", Family::h16, kMaxVec, launch_h16_rows<T, 1, 1, 4>},
        {"h16 n8 r2", Family::h16, kMaxVec, launch_h16_rows<T, 1, 2, 2>},
        {"h16 n32", Family::h16, kMaxVecH16, launch_h16_rows_wide<T, 1, 2>},
        {"h16 n32 r2", Family::h16, kMaxVec, launch_h16_rows_wide<T, 2, 1>},
        {"h16 t128x64", Family::h16, kMaxVecH16, launch_h16_tile<T, 4, 2>},
        {"h16 t64x128", Family::h16, kMaxVecH16, launch_h16_tile<T, 2, 4>},
        {"h16 t128x128", Family::h16, kMaxVecH16, launch_h16_tile<T, 4, 4>},
    };
    out.insert(out.end(), h16_variants.begin(), h16_variants.end());
    return out;
}

std::vector<Variant> variants(TensorType t) {
    switch (t) {
        case TensorType::Q4_0: return variants_of<TensorType::Q4_0>();
        case TensorType::Q4_1: return variants_of<TensorType::Q4_1>();
        case TensorType::Q5_0: return variants_of<TensorType::Q5_0>();
        case TensorType::Q8_0: return variants_of<TensorType::Q8_0>();
        case TensorType::Q4_K: return variants_of<TensorType::Q4_K>();
        case TensorType::Q5_K: return variants_of<TensorType::Q5_K>();
        case TensorType::Q6_K: return variants_of<TensorType::Q6_K>();
        default: return {};
    }
}

// ---------------------------------------------------------------------------------------------
// Harness.

struct Options {
    bool cpu_check = false;
    std::vector<TensorType> types{TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q6_K};
    std::vector<int> nvecs{1, 2, 4, 8, 16, 32};
    std::vector<Family> families{Family::base, Family::f32, Family::q8, Family::h16, Family::cublas};
    int runs = 21;
    std::string csv;
    bool wants(Family f) const {
        if (f == Family::gemm) f = Family::cublas;
        return std::find(families.begin(), families.end(), f) != families.end();
    }
};

struct Shape {
    const char* name;
    int n_in, n_out;
    int per_layer;  // how many such products a Llama-3-8B layer runs
};
constexpr Shape kShapes[] = {
    {"q/o 4096x4096", 4096, 4096, 2},
    {"k/v 4096x1024", 4096, 1024, 2},
    {"gate+up 4096x28672", 4096, 28672, 1},
    {"down 14336x4096", 14336, 4096, 1},
};
constexpr int kTileRows = 256;
constexpr int kLayers = 32;  // Llama-3-8B

double tflops(const Shape& s, int n_vec, double us) { return 2.0 * s.n_in * s.n_out * n_vec / (us * 1e-6) / 1e12; }

struct Device {
    cudaStream_t stream = nullptr;
    cudaEvent_t start = nullptr, stop = nullptr;
    size_t l2 = 0;
    double copy_gbps = 0;
};

// One (type, shape) on the device: `copies` copies of the GGUF bytes and of the repacked streams.
struct DeviceMatrix {
    uint8_t* gguf = nullptr;
    uint8_t* rep = nullptr;
    size_t gguf_stride = 0, rep_stride = 0;
    int copies = 1;
    ~DeviceMatrix() {
        cudaFree(gguf);
        cudaFree(rep);
    }
};

struct Result {
    double us = NAN, gbps = NAN, err = NAN;
    double bound = NAN, model = NAN;  // h16: max |y - ref| / h16_bound; max err against the fp16 model
};

struct VariantRow {
    std::string name;
    Family family;
    std::map<int, Result> by_n;
    bool invariant = true, bits_equal = true;
    std::string first_diff;  // where invariance or the family's bits first failed
};

double median_launch_us(const Device& dev, const std::function<void(int)>& launch, int copies, int runs) {
    for (int w = 0; w < 3; ++w) launch(w % copies);
    std::vector<float> ms;
    for (int r = 0; r < runs; ++r) {
        LOOM_CUDA_CHECK(cudaEventRecord(dev.start, dev.stream));
        for (int c = 0; c < copies; ++c) launch(c);
        LOOM_CUDA_CHECK(cudaEventRecord(dev.stop, dev.stream));
        LOOM_CUDA_CHECK(cudaEventSynchronize(dev.stop));
        float t = 0;
        LOOM_CUDA_CHECK(cudaEventElapsedTime(&t, dev.start, dev.stop));
        ms.push_back(t / copies);
    }
    LOOM_CUDA_CHECK(cudaGetLastError());
    std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
    return ms[ms.size() / 2] * 1e3;
}

// Everything one (type, shape) needs on the host: GGUF bytes (tile repeated), repacked streams, x, its
// quantization, the f64 reference, the q8 emulation and the fp16 images (x, the tile's weights).
struct HostCase {
    TensorType type;
    Shape shape;
    int n_vec = kMaxVec;  // vectors of x and of the reference: the largest --nvec, at least kMaxVec
    std::vector<uint8_t> gguf;
    Repacked rep;
    double repack_ms = 0;
    std::vector<float> x;       // (n_vec, n_in)
    Q8X xq;                     // the first kMaxVec vectors (q8 rows)
    Reference ref;              // (n_vec, tile)
    std::vector<float> emu;     // (kMaxVec, tile): q8_product_ref
    std::vector<uint16_t> x16;  // h16_x_ref of x
    std::vector<uint16_t> w16;  // q8_dequantize_f16_ref of the tile rows
    std::vector<double> model;  // (n_vec, tile): the f64 product of the fp16 values (h16's inputs, exactly)
};

HostCase make_case(TensorType t, const Shape& s, uint32_t seed, const Options& opt) {
    HostCase h{t, s, std::max(kMaxVec, opt.nvecs.back())};
    const int tile = std::min(kTileRows, s.n_out);
    const auto w = loom::kcases::random_matrix(t, tile, s.n_in, seed);
    const size_t row_bytes = w.bytes.size() / tile;
    h.gguf.resize(row_bytes * s.n_out);
    for (int r = 0; r < s.n_out; ++r)
        std::memcpy(h.gguf.data() + r * row_bytes, w.bytes.data() + (r % tile) * row_bytes, row_bytes);
    const auto t0 = std::chrono::steady_clock::now();
    h.rep = repack(t, h.gguf.data(), s.n_out, s.n_in);
    h.repack_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    h.x = loom::kcases::random_uniform(static_cast<size_t>(h.n_vec) * s.n_in, seed + 1, -1.f, 1.f);
    h.xq = loom::kernels::q8_quantize_x_ref(h.x.data(), kMaxVec, s.n_in);
    h.ref = reference(w.values, h.x, tile, s.n_in, h.n_vec);
    const Repacked tile_rep = repack(t, w.bytes.data(), tile, s.n_in);
    if (opt.wants(Family::q8))
        h.emu = loom::kernels::q8_product_ref(tile_rep.layout, tile_rep.data.data(), h.xq);  // (kMaxVec, tile)
    if (opt.wants(Family::h16) || opt.wants(Family::cublas)) {
        h.x16 = h16_x_ref(h.x.data(), h.n_vec, s.n_in);
        h.w16 = loom::kernels::q8_dequantize_f16_ref(tile_rep.layout, tile_rep.data.data());
        std::vector<uint16_t> x16(h.x.size());
        loom::gguf::quantize(TensorType::F16, h.x.data(), x16.data(), x16.size());
        std::vector<float> wv(h.w16.size()), xv(x16.size());
        std::transform(h.w16.begin(), h.w16.end(), wv.begin(), q8::half_bits);
        std::transform(x16.begin(), x16.end(), xv.begin(), q8::half_bits);
        h.model = reference(wv, xv, tile, s.n_in, h.n_vec).y;
    }
    return h;
}

template <class T>
T* device_alloc(size_t count) {
    T* p = nullptr;
    LOOM_CUDA_CHECK(cudaMalloc(&p, count * sizeof(T)));
    return p;
}

struct DeviceInputs {
    float* x = nullptr;
    uint8_t* xq = nullptr;
    q8::XMeta* xm = nullptr;
    uint4* x16 = nullptr;
    float* y = nullptr;
    ~DeviceInputs() {
        cudaFree(x);
        cudaFree(xq);
        cudaFree(xm);
        cudaFree(x16);
        cudaFree(y);
    }
};

LaunchArgs args_for(const HostCase& h, const DeviceMatrix& m, const DeviceInputs& in, int copy, int n_vec,
                    cudaStream_t stream) {
    return {h.type,
            m.gguf + copy * m.gguf_stride,
            m.rep + copy * m.rep_stride,
            &h.rep.layout,
            in.x,
            in.xq,
            in.xm,
            in.x16,
            in.y,
            n_vec,
            stream};
}

// Quantizes x on the device, checks it against the CPU's bytes and times it per n_vec (q8 rows: <= kMaxVec).
void run_quantize_x(const Device& dev, const HostCase& h, const DeviceInputs& in, const Options& opt) {
    const int n_in = h.shape.n_in, units = n_in / kUnit;
    const auto launch = [&](int n) {
        loom::kernels::q8_quantize_x(in.x, reinterpret_cast<int8_t*>(in.xq), in.xm, n, n_in, dev.stream);
    };
    LOOM_CUDA_CHECK(cudaMemsetAsync(in.xq, 0x7F, static_cast<size_t>(kMaxVec) * n_in, dev.stream));
    launch(kMaxVec);
    std::vector<uint8_t> got(static_cast<size_t>(kMaxVec) * n_in);
    std::vector<q8::XMeta> meta(static_cast<size_t>(kMaxVec) * units);
    LOOM_CUDA_CHECK(cudaMemcpy(got.data(), in.xq, got.size(), cudaMemcpyDeviceToHost));
    LOOM_CUDA_CHECK(cudaMemcpy(meta.data(), in.xm, meta.size() * sizeof(q8::XMeta), cudaMemcpyDeviceToHost));
    const auto want = loom::kernels::q8_device_order(h.xq);
    size_t bad = std::memcmp(got.data(), want.data(), got.size()) != 0;
    if (std::memcmp(meta.data(), h.xq.meta.data(), meta.size() * sizeof(q8::XMeta)) != 0) ++bad;
    std::printf("    quantize_x (n_in %d): %s the CPU's bytes; us per n_vec:", n_in, bad ? "DIFFERS FROM" : "equals");
    for (int n : opt.nvecs)
        if (n <= kMaxVec)
            std::printf(" %d:%.1f", n,
                        median_launch_us(
                            dev, [&](int) { launch(n); }, 1, opt.runs));
    std::printf("\n");
}

// h16's x to fp16 on the device: checked against h16_x_ref's bytes, timed per n_vec (us by n_vec).
std::map<int, double> run_h16_x(const Device& dev, const HostCase& h, const DeviceInputs& in, const Options& opt) {
    const int n_in = h.shape.n_in;
    const auto launch = [&](int n) {
        const int64_t threads = int64_t{n} * n_in / 8;
        loom::kernels::launch_kernel(
            "h16_x_kernel", h16_x_kernel,
            loom::kernels::LaunchShape{dim3(static_cast<unsigned>((threads + 255) / 256)), dim3(256), 0, dev.stream},
            in.x, in.x16, n, n_in);
    };
    LOOM_CUDA_CHECK(cudaMemsetAsync(in.x16, 0x7F, h.x16.size() * 2, dev.stream));
    launch(h.n_vec);
    std::vector<uint16_t> got(h.x16.size());
    LOOM_CUDA_CHECK(cudaMemcpy(got.data(), in.x16, got.size() * 2, cudaMemcpyDeviceToHost));
    const bool same = std::memcmp(got.data(), h.x16.data(), got.size() * 2) == 0;
    std::map<int, double> us;
    std::printf("    h16 x -> fp16 (n_in %d): %s the CPU's bytes; us per n_vec:", n_in,
                same ? "equals" : "DIFFERS FROM");
    for (int n : opt.nvecs) {
        us[n] = median_launch_us(
            dev, [&](int) { launch(n); }, 1, opt.runs);
        std::printf(" %d:%.1f", n, us[n]);
    }
    std::printf("\n");
    return us;
}

// h16_unit on the device over the tile rows of copy 0, against q8_dequantize_f16_ref bit for bit.
template <TensorType T>
void run_h16_dequant_t(const Device& dev, const HostCase& h, const DeviceMatrix& m) {
    const Q8Layout& l = h.rep.layout;
    const int tile = std::min(kTileRows, h.shape.n_out), n_in = l.n_in;
    const q8::MatView w{m.rep + l.qs_off, m.rep + l.qh_off, m.rep + l.um_off, m.rep + l.sm_off, l.qs_row,
                        l.qh_row,         l.um_row,         l.sm_row,         n_in / kUnit};
    uint4* out = device_alloc<uint4>(static_cast<size_t>(tile) * n_in / 8);
    LOOM_CUDA_CHECK(cudaMemsetAsync(out, 0x7F, static_cast<size_t>(tile) * n_in * 2, dev.stream));
    const int64_t threads = int64_t{tile} * n_in / kUnit;
    h16_dequant_kernel<T><<<static_cast<unsigned>((threads + 255) / 256), 256, 0, dev.stream>>>(w, tile, out);
    std::vector<uint16_t> got(static_cast<size_t>(tile) * n_in);
    LOOM_CUDA_CHECK(cudaMemcpyAsync(got.data(), out, got.size() * 2, cudaMemcpyDeviceToHost, dev.stream));
    LOOM_CUDA_CHECK(cudaStreamSynchronize(dev.stream));
    cudaFree(out);
    size_t bad = 0, first = got.size();
    for (size_t i = 0; i < got.size(); ++i) {
        const size_t natural = i / kUnit * kUnit + h16_elem(static_cast<int>(i % kUnit));
        if (got[i] != h.w16[natural]) ++bad, first = std::min(first, natural);
    }
    std::printf(
        "    h16 in-register dequantization (%d rows): %zu of %zu fp16 values differ from q8_dequantize_f16_ref", tile,
        bad, got.size());
    if (bad) std::printf(" (first: row %zu, element %zu)", first / n_in, first % n_in);
    std::printf("\n");
}

void run_h16_dequant(const Device& dev, const HostCase& h, const DeviceMatrix& m) {
    switch (h.type) {
        case TensorType::Q4_0: return run_h16_dequant_t<TensorType::Q4_0>(dev, h, m);
        case TensorType::Q4_1: return run_h16_dequant_t<TensorType::Q4_1>(dev, h, m);
        case TensorType::Q5_0: return run_h16_dequant_t<TensorType::Q5_0>(dev, h, m);
        case TensorType::Q8_0: return run_h16_dequant_t<TensorType::Q8_0>(dev, h, m);
        case TensorType::Q4_K: return run_h16_dequant_t<TensorType::Q4_K>(dev, h, m);
        case TensorType::Q5_K: return run_h16_dequant_t<TensorType::Q5_K>(dev, h, m);
        case TensorType::Q6_K: return run_h16_dequant_t<TensorType::Q6_K>(dev, h, m);
        default: return;
    }
}

std::string describe_diff(int n_vec, size_t i, int n_out, float got, float want, const std::string& against) {
    char buf[192];
    uint32_t gb, wb;
    std::memcpy(&gb, &got, 4);
    std::memcpy(&wb, &want, 4);
    std::snprintf(buf, sizeof buf, "n_vec %d, vector %zu, row %zu: %.9g (0x%08x) vs %.9g (0x%08x) %s", n_vec, i / n_out,
                  i % n_out, got, gb, want, wb, against.c_str());
    return buf;
}

// The h16 family's outputs by n_vec, from the first variant that ran each n_vec (its name, its y).
using H16First = std::map<int, std::pair<std::string, std::vector<float>>>;

// The family's bits of one n_vec: q8 against the emulation, f32 against the first f32 variant, h16 against
// the first h16 variant that ran this n_vec (or it becomes that one).
void check_bits(VariantRow& row, const HostCase& h, int n, const std::vector<float>& y,
                const std::vector<float>& f32_first, H16First& h16_first) {
    const int n_out = h.shape.n_out, tile = std::min(kTileRows, n_out);
    const std::vector<float>* other = nullptr;
    std::string against;
    if (row.family == Family::f32 && !f32_first.empty()) other = &f32_first, against = "(the first f32 variant)";
    if (row.family == Family::h16) {
        const auto it = h16_first.find(n);
        if (it == h16_first.end()) {
            h16_first[n] = {row.name, y};
            return;
        }
        other = &it->second.second, against = "(" + it->second.first + ")";
    }
    for (size_t i = 0; i < y.size() && row.family != Family::base; ++i) {
        const float want = row.family == Family::q8 ? h.emu[i / n_out * tile + i % n_out % tile]
                           : other                  ? (*other)[i]
                                                    : y[i];
        if (std::memcmp(&y[i], &want, 4) != 0) {
            if (row.first_diff.empty())
                row.first_diff = describe_diff(n, i, n_out, y[i], want, other ? against : "(q8 emulation)");
            row.bits_equal = false;
            return;
        }
    }
}

// Validates (poisoned output, f64 reference and bound, batch invariance, family bits) and times one variant.
VariantRow run_variant(const Device& dev, const HostCase& h, const DeviceMatrix& m, const DeviceInputs& in,
                       const Variant& var, const Options& opt, std::vector<float>& f32_first, H16First& h16_first) {
    const int n_out = h.shape.n_out, tile = std::min(kTileRows, n_out);
    const double weight_bytes = static_cast<double>(h.gguf.size());
    VariantRow row{var.name, var.family};
    std::map<int, std::vector<float>> outs;
    for (int n : opt.nvecs) {
        if (n > var.max_vec) continue;
        const auto launch = [&](int copy) { var.launch(args_for(h, m, in, copy, n, dev.stream)); };
        LOOM_CUDA_CHECK(cudaMemsetAsync(in.y, 0xFF, static_cast<size_t>(h.n_vec) * n_out * 4, dev.stream));
        launch(0);
        auto& y = outs[n];
        y.resize(static_cast<size_t>(n) * n_out);
        LOOM_CUDA_CHECK(cudaMemcpyAsync(y.data(), in.y, y.size() * 4, cudaMemcpyDeviceToHost, dev.stream));
        LOOM_CUDA_CHECK(cudaStreamSynchronize(dev.stream));
        Result res;
        res.err = max_rel_err(y, h.ref.y, n_out, tile, n);
        if (var.family == Family::h16) {
            res.bound = max_bound_ratio(y, h.ref, n_out, tile, n, h.shape.n_in);
            res.model = max_rel_err(y, h.model, n_out, tile, n);
        }
        res.us = median_launch_us(dev, launch, m.copies, opt.runs);
        res.gbps = weight_bytes / (res.us * 1e-6) / 1e9;
        row.by_n[n] = res;
    }
    if (outs.empty()) return row;
    const auto& [widest_n, widest] = *outs.rbegin();
    for (const auto& [n, y] : outs) {
        const auto miss = std::mismatch(y.begin(), y.end(), widest.begin(),
                                        [](float a, float b) { return std::memcmp(&a, &b, 4) == 0; });
        if (miss.first != y.end()) {
            row.invariant = false;
            if (row.first_diff.empty())
                row.first_diff = describe_diff(n, static_cast<size_t>(miss.first - y.begin()), n_out, *miss.first,
                                               *miss.second, "(n_vec " + std::to_string(widest_n) + ")");
        }
        check_bits(row, h, n, y, f32_first, h16_first);
    }
    if (var.family == Family::f32 && f32_first.empty()) f32_first = widest;
    return row;
}

void print_row(const VariantRow& r, const Options& opt, double copy_gbps, std::FILE* csv, const HostCase& h) {
    double err = 0, bound = 0, model = 0;
    std::printf("  %-12s", r.name.c_str());
    for (int n : opt.nvecs) {
        const auto it = r.by_n.find(n);
        if (it == r.by_n.end()) {
            std::printf(" | %7s %5s %4s", "-", "-", "-");
            continue;
        }
        const Result& x = it->second;
        err = std::max(err, x.err);
        bound = std::max(bound, x.bound);
        model = std::max(model, x.model);
        if (n <= kMaxVec)
            std::printf(" | %7.1f %5.0f %3.0f%%", x.us, x.gbps, 100 * x.gbps / copy_gbps);
        else
            std::printf(" | %7.1f %5.0f %4s", x.us, tflops(h.shape, n, x.us), "TF/s");
        if (csv)
            std::fprintf(csv, "%s,%s,%s,%d,%.3f,%.1f,%.4f,%.2f,%.3e,%.3f,%.3e,%d,%d\n", qtype_name(h.type),
                         h.shape.name, r.name.c_str(), n, x.us, x.gbps, x.gbps / copy_gbps, tflops(h.shape, n, x.us),
                         x.err, x.bound, x.model, r.invariant, r.bits_equal);
    }
    const char* bits = r.family == Family::base  ? "-"
                       : !r.bits_equal           ? "NO"
                       : r.family == Family::q8  ? "=emu"
                       : r.family == Family::h16 ? "=h16"
                                                 : "=f32";
    std::printf(" | %8.1e %-3s %-4s", err, r.invariant ? "yes" : "NO", bits);
    if (r.family == Family::h16) std::printf(" %5.3f %7.1e", bound, model);
    std::printf("\n");
    if (!r.first_diff.empty()) std::printf("      first difference: %s\n", r.first_diff.c_str());
}

using Timings = std::map<std::string, std::map<int, double>>;  // variant -> n_vec -> µs per layer

// cudaFree on scope exit.
struct DeviceBuffer {
    void* p = nullptr;
    explicit DeviceBuffer(size_t bytes) { LOOM_CUDA_CHECK(cudaMalloc(&p, bytes)); }
    ~DeviceBuffer() { cudaFree(p); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// Today's prefill path at n_vec > kMaxVec: q8_dequantize_f16 of this copy's repacked streams, x to fp16
// (dequantize_to_f16 of F32), gemm_half (cuBLAS, fp32 accumulation); validated against the f64 reference
// with the h16 bound, timed whole and by parts, set beside the best h16 variant (h16_best: n -> name, us).
void run_cublas(const Device& dev, const HostCase& h, const DeviceMatrix& m, const DeviceInputs& in, const Options& opt,
                std::FILE* csv, Timings& layer, std::map<std::string, Family>& families,
                const std::map<int, std::pair<std::string, double>>& h16_best, const std::map<int, double>& x_us) {
    namespace kn = loom::kernels;
    const int n_in = h.shape.n_in, n_out = h.shape.n_out, tile = std::min(kTileRows, n_out);
    DeviceBuffer w16(static_cast<size_t>(n_out) * n_in * 2), x16(static_cast<size_t>(h.n_vec) * n_in * 2),
        ws(kn::GemmContext::cublas_workspace_bytes());
    kn::GemmContext ctx(ws.p, kn::GemmContext::cublas_workspace_bytes(), dev.stream);
    auto* w = static_cast<uint16_t*>(w16.p);
    auto* x = static_cast<uint16_t*>(x16.p);
    for (int n : opt.nvecs) {
        if (n <= kMaxVec) continue;
        const auto dq = [&](int c) { kn::q8_dequantize_f16({h.rep.layout, m.rep + c * m.rep_stride}, w, dev.stream); };
        const auto xc = [&](int) { kn::dequantize_to_f16(TensorType::F32, in.x, x, n_in, n, dev.stream); };
        const auto mm = [&](int) {
            kn::gemm_half(ctx, kn::HalfType::f16, w, x, in.y, n_in, n_out, n, false, dev.stream);
        };
        const auto all = [&](int c) { dq(c), xc(c), mm(c); };
        LOOM_CUDA_CHECK(cudaMemsetAsync(in.y, 0xFF, static_cast<size_t>(n) * n_out * 4, dev.stream));
        all(0);
        std::vector<float> y(static_cast<size_t>(n) * n_out);
        LOOM_CUDA_CHECK(cudaMemcpyAsync(y.data(), in.y, y.size() * 4, cudaMemcpyDeviceToHost, dev.stream));
        LOOM_CUDA_CHECK(cudaStreamSynchronize(dev.stream));
        const double err = max_rel_err(y, h.ref.y, n_out, tile, n),
                     bound = max_bound_ratio(y, h.ref, n_out, tile, n, n_in);
        const double model = max_rel_err(y, h.model, n_out, tile, n);
        const double t_dq = median_launch_us(dev, dq, m.copies, opt.runs), t_x = median_launch_us(dev, xc, 1, opt.runs);
        const double t_mm = median_launch_us(dev, mm, 1, opt.runs),
                     t_all = median_launch_us(dev, all, m.copies, opt.runs);
        std::printf(
            "  cuBLAS path n=%d: q8_dequantize_f16 %.1f us + x -> fp16 %.1f us + gemm_half %.1f us (%.0f TFLOP/s) = "
            "%.1f us (%.0f TFLOP/s); max err %.1e, |err| / bound %.3f, vs the fp16 model %.1e\n",
            n, t_dq, t_x, t_mm, tflops(h.shape, n, t_mm), t_all, tflops(h.shape, n, t_all), err, bound, model);
        const auto best = h16_best.find(n);
        if (best != h16_best.end()) {
            const double xu = x_us.count(n) ? x_us.at(n) : 0.0, total = best->second.second + xu;
            std::printf(
                "  h16 best n=%d: %s %.1f us (%.0f TFLOP/s) + x -> fp16 %.1f us = %.1f us: %.2fx the cuBLAS path\n", n,
                best->second.first.c_str(), best->second.second, tflops(h.shape, n, best->second.second), xu, total,
                total / t_all);
        }
        if (csv)
            std::fprintf(
                csv,
                "%s,%s,cublas dq+x+gemm,%d,%.3f,,,%.2f,%.3e,%.3f,%.3e,,\n%s,%s,cublas gemm alone,%d,%.3f,,,%.2f,,,,,\n",
                qtype_name(h.type), h.shape.name, n, t_all, tflops(h.shape, n, t_all), err, bound, model,
                qtype_name(h.type), h.shape.name, n, t_mm, tflops(h.shape, n, t_mm));
        layer["cublas dq+x+gemm"][n] += h.shape.per_layer * t_all;
        layer["cublas gemm alone"][n] += h.shape.per_layer * t_mm;
    }
    families["cublas dq+x+gemm"] = Family::cublas;
    families["cublas gemm alone"] = Family::gemm;
}

void run_case(const Device& dev, TensorType t, const Shape& s, const Options& opt, std::FILE* csv, Timings& layer,
              std::map<std::string, Family>& families) {
    const HostCase h = make_case(t, s, 100 + static_cast<uint32_t>(t) * 10 + static_cast<uint32_t>(s.n_out % 97), opt);
    DeviceMatrix m;
    m.gguf_stride = align256(h.gguf.size());
    m.rep_stride = h.rep.data.size();
    m.copies = static_cast<int>(std::clamp<size_t>((4 * dev.l2 + m.gguf_stride - 1) / m.gguf_stride, 1, 96));
    m.gguf = device_alloc<uint8_t>(m.gguf_stride * m.copies);
    m.rep = device_alloc<uint8_t>(m.rep_stride * m.copies);
    for (int c = 0; c < m.copies; ++c) {
        LOOM_CUDA_CHECK(cudaMemcpy(m.gguf + c * m.gguf_stride, h.gguf.data(), h.gguf.size(), cudaMemcpyHostToDevice));
        LOOM_CUDA_CHECK(
            cudaMemcpy(m.rep + c * m.rep_stride, h.rep.data.data(), h.rep.data.size(), cudaMemcpyHostToDevice));
    }
    DeviceInputs in;
    in.x = device_alloc<float>(h.x.size());
    in.xq = device_alloc<uint8_t>(static_cast<size_t>(kMaxVec) * s.n_in);
    in.xm = device_alloc<q8::XMeta>(h.xq.meta.size());
    in.x16 = device_alloc<uint4>(h.x.size() / 8);
    in.y = device_alloc<float>(static_cast<size_t>(h.n_vec) * s.n_out);
    LOOM_CUDA_CHECK(cudaMemcpy(in.x, h.x.data(), h.x.size() * 4, cudaMemcpyHostToDevice));
    std::printf("\n  %s %s: %.1f MB of weights, %d copies; repack (CPU, once at load) %.0f ms = %.0f MB/s\n",
                qtype_name(t), s.name, h.gguf.size() / 1e6, m.copies, h.repack_ms, h.gguf.size() / 1e3 / h.repack_ms);
    if (opt.wants(Family::q8)) run_quantize_x(dev, h, in, opt);
    std::map<int, double> x_us;
    if (opt.wants(Family::h16)) {
        x_us = run_h16_x(dev, h, in, opt);
        run_h16_dequant(dev, h, m);
    }
    if (opt.nvecs.back() > kMaxVec && (opt.wants(Family::base) || opt.wants(Family::f32) || opt.wants(Family::q8)))
        std::printf(
            "    n_vec > %d: h16 and cuBLAS only (base: kernels::matvec takes <= %d vectors; f32, q8: this "
            "bench's references of their orders cover %d)\n",
            kMaxVec, kMaxVec, kMaxVec);
    std::printf("  %-12s", "variant");
    for (int n : opt.nvecs) std::printf(n <= kMaxVec ? " | n=%-3d us GB/s  %%cp" : " | n=%-3d us TFLOP/s  ", n);
    std::printf(" | max err  inv bits bound vs fp16\n");
    std::vector<float> f32_first;
    H16First h16_first;
    std::map<int, std::pair<std::string, double>> h16_best;
    for (const auto& var : variants(t)) {
        if (!opt.wants(var.family)) continue;
        const VariantRow row = run_variant(dev, h, m, in, var, opt, f32_first, h16_first);
        print_row(row, opt, dev.copy_gbps, csv, h);
        families[var.name] = var.family;
        for (const auto& [n, r] : row.by_n) {
            layer[var.name][n] += s.per_layer * r.us;
            if (var.family != Family::h16) continue;
            const auto best = h16_best.find(n);
            if (best == h16_best.end() || r.us < best->second.second) h16_best[n] = {var.name, r.us};
        }
    }
    if (opt.wants(Family::cublas) && opt.nvecs.back() > kMaxVec)
        run_cublas(dev, h, m, in, opt, csv, layer, families, h16_best, x_us);
    std::fflush(stdout);
}

void print_summary(TensorType t, const Timings& layer, const std::map<std::string, Family>& families,
                   const Options& opt, double copy_gbps) {
    double layer_bytes = 0, layer_macs = 0;
    for (const auto& s : kShapes) {
        layer_bytes += s.per_layer * static_cast<double>(loom::gguf::tensor_bytes(t, uint64_t(s.n_in) * s.n_out));
        layer_macs += s.per_layer * static_cast<double>(s.n_in) * s.n_out;
    }
    std::printf(
        "\n%s best per n_vec (one Llama-3-8B layer's products: 2 q/o + 2 k/v + gate+up + down = %.1f MB; "
        "floor at copy bandwidth %.1f us):\n",
        qtype_name(t), layer_bytes / 1e6, layer_bytes / copy_gbps / 1e3);
    for (int n : opt.nvecs) {
        std::map<Family, std::pair<std::string, double>> best;
        for (const auto& [name, by_n] : layer) {
            const auto it = by_n.find(n);
            if (it == by_n.end()) continue;
            auto& b = best[families.at(name)];
            if (b.first.empty() || it->second < b.second) b = {name, it->second};
        }
        std::printf("  n=%-3d", n);
        for (const auto& [fam, b] : best) {
            std::printf(" | %-6s %-17s %8.1f us/layer", family_name(fam), b.first.c_str(), b.second);
            if (n <= kMaxVec)
                std::printf(" %3.0f%% of copy", 100 * layer_bytes / (b.second * 1e-6) / 1e9 / copy_gbps);
            else
                std::printf(" %4.0f TFLOP/s", 2 * layer_macs * n / (b.second * 1e-6) / 1e12);
        }
        std::printf("\n");
        if (n <= kMaxVec) continue;
        std::printf("        %d layers' products for %d tokens:", kLayers, n);
        for (const auto& [fam, b] : best)
            std::printf(" %s %.2f ms (<= %.0f tok/s);", family_name(fam), kLayers * b.second / 1e3,
                        n / (kLayers * b.second * 1e-6));
        std::printf("\n");
    }
}

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size()) {
        const size_t comma = s.find(',', start);
        out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const bool has_value = i + 1 < argc;
        if (a == "--cpu-check") {
            o.cpu_check = true;
        } else if (a == "--types" && has_value) {
            o.types.clear();
            for (const auto& n : split(argv[++i])) {
                const auto it = std::find_if(std::begin(q8::kTypes), std::end(q8::kTypes),
                                             [&](TensorType t) { return type_arg(t) == n; });
                if (it == std::end(q8::kTypes))
                    throw std::invalid_argument("--types: unknown type '" + n +
                                                "' (q4_0,q4_1,q5_0,q8_0,q4_k,q5_k,q6_k)");
                o.types.push_back(*it);
            }
        } else if (a == "--nvec" && has_value) {
            o.nvecs.clear();
            for (const auto& n : split(argv[++i])) o.nvecs.push_back(std::stoi(n));
            std::sort(o.nvecs.begin(), o.nvecs.end());
            o.nvecs.erase(std::unique(o.nvecs.begin(), o.nvecs.end()), o.nvecs.end());
            if (o.nvecs.empty() || o.nvecs.front() < 1 || o.nvecs.back() > kMaxVecH16)
                throw std::invalid_argument("--nvec: values in 1.." + std::to_string(kMaxVecH16) + " (above " +
                                            std::to_string(kMaxVec) + ": h16 and cublas only)");
        } else if (a == "--families" && has_value) {
            o.families.clear();
            for (const auto& n : split(argv[++i])) {
                const Family all[] = {Family::base, Family::f32, Family::q8, Family::h16, Family::cublas};
                const auto it =
                    std::find_if(std::begin(all), std::end(all), [&](Family f) { return family_name(f) == n; });
                if (it == std::end(all))
                    throw std::invalid_argument("--families: unknown family '" + n + "' (base,f32,q8,h16,cublas)");
                o.families.push_back(*it);
            }
        } else if (a == "--runs" && has_value) {
            o.runs = std::max(1, std::stoi(argv[++i]));
        } else if (a == "--csv" && has_value) {
            o.csv = argv[++i];
        } else {
            throw std::invalid_argument("unknown argument '" + a +
                                        "'; usage: matvec_dev [--cpu-check] [--types q4_0,...] [--nvec 1,8,512] "
                                        "[--families base,f32,q8,h16,cublas] [--runs 21] [--csv FILE]");
        }
    }
    return o;
}

int run_gpu(const Options& opt) {
    const auto cuda = loom::kernels::query_cuda(false);
    if (cuda.devices.empty()) {
        std::printf("matvec_dev: no CUDA device (%s); nothing timed (try --cpu-check)\n", cuda.error.c_str());
        return 0;
    }
    const auto& info = cuda.devices.front();
    Device dev;
    LOOM_CUDA_CHECK(cudaSetDevice(info.index));
    int l2 = 0;
    LOOM_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, info.index));
    dev.l2 = static_cast<size_t>(l2);
    LOOM_CUDA_CHECK(cudaStreamCreateWithFlags(&dev.stream, cudaStreamNonBlocking));
    LOOM_CUDA_CHECK(cudaEventCreate(&dev.start));
    LOOM_CUDA_CHECK(cudaEventCreate(&dev.stop));
    dev.copy_gbps = loom::kernels::measure_copy_bandwidth_gbps(info.index);
    std::printf(
        "matvec_dev: %s (sm_%d%d), L2 %.0f MiB; device-to-device copy of 1 GiB: %.1f GB/s (2 x size / time, "
        "median of 25)\n",
        info.name.c_str(), info.cc_major, info.cc_minor, dev.l2 / 1048576.0, dev.copy_gbps);
    std::printf(
        "columns per n_vec: us per launch (median of %d runs, each cycling all copies), GB/s of weight bytes and "
        "%% of copy (n_vec <= %d) or TFLOP/s (above); max err = max |y - f64 ref| / max |ref| over n_vec; inv: "
        "vector v bit-identical for every n_vec; bits: =emu equals the CPU emulation of the q8 order, =f32 the "
        "first f32 variant, =h16 the first h16 variant run at each n_vec; bound: max |y - ref| / h16_bound "
        "(<= 1 holds); vs fp16: max err against the f64 product of the fp16 inputs (the accumulation's own error)\n",
        opt.runs, kMaxVec);
    std::FILE* csv = opt.csv.empty() ? nullptr : std::fopen(opt.csv.c_str(), "w");
    if (csv)
        std::fprintf(
            csv,
            "type,shape,variant,n_vec,us,GBps,frac_copy,TFLOPs,max_rel_err,bound_ratio,fp16_model_err,invariant,"
            "bits_equal\n");
    std::map<TensorType, std::pair<Timings, std::map<std::string, Family>>> all;
    for (TensorType t : opt.types) {
        std::printf("\n==== %s ====\n", qtype_name(t));
        for (const auto& s : kShapes) run_case(dev, t, s, opt, csv, all[t].first, all[t].second);
    }
    std::printf("\n==== summary ====\n");
    for (TensorType t : opt.types) print_summary(t, all[t].first, all[t].second, opt, dev.copy_gbps);
    if (csv) std::fclose(csv);
    cudaEventDestroy(dev.start);
    cudaEventDestroy(dev.stop);
    cudaStreamDestroy(dev.stream);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Options opt = parse(argc, argv);
        return opt.cpu_check ? cpu_check() : run_gpu(opt);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "matvec_dev: %s\n", e.what());
        return 1;
    }
}
