// The q8 family's device code as templates (CUDA code only): lane loads of the repacked streams, the rows
// kernel (dp4a against int8 x, or the f32 family's: the same weights against unquantized x), the int8 MMA
// kernel and the x quantization (plain, normed, or of SwiGLU). q8_matmul.cu instantiates one configuration
// of each; bench/matvec_dev sweeps others. The lane loaders also run on the host, for the lane-mapping check.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/launch.cuh"
#include "kernels/q8_layout.h"
#include "kernels/q8_unit.cuh"
#include "kernels/swiglu.cuh"

namespace loom::kernels::q8 {

// A repacked matrix on the device (streams of q8_layout) as the kernels see it.
struct MatView {
    const uint8_t *qs, *qh, *um, *sm;
    size_t qs_row, qh_row, um_row, sm_row;
    int n_units;
};

struct ProductParams {
    MatView w;
    const uint8_t* xq;  // (n_vec, n_in) int8 in pos8 order ...
    const XMeta* xm;    // ... and (n_vec, n_units) scales
    float* y;           // (n_vec, n_out)
    int n_in, n_out, n_vec;
};

// One quad (four units) of one row as one lane (tig) of a quad of lanes sees it.
template <TensorType T>
struct QuadWords {
    uint32_t w[T == TensorType::Q8_0 ? 8 : 4];  // 4-bit: word tig of units 0..3; 8-bit: words tig, tig+4
    uint2 h;                                    // Q6_K: top bits of units 0,1 (x) and 2,3 (y); Q5: bit 4 (x)
    // The four units' scale words (16-bit pairs; Q4_1: 32-bit); Q4_K/Q5_K: their super-block's three packed
    // scale words, unpacked by unit_um where a unit's word is used (a lane of the rows kernel uses one unit's:
    // unpacking all four per quad was a third of its instructions).
    uint32_t um[T == TensorType::Q4_1 ? 4 : has_packed_scales(T) ? 3 : 2];
    uint32_t sm;  // their super-block's word
    int j0 = 0;   // Q4_K/Q5_K: the quad's first sub-block in its super-block (0 or 4)
};

// Unit i's scale word.
template <TensorType T>
__host__ __device__ __forceinline__ uint32_t unit_um(const QuadWords<T>& q, int i) {
    if constexpr (T == TensorType::Q4_1) return q.um[i];
    if constexpr (has_packed_scales(T)) return k4_um(q.um[0], q.um[1], q.um[2], q.j0 + i);
    return (q.um[i / 2] >> (16 * (i % 2))) & 0xFFFFu;
}

// A read-only load; on the host (the lane-mapping check) a plain copy.
template <class V>
__host__ __device__ __forceinline__ V ld(const uint8_t* p) {
#ifdef __CUDA_ARCH__
    return __ldg(reinterpret_cast<const V*>(p));
#else
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
#endif
}
__host__ __device__ __forceinline__ uint4 ldg16(const uint8_t* p) { return ld<uint4>(p); }

__host__ __device__ __forceinline__ int dp4a(uint32_t a, uint32_t b, int c) {
#ifdef __CUDA_ARCH__
    return __dp4a(static_cast<int>(a), static_cast<int>(b), c);
#else
    for (int e = 0; e < 4; ++e) c += static_cast<int8_t>(a >> (8 * e)) * static_cast<int8_t>(b >> (8 * e));
    return c;
#endif
}

template <TensorType T>
__host__ __device__ __forceinline__ void load_quad(const MatView& m, int row, int gq, int tig, QuadWords<T>& q) {
    constexpr StreamBytes l = stream_bytes(T);
    const uint8_t* qs = m.qs + row * m.qs_row + static_cast<size_t>(gq) * 4 * l.qs;
    if constexpr (T == TensorType::Q8_0) {
        const uint4 a = ldg16(qs + 32 * tig), b = ldg16(qs + 32 * tig + 16);
        const uint32_t w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
        for (int i = 0; i < 8; ++i) q.w[i] = w[i];
    } else {
        const uint4 a = ldg16(qs + 16 * tig);
        q.w[0] = a.x, q.w[1] = a.y, q.w[2] = a.z, q.w[3] = a.w;
    }
    if constexpr (l.qh > 0)  // Q6_K: 8 bytes per lane, Q5_0/Q5_K: 4
        q.h = l.qh == 8 ? ld<uint2>(m.qh + row * m.qh_row + static_cast<size_t>(gq) * 32 + 8 * tig)
                        : make_uint2(ld<uint32_t>(m.qh + row * m.qh_row + static_cast<size_t>(gq) * 16 + 4 * tig), 0u);
    const uint8_t* sm = m.sm + row * m.sm_row + static_cast<size_t>(gq / 2) * l.super;
    if constexpr (has_packed_scales(T)) {  // the quad is half h of a super-block: sub-blocks 4h .. 4h + 3
        const uint4 s = ld<uint4>(sm);
        q.sm = s.x;
        q.um[0] = s.y, q.um[1] = s.z, q.um[2] = s.w;
        q.j0 = 4 * (gq % 2);
    } else if constexpr (T == TensorType::Q4_1) {
        const uint4 u = ld<uint4>(m.um + row * m.um_row + static_cast<size_t>(gq) * 16);
        q.um[0] = u.x, q.um[1] = u.y, q.um[2] = u.z, q.um[3] = u.w;
    } else {
        const uint2 u = ld<uint2>(m.um + row * m.um_row + static_cast<size_t>(gq) * 8);
        q.um[0] = u.x, q.um[1] = u.y;
    }
    if constexpr (T == TensorType::Q6_K) q.sm = ld<uint16_t>(sm);
    if constexpr (!is_k_quant(T)) q.sm = 0;  // no super-block: unit_term ignores it
}

// Unit i's bytes for this lane: lo = elements 4 tig + 0..3, hi = elements 16 + 4 tig + 0..3 (raw quants).
template <TensorType T>
__host__ __device__ __forceinline__ void unit_bytes(const QuadWords<T>& q, int i, uint32_t& lo, uint32_t& hi) {
    if constexpr (T == TensorType::Q8_0) {
        lo = q.w[2 * i];
        hi = q.w[2 * i + 1];
    } else {
        lo = q.w[i] & 0x0F0F0F0Fu;
        hi = (q.w[i] >> 4) & 0x0F0F0F0Fu;
        if constexpr (T == TensorType::Q6_K) {
            const uint32_t h = i < 2 ? q.h.x : q.h.y;
            const int s = 4 * (i % 2);
            lo |= ((h >> s) << 4) & 0x30303030u;
            hi |= ((h >> (s + 2)) << 4) & 0x30303030u;
        }
        if constexpr (has_bit5(T)) {
            lo |= ((q.h.x >> i) & 0x01010101u) << 4;
            hi |= ((q.h.x >> (4 + i)) & 0x01010101u) << 4;
        }
    }
}

// Lane's integer partial of unit i against x words xw (8 words, pos8 order).
template <TensorType T>
__host__ __device__ __forceinline__ int lane_partial(const QuadWords<T>& q, int i, const uint32_t (&xw)[8]) {
    uint32_t lo, hi;
    unit_bytes(q, i, lo, hi);
    const int sl = dp4a(lo, xw[2 * i], 0);
    const int sh = dp4a(hi, xw[2 * i + 1], 0);
    if constexpr (T == TensorType::Q6_K) {
        const uint32_t um = unit_um(q, i);
        return static_cast<int8_t>(um & 0xFFu) * sl + static_cast<int8_t>(um >> 8) * sh;
    }
    return sl + sh;
}

__host__ __device__ __forceinline__ void load_x8(const uint8_t* xq, int n_in, int v, int gq, int tig,
                                                 uint32_t (&xw)[8]) {
    const uint8_t* p = xq + static_cast<size_t>(v) * n_in + static_cast<size_t>(gq) * 128 + 32 * tig;
    const uint4 a = ldg16(p), b = ldg16(p + 16);
    xw[0] = a.x, xw[1] = a.y, xw[2] = a.z, xw[3] = a.w, xw[4] = b.x, xw[5] = b.y, xw[6] = b.z, xw[7] = b.w;
}

__device__ __forceinline__ XMeta load_xmeta(const XMeta* xm, int n_units, int v, int unit) {
    const uint2 m = __ldg(reinterpret_cast<const uint2*>(xm + static_cast<size_t>(v) * n_units + unit));
    return {__uint_as_float(m.x), static_cast<int16_t>(m.y & 0xFFFFu), static_cast<int16_t>(m.y >> 16)};
}

__device__ __forceinline__ int add_exact(int a, int b) { return a + b; }
__device__ __forceinline__ float add_exact(float a, float b) { return __fadd_rn(a, b); }

// Four lanes' partials of units 0..3 -> lane tig holds unit tig's total (fixed exchange order).
template <class V>
__device__ __forceinline__ V quad_reduce(const V (&v)[4], int tig) {
    const bool b1 = tig & 2, b0 = tig & 1;
    const V s0 = b1 ? v[0] : v[2], s1 = b1 ? v[1] : v[3];
    const V k0 = add_exact(b1 ? v[2] : v[0], __shfl_xor_sync(0xffffffffu, s0, 2));
    const V k1 = add_exact(b1 ? v[3] : v[1], __shfl_xor_sync(0xffffffffu, s1, 2));
    return add_exact(b0 ? k1 : k0, __shfl_xor_sync(0xffffffffu, b0 ? k0 : k1, 1));
}

// What a rows kernel multiplies a lane's quads by, and how a lane's unit term comes out: the q8 family's
// int8 x (a lane's 8 x words and its unit's XMeta; exact integer dot by dp4a, then unit_term).
template <TensorType T>
struct Q8RowsOps {
    static constexpr TensorType kType = T;
    using Params = ProductParams;
    struct X {
        uint32_t w[8];
        XMeta m;
    };
    template <int MaxVec>
    using Weights = QuadWords<T>;
    template <int MaxVec>
    __device__ static QuadWords<T> prepare(const QuadWords<T>& q) {
        return q;
    }
    __device__ static X load(const Params& p, int gq, int v, int tig) {
        X x;
        load_x8(p.xq, p.n_in, v, gq, tig, x.w);
        x.m = load_xmeta(p.xm, p.w.n_units, v, 4 * gq + tig);
        return x;
    }
    __device__ static float term(const QuadWords<T>& q, const X& x, int tig) {
        int parts[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) parts[i] = lane_partial(q, i, x.w);
        return unit_term<T>(quad_reduce(parts, tig), unit_um(q, tig), q.sm, x.m);
    }
};

// Rows kernel (the dp4a one of the q8 family; the f32 family's with F32RowsOps): RPW rows per warp, WPB warps
// per block, MaxVec vectors per block (blockIdx.y picks the group), U passes loaded before they are used.
// Lane l owns slot l: a pass covers units 32 p .. +31, lane (l / 4, l % 4) loads quad 8 p + l / 4, and after
// quad_reduce lane l holds unit 32 p + l; units past the row's end (n_in not a multiple of 1024) are loaded
// clamped and not added. The slots end in a butterfly.
template <class Ops, int RPW, int WPB, int MaxVec, int U>
__global__ void __launch_bounds__(WPB * 32) rows_kernel(const typename Ops::Params p) {
    constexpr TensorType T = Ops::kType;
    wait_for_previous_kernel();
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, tig = lane % 4;
    const int row0 = (blockIdx.x * WPB + warp) * RPW;
    const int v0 = blockIdx.y * MaxVec, nv = min(MaxVec, p.n_vec - v0);
    const int n_quads = p.w.n_units / 4, n_pass = (p.w.n_units + 31) / 32;
    float acc[RPW][MaxVec] = {};
    for (int pass = 0; pass < n_pass; pass += U) {
        QuadWords<T> q[U][RPW];
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
            for (int j = 0; j < RPW; ++j)
                load_quad<T>(p.w, min(row0 + j, p.n_out - 1), min((pass + u) * 8 + lane / 4, n_quads - 1), tig,
                             q[u][j]);
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int gq = min((pass + u) * 8 + lane / 4, n_quads - 1);
            const bool live = (pass + u) * 32 + lane < p.w.n_units;
            typename Ops::template Weights<MaxVec> w[RPW];
#pragma unroll
            for (int j = 0; j < RPW; ++j) w[j] = Ops::template prepare<MaxVec>(q[u][j]);
#pragma unroll
            for (int t = 0; t < MaxVec; ++t) {
                if (t < nv) {
                    const typename Ops::X x = Ops::load(p, gq, v0 + t, tig);
#pragma unroll
                    for (int j = 0; j < RPW; ++j) {
                        const float term = Ops::term(w[j], x, tig);
                        if (live) acc[j][t] = __fadd_rn(acc[j][t], term);
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

__device__ __forceinline__ void mma_k32(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                        uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(0));
}

__device__ __forceinline__ void mma_k16(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t b0) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%7,%7,%7};"
                 : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
                 : "r"(a0), "r"(a1), "r"(b0), "r"(0));
}

// Unit i of the 16 rows an MMA covers (quads qa: row g, qb: row g + 8) as the A fragment takes it: the raw
// quant bytes (lo: elements 4 tig .., hi: 16 + 4 tig ..) and Q6_K's int8 scales, the same for every vector tile.
struct UnitFrag {
    uint32_t la, ha, lb, hb;
    uint32_t ua, ub;  // Q6_K: the rows' scale words
};

template <TensorType T>
__device__ __forceinline__ UnitFrag unit_frag(const QuadWords<T>& qa, const QuadWords<T>& qb, int i) {
    UnitFrag f;
    unit_bytes(qa, i, f.la, f.ha);
    unit_bytes(qb, i, f.lb, f.hb);
    f.ua = unit_um(qa, i);
    f.ub = unit_um(qb, i);
    return f;
}

// Integer dot products of unit i (fragment f) for the 16 rows and 8 vectors (x words xw of vector g):
// c[0..1] = row g, vectors 2 tig, 2 tig + 1; c[2..3] = row g + 8.
template <TensorType T>
__device__ __forceinline__ void mma_unit(int (&c)[4], const UnitFrag& f, int i, const uint32_t (&xw)[8]) {
    if constexpr (T == TensorType::Q6_K) {
        int cl[4], ch[4];
        mma_k16(cl, f.la, f.lb, xw[2 * i]);
        mma_k16(ch, f.ha, f.hb, xw[2 * i + 1]);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint32_t um = k < 2 ? f.ua : f.ub;
            c[k] = static_cast<int8_t>(um & 0xFFu) * cl[k] + static_cast<int8_t>(um >> 8) * ch[k];
        }
    } else {
        mma_k32(c, f.la, f.lb, f.ha, f.hb, xw[2 * i], xw[2 * i + 1]);
    }
}

inline constexpr int kMmaWarps = 8;  // warp w takes the quads gq ≡ w (mod 8): slots 4w .. 4w + 3

// int8 tensor-core kernel: a block computes MT x 16 rows (blockIdx.x) for NT x 8 vectors (blockIdx.y picks
// the vector tile), so each weight is read once per tile of 8 NT vectors; slot partials meet in shared
// memory and end in tree32.
template <TensorType T, int MT, int NT>
__global__ void __launch_bounds__(kMmaWarps * 32) mma_kernel(const ProductParams p) {
    wait_for_previous_kernel();
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, tig = lane % 4;
    const int row_base = blockIdx.x * 16 * MT, vec_base = blockIdx.y * 8 * NT;
    const int n_quads = p.w.n_units / 4;
    float acc[MT][NT][4][4] = {};
#pragma unroll 2
    for (int gq = warp; gq < n_quads; gq += kMmaWarps) {
        QuadWords<T> q[MT][2];
#pragma unroll
        for (int m = 0; m < MT; ++m)
#pragma unroll
            for (int h = 0; h < 2; ++h)
                load_quad<T>(p.w, min(row_base + 16 * m + g + 8 * h, p.n_out - 1), gq, tig, q[m][h]);
        // What depends on the weights alone, formed once for every vector tile: the fragments and the
        // rows' unit factors (per row h of the pair, unit i).
        UnitFrag frag[MT][4];
        UnitRowFactors rf[MT][2][4];
#pragma unroll
        for (int m = 0; m < MT; ++m)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                frag[m][i] = unit_frag(q[m][0], q[m][1], i);
#pragma unroll
                for (int h = 0; h < 2; ++h) rf[m][h][i] = unit_row_factors<T>(unit_um(q[m][h], i), q[m][h].sm);
            }
#pragma unroll
        for (int n = 0; n < NT; ++n) {
            // Vectors past n_vec read the last one (clamped, no branches): their columns are not stored, and
            // an MMA column depends on its own vector only.
            const int vec = vec_base + 8 * n, last = p.n_vec - 1;
            uint32_t xw[8];
            load_x8(p.xq, p.n_in, min(vec + g, last), gq, tig, xw);
            UnitXFactors xf[2][4];  // vectors 2 tig + c, unit i: formed once for the tile's rows
#pragma unroll
            for (int c = 0; c < 2; ++c)
#pragma unroll
                for (int i = 0; i < 4; ++i)
                    xf[c][i] =
                        unit_x_factors<T>(load_xmeta(p.xm, p.w.n_units, min(vec + 2 * tig + c, last), 4 * gq + i));
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int m = 0; m < MT; ++m) {
                    int c[4];
                    mma_unit<T>(c, frag[m][i], i, xw);
#pragma unroll
                    for (int k = 0; k < 4; ++k)
                        acc[m][n][i][k] = __fadd_rn(acc[m][n][i][k], unit_term<T>(c[k], rf[m][k / 2][i], xf[k % 2][i]));
                }
        }
    }
    __shared__ float red[kSlots][16][8];
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int n = 0; n < NT; ++n) {
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int k = 0; k < 4; ++k) red[4 * warp + i][g + 8 * (k / 2)][2 * tig + k % 2] = acc[m][n][i][k];
            __syncthreads();
            if (threadIdx.x < 128) {
                const int r = threadIdx.x / 8, c = threadIdx.x % 8;
                float v[kSlots];
#pragma unroll
                for (int s = 0; s < kSlots; ++s) v[s] = red[s][r][c];
                const int row = row_base + 16 * m + r, vec = vec_base + 8 * n + c;
                const float sum = tree32(v);
                if (row < p.n_out && vec < p.n_vec) p.y[static_cast<size_t>(vec) * p.n_out + row] = sum;
            }
            __syncthreads();
        }
}

