// matvec_dev: candidate decode matvec kernels for issue 16, each validated against a CPU reference and
// timed beside the current kernels::matvec in one run (reference, validation and timing in one file).
//
// Usage: matvec_dev [--cpu-check] [--types q4_0,q8_0,q4_k,q6_k] [--nvec 1,2,4,8,16,32] [--runs 21]
//                   [--csv FILE]
//   --types      also q4_1, q5_0, q5_k (the q8 family and base only; default: the four above)
//   --cpu-check  validates the CPU side only (repack round trip, x quantization, the canonical int8
//                order against the f64 reference, slot tree = warp butterfly, the kernels' lane mapping);
//                needs no GPU.
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
// - f32 family (here; repacked weights, f32 x, dequantize + FMA): per unit, each of four lanes sums its 8
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
#include <vector>

#include "gguf/quantize.h"
#include "gguf/tensor_type.h"
#include "kernel_cases/inputs.h"
#include "kernels/cuda_check.h"
#include "kernels/device_info.h"
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

constexpr int kMaxVec = 32;

// The q8 family's types; the f32 family covers the first four of issue 16's list only.
constexpr TensorType kAllTypes[] = {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q8_0,
                                    TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K};

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

// f64 reference: y[v][row] = Σ values[row][i] x[v][i] over the CPU-dequantized weights.
std::vector<double> reference(const std::vector<float>& values, const std::vector<float>& x, int rows, int n_in,
                              int n_vec) {
    std::vector<double> y(static_cast<size_t>(n_vec) * rows);
    for (int v = 0; v < n_vec; ++v)
        for (int r = 0; r < rows; ++r) {
            double s = 0;
            for (int i = 0; i < n_in; ++i)
                s += static_cast<double>(values[static_cast<size_t>(r) * n_in + i]) *
                     x[static_cast<size_t>(v) * n_in + i];
            y[static_cast<size_t>(v) * rows + r] = s;
        }
    return y;
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
    const auto ref = reference(w.values, x, rows, n_in, n_vec);
    const auto emu = loom::kernels::q8_product_ref(l, r.data.data(), xq);
    const double err = max_rel_err(emu, ref, rows, rows, n_vec);
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
// The f32 family's kernel (the q8 family's are the library's, kernels/q8_kernels.cuh, whose lane loads
// it shares).

struct F32Params {
    q8::MatView w;
    const float* x;  // (n_vec, n_in)
    float* y;        // (n_vec, n_out)
    int n_in, n_out, n_vec;
};

__device__ __forceinline__ int signed_byte(uint32_t w, int e, int offset) {
    return static_cast<int>((w >> (8 * e)) & 0xFFu) - offset;
}

// Lane's partial of unit i (its 8 elements against f32 x), scales inside where they differ per lane's
// elements; the owner multiplies by f32_unit_scale after quad_reduce.
template <TensorType T>
__device__ __forceinline__ float f32_partial(const q8::QuadWords<T>& q, int i, float4 xa, float4 xb) {
    uint32_t lo, hi;
    q8::unit_bytes(q, i, lo, hi);
    const float xs[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
    const int off = T == TensorType::Q4_0 ? 8 : T == TensorType::Q6_K ? 32 : 0;
    float pl = 0, ph = 0, px = 0;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        int a = signed_byte(lo, e, off), b = signed_byte(hi, e, off);
        if constexpr (T == TensorType::Q8_0) a = static_cast<int8_t>(a), b = static_cast<int8_t>(b);
        pl = __fmaf_rn(static_cast<float>(a), xs[e], pl);
        ph = __fmaf_rn(static_cast<float>(b), xs[4 + e], ph);
        if constexpr (T == TensorType::Q4_K) px = __fadd_rn(__fadd_rn(px, xs[e]), xs[4 + e]);
    }
    const uint32_t um = q8::unit_um(q, i);
    if constexpr (T == TensorType::Q6_K)
        return __fadd_rn(__fmul_rn(static_cast<float>(static_cast<int8_t>(um & 0xFFu)), pl),
                         __fmul_rn(static_cast<float>(static_cast<int8_t>(um >> 8)), ph));
    if constexpr (T == TensorType::Q4_K) {
        const float dsc =
            __fmul_rn(q8::half_bits(static_cast<uint16_t>(q.sm & 0xFFFFu)), static_cast<float>(um & 0xFFu));
        const float dmn = __fmul_rn(q8::half_bits(static_cast<uint16_t>(q.sm >> 16)), static_cast<float>(um >> 8));
        return __fsub_rn(__fmul_rn(dsc, __fadd_rn(pl, ph)), __fmul_rn(dmn, px));
    }
    return __fadd_rn(pl, ph);
}

template <TensorType T>
__device__ __forceinline__ float f32_unit_scale(const q8::QuadWords<T>& q, int i) {
    if constexpr (T == TensorType::Q4_K) return 1.0f;
    if constexpr (T == TensorType::Q6_K) return q8::half_bits(static_cast<uint16_t>(q.sm));
    return q8::half_bits(static_cast<uint16_t>(q8::unit_um(q, i)));
}

// RPW rows per warp, WPB warps per block, MaxVec vectors per block (blockIdx.y picks the group), U
// passes of 32 units loaded before they are used. Lane l owns slot l: a pass covers units 32 p .. +31,
// lane (l / 4, l % 4) loads quad 8 p + l / 4, and after quad_reduce lane l holds unit 32 p + l. The
// bench's shapes have n_in a multiple of 1024 (whole passes).
template <TensorType T, int RPW, int WPB, int MaxVec, int U>
__global__ void __launch_bounds__(WPB * 32) f32_rows_kernel(const F32Params p) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, tig = lane % 4;
    const int row0 = (blockIdx.x * WPB + warp) * RPW;
    const int v0 = blockIdx.y * MaxVec, nv = min(MaxVec, p.n_vec - v0);
    const int n_pass = p.w.n_units / 32;
    float acc[RPW][MaxVec] = {};
    for (int pass = 0; pass < n_pass; pass += U) {
        q8::QuadWords<T> q[U][RPW];
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
            for (int j = 0; j < RPW; ++j)
                q8::load_quad<T>(p.w, min(row0 + j, p.n_out - 1), (pass + u) * 8 + lane / 4, tig, q[u][j]);
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int gq = (pass + u) * 8 + lane / 4;
#pragma unroll
            for (int t = 0; t < MaxVec; ++t) {
                if (t < nv) {
                    const float* x =
                        p.x + static_cast<size_t>(v0 + t) * p.n_in + static_cast<size_t>(gq) * 4 * kUnit + 4 * tig;
#pragma unroll
                    for (int j = 0; j < RPW; ++j) {
                        float parts[4];
#pragma unroll
                        for (int i = 0; i < 4; ++i)
                            parts[i] = f32_partial(q[u][j], i, __ldg(reinterpret_cast<const float4*>(x + i * kUnit)),
                                                   __ldg(reinterpret_cast<const float4*>(x + i * kUnit + 16)));
                        const float term = __fmul_rn(f32_unit_scale(q[u][j], tig), q8::quad_reduce(parts, tig));
                        acc[j][t] = __fadd_rn(acc[j][t], term);
                    }
                }
            }
        }
    }