inline constexpr int kQuantizeWarps = 8;  // warps per block of quantize_kernel, one unit each

// What quantize_kernel reads as vector v's x: plain rows (n_in apart), RMS-normed rows (XW * s, below), or
// silu(gate) * up of the fused gate/up product's rows (2 n_in apart, the pair layout of kernels/matvec.h),
// computed by swiglu_pair_value as swiglu_pairs_kernel does, so it equals swiglu_pairs then plain.
enum class XSource { plain, normed, swiglu };

// x -> int8 per unit in pos8 order + XMeta; blockIdx.x = vector, blockIdx.y = group of 8 units, one warp per
// unit, lane = element (one unit per warp: at decode sizes the kernel is latency-bound, so width beats
// reuse). Normed: x = XW * s first, s = norm_scale_from_slots of the vector's S partials, computed by warp 0
// (lane l sums the partials l, l + 32, ...; the butterfly equals tree32) while the others' loads fly.
template <XSource Src>
__global__ void __launch_bounds__(kQuantizeWarps * 32)
    quantize_kernel(const float* x, const float* S, float eps, int n_partials, uint8_t* xq, XMeta* xm, int n_in) {
    wait_for_previous_kernel();
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, v = blockIdx.x;
    const int n_units = n_in / kUnit, unit = blockIdx.y * kQuantizeWarps + warp;
    const bool active = unit < n_units;
    float xv = 0.0f;
    if (active) {
        if constexpr (Src == XSource::swiglu)
            xv = swiglu_pair_value(x + static_cast<size_t>(v) * 2 * n_in, unit * kUnit + lane);
        else
            xv = x[static_cast<size_t>(v) * n_in + unit * kUnit + lane];
    }
    if constexpr (Src == XSource::normed) {
        __shared__ float shared_scale;
        if (warp == 0) {
            float slot = 0.0f;
            for (int i = lane; i < n_partials; i += 32)
                slot = __fadd_rn(slot, S[static_cast<size_t>(v) * n_partials + i]);
            float slots[kSlots];
#pragma unroll
            for (int s = 0; s < kSlots; ++s) slots[s] = __shfl_sync(0xffffffffu, slot, s);
            if (lane == 0) shared_scale = norm_scale_from_slots(slots, n_in, eps);
        }
        __syncthreads();
        xv = __fmul_rn(xv, shared_scale);
    }
    if (!active) return;
    quantize_unit(xv, lane, unit, xq + static_cast<size_t>(v) * n_in, xm + static_cast<size_t>(v) * n_units);
}

// Launches of one rows configuration, MaxVec from n_vec (1, 2, 4 or 8 vectors per block).
template <class Ops, int RPW, int WPB, int MaxVec, int U>
void launch_rows_n(const char* name, const typename Ops::Params& p, cudaStream_t stream) {
    const dim3 grid((p.n_out + RPW * WPB - 1) / (RPW * WPB), (p.n_vec + MaxVec - 1) / MaxVec);
    launch_kernel(name, rows_kernel<Ops, RPW, WPB, MaxVec, U>, LaunchShape{grid, dim3(WPB * 32), 0, stream}, p);
}

template <class Ops, int RPW, int WPB, int U>
void launch_rows_ops(const char* name, const typename Ops::Params& p, cudaStream_t stream) {
    const int n = p.n_vec;
    if (n == 1) return launch_rows_n<Ops, RPW, WPB, 1, U>(name, p, stream);
    if (n == 2) return launch_rows_n<Ops, RPW, WPB, 2, U>(name, p, stream);
    if (n <= 4) return launch_rows_n<Ops, RPW, WPB, 4, U>(name, p, stream);
    launch_rows_n<Ops, RPW, WPB, 8, U>(name, p, stream);
}

template <TensorType T, int RPW, int WPB, int U>
void launch_rows(const ProductParams& p, cudaStream_t stream) {
    launch_rows_ops<Q8RowsOps<T>, RPW, WPB, U>("q8 rows_kernel", p, stream);
}