#pragma unroll
    for (int j = 0; j < RPW; ++j)
#pragma unroll
        for (int t = 0; t < MaxVec; ++t) {
            float s = acc[j][t];
#pragma unroll
            for (int off = 16; off > 0; off /= 2) s = __fadd_rn(s, __shfl_xor_sync(0xffffffffu, s, off));
            if (lane == t && t < nv && row0 + j < p.n_out) p.y[static_cast<size_t>(v0 + t) * p.n_out + row0 + j] = s;
        }
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

int cpu_check() {
    std::printf("matvec_dev --cpu-check\n");
    bool ok = check_orders_cpu();
    for (TensorType t : kAllTypes) {
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
    std::printf("cpu-check: %s\n", ok ? "all ok" : "FAILED");
    return ok ? 0 : 1;
}
// ---------------------------------------------------------------------------------------------
// Variants.

enum class Family { base, f32, q8 };

struct LaunchArgs {
    TensorType type;
    const uint8_t* gguf;     // this copy's GGUF bytes (base)
    const uint8_t* rep;      // this copy's repacked streams
    const Q8Layout* layout;  // their layout
    const float* x;          // (n_vec, n_in) f32: base and f32 family
    const uint8_t* xq;       // quantized x: q8 family
    const q8::XMeta* xm;
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

struct Variant {
    std::string name;
    Family family;
    int max_vec;  // largest n_vec it takes
    std::function<void(const LaunchArgs&)> launch;
};

template <TensorType T, int RPW, int WPB, int MaxVec, int U>
void launch_f32_n(const LaunchArgs& a) {
    const F32Params p{view_of(a), a.x, a.y, a.layout->n_in, a.layout->rows, a.n_vec};
    const dim3 grid((p.n_out + RPW * WPB - 1) / (RPW * WPB), (p.n_vec + MaxVec - 1) / MaxVec);
    f32_rows_kernel<T, RPW, WPB, MaxVec, U><<<grid, WPB * 32, 0, a.stream>>>(p);
}

template <TensorType T, int RPW, int WPB, int U>
void launch_f32(const LaunchArgs& a) {
    const int n = a.n_vec;
    if (n == 1) return launch_f32_n<T, RPW, WPB, 1, U>(a);
    if (n == 2) return launch_f32_n<T, RPW, WPB, 2, U>(a);
    if (n <= 4) return launch_f32_n<T, RPW, WPB, 4, U>(a);
    launch_f32_n<T, RPW, WPB, 8, U>(a);
}

template <TensorType T, int RPW, int WPB, int U>
void launch_dp4a(const LaunchArgs& a) {
    q8::launch_rows<T, RPW, WPB, U>(q8_params(a), a.stream);
}

template <TensorType T, int MT>
void launch_mma(const LaunchArgs& a) {
    q8::launch_mma<T, MT>(q8_params(a), a.stream);
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
        {"mma m1", Family::q8, kMaxVec, launch_mma<T, 1>},
        {"mma m2", Family::q8, kMaxVec, launch_mma<T, 2>},
        {"q8_product", Family::q8, kMaxVec, launch_library},
    };
    out.insert(out.end(), q8_variants.begin(), q8_variants.end());
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
    int runs = 21;
    std::string csv;
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
};

struct VariantRow {
    std::string name;
    Family family;
    std::map<int, Result> by_n;
    bool invariant = true, bits_equal = true;
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

// Everything one (type, shape) needs on the host: GGUF bytes (tile repeated), repacked streams, x,
// its quantization, the f64 reference and the q8 emulation of the tile rows.
struct HostCase {
    TensorType type;
    Shape shape;
    std::vector<uint8_t> gguf;
    Repacked rep;
    double repack_ms = 0;
    std::vector<float> x;
    Q8X xq;
    std::vector<double> ref;
    std::vector<float> emu;
};

HostCase make_case(TensorType t, const Shape& s, uint32_t seed) {
    HostCase h{t, s};
    const int tile = std::min(kTileRows, s.n_out);
    const auto w = loom::kcases::random_matrix(t, tile, s.n_in, seed);
    const size_t row_bytes = w.bytes.size() / tile;
    h.gguf.resize(row_bytes * s.n_out);
    for (int r = 0; r < s.n_out; ++r)
        std::memcpy(h.gguf.data() + r * row_bytes, w.bytes.data() + (r % tile) * row_bytes, row_bytes);
    const auto t0 = std::chrono::steady_clock::now();
    h.rep = repack(t, h.gguf.data(), s.n_out, s.n_in);
    h.repack_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    h.x = loom::kcases::random_uniform(static_cast<size_t>(kMaxVec) * s.n_in, seed + 1, -1.f, 1.f);
    h.xq = loom::kernels::q8_quantize_x_ref(h.x.data(), kMaxVec, s.n_in);
    h.ref = reference(w.values, h.x, tile, s.n_in, kMaxVec);
    const Repacked tile_rep = repack(t, w.bytes.data(), tile, s.n_in);
    h.emu = loom::kernels::q8_product_ref(tile_rep.layout, tile_rep.data.data(), h.xq);  // (kMaxVec, tile)
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
    float* y = nullptr;
    ~DeviceInputs() {
        cudaFree(x);
        cudaFree(xq);
        cudaFree(xm);
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
            in.y,
            n_vec,
            stream};
}

// Quantizes x on the device, checks it against the CPU's bytes and times it per n_vec.
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
        std::printf(" %d:%.1f", n,
                    median_launch_us(
                        dev, [&](int) { launch(n); }, 1, opt.runs));
    std::printf("\n");
}

// Validates (poisoned output, f64 reference, batch invariance, family bits) and times one variant.
VariantRow run_variant(const Device& dev, const HostCase& h, const DeviceMatrix& m, const DeviceInputs& in,
                       const Variant& var, const Options& opt, std::vector<float>& f32_first) {
    const int n_out = h.shape.n_out, tile = std::min(kTileRows, n_out);
    const double weight_bytes = static_cast<double>(h.gguf.size());
    VariantRow row{var.name, var.family};
    std::map<int, std::vector<float>> outs;
    for (int n : opt.nvecs) {
        if (n > var.max_vec) continue;
        const auto launch = [&](int copy) { var.launch(args_for(h, m, in, copy, n, dev.stream)); };
        LOOM_CUDA_CHECK(cudaMemsetAsync(in.y, 0xFF, static_cast<size_t>(kMaxVec) * n_out * 4, dev.stream));
        launch(0);
        auto& y = outs[n];
        y.resize(static_cast<size_t>(n) * n_out);
        LOOM_CUDA_CHECK(cudaMemcpyAsync(y.data(), in.y, y.size() * 4, cudaMemcpyDeviceToHost, dev.stream));
        LOOM_CUDA_CHECK(cudaStreamSynchronize(dev.stream));
        Result res;
        res.err = max_rel_err(y, h.ref, n_out, tile, n);
        res.us = median_launch_us(dev, launch, m.copies, opt.runs);
        res.gbps = weight_bytes / (res.us * 1e-6) / 1e9;
        row.by_n[n] = res;
    }
    const auto& widest = outs.rbegin()->second;
    for (const auto& [n, y] : outs) {
        row.invariant = row.invariant && std::memcmp(y.data(), widest.data(), y.size() * 4) == 0;
        for (size_t i = 0; i < y.size() && var.family != Family::base; ++i) {
            const size_t v = i / n_out, r = i % n_out;
            const float want = var.family == Family::q8 ? h.emu[v * tile + r % tile]
                               : f32_first.empty()      ? y[i]
                                                        : f32_first[i];
            if (std::memcmp(&y[i], &want, 4) != 0) row.bits_equal = false;
        }
    }
    if (var.family == Family::f32 && f32_first.empty()) f32_first = widest;
    return row;
}

void print_row(const VariantRow& r, const Options& opt, double copy_gbps, std::FILE* csv, const HostCase& h) {
    double err = 0;
    std::printf("  %-12s", r.name.c_str());
    for (int n : opt.nvecs) {
        const auto it = r.by_n.find(n);
        if (it == r.by_n.end()) {
            std::printf(" | %7s %5s %4s", "-", "-", "-");
            continue;
        }
        const Result& x = it->second;
        err = std::max(err, x.err);
        std::printf(" | %7.1f %5.0f %3.0f%%", x.us, x.gbps, 100 * x.gbps / copy_gbps);
        if (csv)
            std::fprintf(csv, "%s,%s,%s,%d,%.3f,%.1f,%.4f,%.3e,%d,%d\n", qtype_name(h.type), h.shape.name,
                         r.name.c_str(), n, x.us, x.gbps, x.gbps / copy_gbps, x.err, r.invariant, r.bits_equal);
    }
    const char* bits = r.family == Family::base ? "-"
                       : r.bits_equal           ? (r.family == Family::q8 ? "=emu" : "=f32")
                                                : "NO";
    std::printf(" | %8.1e %-3s %s\n", err, r.invariant ? "yes" : "NO", bits);
}

using Timings = std::map<std::string, std::map<int, double>>;  // variant -> n_vec -> µs per layer

void run_case(const Device& dev, TensorType t, const Shape& s, const Options& opt, std::FILE* csv, Timings& layer,
              std::map<std::string, Family>& families) {
    const HostCase h = make_case(t, s, 100 + static_cast<uint32_t>(t) * 10 + static_cast<uint32_t>(s.n_out % 97));
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
    in.xq = device_alloc<uint8_t>(h.x.size());
    in.xm = device_alloc<q8::XMeta>(h.xq.meta.size());
    in.y = device_alloc<float>(static_cast<size_t>(kMaxVec) * s.n_out);
    LOOM_CUDA_CHECK(cudaMemcpy(in.x, h.x.data(), h.x.size() * 4, cudaMemcpyHostToDevice));
    std::printf("\n  %s %s: %.1f MB of weights, %d copies; repack (CPU, once at load) %.0f ms = %.0f MB/s\n",
                qtype_name(t), s.name, h.gguf.size() / 1e6, m.copies, h.repack_ms, h.gguf.size() / 1e3 / h.repack_ms);
    run_quantize_x(dev, h, in, opt);
    std::printf("  %-12s", "variant");
    for (int n : opt.nvecs) std::printf(" | n=%-2d us  GB/s  %%cp", n);
    std::printf(" | max err  inv bits\n");
    std::vector<float> f32_first;
    for (const auto& var : variants(t)) {
        const VariantRow row = run_variant(dev, h, m, in, var, opt, f32_first);
        print_row(row, opt, dev.copy_gbps, csv, h);
        families[var.name] = var.family;
        for (const auto& [n, r] : row.by_n) layer[var.name][n] += s.per_layer * r.us;
    }
    std::fflush(stdout);
}

void print_summary(TensorType t, const Timings& layer, const std::map<std::string, Family>& families,
                   const Options& opt, double copy_gbps) {
    double layer_bytes = 0;
    for (const auto& s : kShapes)
        layer_bytes += s.per_layer * static_cast<double>(loom::gguf::tensor_bytes(t, uint64_t(s.n_in) * s.n_out));
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
        std::printf("  n=%-2d", n);
        for (const auto& [fam, b] : best)
            std::printf(" | %s %-11s %8.1f us/layer %3.0f%% of copy",
                        fam == Family::base  ? "base"
                        : fam == Family::f32 ? "f32 "
                                             : "q8  ",
                        b.first.c_str(), b.second, 100 * layer_bytes / (b.second * 1e-6) / 1e9 / copy_gbps);
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
                const auto it = std::find_if(std::begin(kAllTypes), std::end(kAllTypes),
                                             [&](TensorType t) { return type_arg(t) == n; });
                if (it == std::end(kAllTypes))
                    throw std::invalid_argument("--types: unknown type '" + n +
                                                "' (q4_0,q4_1,q5_0,q8_0,q4_k,q5_k,q6_k)");
                o.types.push_back(*it);
            }
        } else if (a == "--nvec" && has_value) {
            o.nvecs.clear();
            for (const auto& n : split(argv[++i])) o.nvecs.push_back(std::stoi(n));
            std::sort(o.nvecs.begin(), o.nvecs.end());
            if (o.nvecs.empty() || o.nvecs.front() < 1 || o.nvecs.back() > kMaxVec)
                throw std::invalid_argument("--nvec: values in 1..32");
        } else if (a == "--runs" && has_value) {
            o.runs = std::max(1, std::stoi(argv[++i]));
        } else if (a == "--csv" && has_value) {
            o.csv = argv[++i];
        } else {
            throw std::invalid_argument(
                "unknown argument '" + a +
                "'; usage: matvec_dev [--cpu-check] [--types q4_0,...] [--nvec 1,8] [--runs 21] [--csv FILE]");
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
        "columns per n_vec: us per launch (median of %d runs, each cycling all copies), GB/s of weight bytes, "
        "%% of copy; max err = max |y - f64 ref| / max |ref| over n_vec; inv: vector v bit-identical for every "
        "n_vec; bits: =emu equals the CPU emulation of the q8 order, =f32 equals the first f32 variant\n",
        opt.runs);
    std::FILE* csv = opt.csv.empty() ? nullptr : std::fopen(opt.csv.c_str(), "w");
    if (csv) std::fprintf(csv, "type,shape,variant,n_vec,us,GBps,frac_copy,max_rel_err,invariant,bits_equal\n");
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