// MMA: NT = 1, 2 or 4 vector groups of 8 per tile (MT = 2 takes at most 2, for registers).
template <TensorType T, int MT>
void launch_mma(const ProductParams& p, cudaStream_t stream) {
    const auto go = [&](auto kernel, int nt) {
        const dim3 grid((p.n_out + 16 * MT - 1) / (16 * MT), (p.n_vec + 8 * nt - 1) / (8 * nt));
        launch_kernel("q8 mma_kernel", kernel, LaunchShape{grid, dim3(kMmaWarps * 32), 0, stream}, p);
    };
    if (p.n_vec <= 8) return go(mma_kernel<T, MT, 1>, 1);
    if constexpr (MT > 1) {
        go(mma_kernel<T, MT, 2>, 2);
    } else {
        if (p.n_vec <= 16) return go(mma_kernel<T, MT, 2>, 2);
        go(mma_kernel<T, MT, 4>, 4);
    }
}

// The f32 family: the same repacked weights against f32 x (no quantization), for products whose inputs
// must keep f32 accuracy (the logits' output projection). Order: per unit, each of four lanes sums its 8
// products in element order (FMA), the four partials meet by quad_reduce, the unit's term goes to slot
// (unit mod 32); a slot adds its units in increasing order; the slots end in a warp butterfly (= tree32).
// Every configuration (rows per warp, warps, unroll, vectors per block) gives the same bits.
struct F32Params {
    MatView w;
    const float* x;  // (n_vec, n_in)
    float* y;        // (n_vec, n_out)
    int n_in, n_out, n_vec;
};

__device__ __forceinline__ int signed_byte(uint32_t w, int e, int offset) {
    return static_cast<int>((w >> (8 * e)) & 0xFFu) - offset;
}

// A lane's 8 weights of one unit as the exact floats f32_partial multiplies (the raw quants less the type's
// offset): converted once per quad where a block serves several vectors.
struct F32Unit {
    float lo[4], hi[4];  // elements 4 tig .. + 3 and 16 + 4 tig .. + 3
};

template <TensorType T>
__device__ __forceinline__ F32Unit f32_unit_weights(const QuadWords<T>& q, int i) {
    uint32_t lo, hi;
    unit_bytes(q, i, lo, hi);
    const int off = T == TensorType::Q4_0 ? 8 : T == TensorType::Q6_K ? 32 : 0;
    F32Unit w;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        int a = signed_byte(lo, e, off), b = signed_byte(hi, e, off);
        if constexpr (T == TensorType::Q8_0) a = static_cast<int8_t>(a), b = static_cast<int8_t>(b);
        w.lo[e] = static_cast<float>(a);
        w.hi[e] = static_cast<float>(b);
    }
    return w;
}

// Lane's partial of a unit (its 8 weights w against f32 x; um, sm: the unit's scale words), scales inside
// where they differ per lane's elements; the owner multiplies by f32_unit_scale after quad_reduce.
template <TensorType T>
__device__ __forceinline__ float f32_partial(const F32Unit& w, uint32_t um, uint32_t sm, float4 xa, float4 xb) {
    const float xs[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
    float pl = 0, ph = 0, px = 0;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        pl = __fmaf_rn(w.lo[e], xs[e], pl);
        ph = __fmaf_rn(w.hi[e], xs[4 + e], ph);
        if constexpr (T == TensorType::Q4_K) px = __fadd_rn(__fadd_rn(px, xs[e]), xs[4 + e]);
    }
    if constexpr (T == TensorType::Q6_K)
        return __fadd_rn(__fmul_rn(static_cast<float>(static_cast<int8_t>(um & 0xFFu)), pl),
                         __fmul_rn(static_cast<float>(static_cast<int8_t>(um >> 8)), ph));
    if constexpr (T == TensorType::Q4_K) {
        const float dsc = __fmul_rn(half_bits(static_cast<uint16_t>(sm & 0xFFFFu)), static_cast<float>(um & 0xFFu));
        const float dmn = __fmul_rn(half_bits(static_cast<uint16_t>(sm >> 16)), static_cast<float>(um >> 8));
        return __fsub_rn(__fmul_rn(dsc, __fadd_rn(pl, ph)), __fmul_rn(dmn, px));
    }
    return __fadd_rn(pl, ph);
}

template <TensorType T>
__device__ __forceinline__ float f32_unit_scale(const QuadWords<T>& q, int i) {
    if constexpr (T == TensorType::Q4_K) return 1.0f;
    if constexpr (T == TensorType::Q6_K) return half_bits(static_cast<uint16_t>(q.sm));
    return half_bits(static_cast<uint16_t>(unit_um(q, i)));
}

// The f32 family's rows: a lane's 8 x values of each of the quad's units as f32 (f32_partial, then the
// unit's scale after quad_reduce), in rows_kernel's slots and butterfly.
template <TensorType T>
struct F32RowsOps {
    static constexpr TensorType kType = T;
    using Params = F32Params;
    struct X {
        float4 a[4], b[4];  // unit i's elements 4 tig .. + 3 and 16 + 4 tig .. + 3
    };
    __device__ static X load(const Params& p, int gq, int v, int tig) {
        const float* x = p.x + static_cast<size_t>(v) * p.n_in + static_cast<size_t>(gq) * 4 * kUnit + 4 * tig;
        X r;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            r.a[i] = __ldg(reinterpret_cast<const float4*>(x + i * kUnit));
            r.b[i] = __ldg(reinterpret_cast<const float4*>(x + i * kUnit + 16));
        }
        return r;
    }
    // At more than one vector a row's quad is converted once for all of them (rows_kernel's prepare): the
    // conversion otherwise repeats per vector, several integer operations and a convert per FMA.
    struct Converted {
        QuadWords<T> q;
        F32Unit u[4];
    };
    template <int MaxVec>
    using Weights = std::conditional_t<(MaxVec > 1), Converted, QuadWords<T>>;
    template <int MaxVec>
    __device__ static Weights<MaxVec> prepare(const QuadWords<T>& q) {
        if constexpr (MaxVec > 1) {
            Converted c{q, {}};
#pragma unroll
            for (int i = 0; i < 4; ++i) c.u[i] = f32_unit_weights(q, i);
            return c;
        } else {
            return q;
        }
    }
    __device__ static float term(const QuadWords<T>& q, const X& x, int tig) {
        float parts[4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
            parts[i] = f32_partial<T>(f32_unit_weights(q, i), unit_um(q, i), q.sm, x.a[i], x.b[i]);
        return __fmul_rn(f32_unit_scale(q, tig), quad_reduce(parts, tig));
    }
    __device__ static float term(const Converted& c, const X& x, int tig) {
        float parts[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) parts[i] = f32_partial<T>(c.u[i], unit_um(c.q, i), c.q.sm, x.a[i], x.b[i]);
        return __fmul_rn(f32_unit_scale(c.q, tig), quad_reduce(parts, tig));
    }
};

template <TensorType T, int RPW, int WPB, int U>
void launch_f32(const F32Params& p, cudaStream_t stream) {
    launch_rows_ops<F32RowsOps<T>, RPW, WPB, U>("q8 f32_rows_kernel", p, stream);
}

}  // namespace loom::kernels::q8
