// Prefill attention on the tensor cores for an fp16 KV cache: fp16 MMA with fp32 accumulation,
// flash-attention style (online softmax over 64-key tiles), included by attention.cu only.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/kv_cache.h"
#include "kernels/kv_cache_row.cuh"
#include "kernels/launch.cuh"

namespace loom::kernels::prefill_mma {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = 16;               // one m16 MMA tile of query rows per warp
constexpr int kTileQ = kWarps * kRowsPerWarp;  // 64 query rows per block
constexpr int kTileKeys = 64;                  // keys per shared-memory tile: 4 cache blocks

// Head sizes this kernel takes: multiples of 16 (whole k16 steps) up to 128 (the block's
// registers: the output tile and the split queries take head_dim floats per thread).
template <int HD>
constexpr bool supports() {
    return HD % 16 == 0 && HD <= 128;
}

// Shared row stride in halves: 8 halves (16 bytes) of padding put the 8 rows an ldmatrix phase or a
// fragment load touches on distinct banks for every head size above, and keep rows 16-byte aligned.
template <int HD>
constexpr int kStride = HD + 8;

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);  // lo in the low 16 bits: the smaller column
    return *reinterpret_cast<const uint32_t*>(&h);
}

// c (16x8 f32) += a (16x16 fp16, row) * b (16x8 fp16, col).
__device__ __forceinline__ void mma_f16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four transposed 8x8 fp16 matrices from shared memory: with row addresses (keys) of V, the B
// fragments of two adjacent 8-dim column tiles for one 16-key step.
__device__ __forceinline__ void ldmatrix_x4_trans(const __half* p, uint32_t (&r)[4]) {
    const auto addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// One tile of 64 keys' K or V rows of KV head kvh into shared memory (row stride kStride<HD>); keys
// at or past n_keys are zeroed (their cache slots may hold NaN bits, and 0 * NaN = NaN).
template <int HD>
__device__ __forceinline__ void load_tile(__half* dst, const __half* __restrict__ cache,
                                          const int32_t* __restrict__ block_table, int b0, int n_keys, int n_head_kv,
                                          int kvh) {
    constexpr int kChunks = HD / 8;  // 16-byte chunks per row
    for (int i = threadIdx.x; i < kTileKeys * kChunks; i += kThreads) {
        const int key = i / kChunks, chunk = i % kChunks, pos = b0 + key;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (pos < n_keys) {
            const int64_t row = cache_row(block_table[pos / kKvBlockTokens], n_head_kv, kvh, pos, HD);
            v = *reinterpret_cast<const uint4*>(cache + row + chunk * 8);
        }
        *reinterpret_cast<uint4*>(dst + key * kStride<HD> + chunk * 8) = v;
    }
}

// The A fragments of a warp's 16 query rows, split hi + lo in fp16 so the scores keep ~22 bits of
// the f32 queries (the fp16 cache is the only rounding of K). Rows past T repeat the last row.
template <int HD>
__device__ __forceinline__ void load_queries(const float* __restrict__ q, int64_t q_row_stride, int h, int row0,
                                             int last_row, uint32_t (&hi)[HD / 16][4], uint32_t (&lo)[HD / 16][4]) {
    const int g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
    const float* r[2] = {q + min(row0 + g, last_row) * q_row_stride + static_cast<int64_t>(h) * HD,
                         q + min(row0 + g + 8, last_row) * q_row_stride + static_cast<int64_t>(h) * HD};
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk)
#pragma unroll
        for (int e = 0; e < 4; ++e) {  // a0: row g, cols 2t; a1: row g+8; a2: row g, cols 2t+8; a3: row g+8
            const float2 x = *reinterpret_cast<const float2*>(r[e % 2] + 16 * kk + 2 * t + 8 * (e / 2));
            const __half2 xh = __floats2half2_rn(x.x, x.y);
            const float2 back = __half22float2(xh);
            hi[kk][e] = *reinterpret_cast<const uint32_t*>(&xh);
            lo[kk][e] = pack_half2(x.x - back.x, x.y - back.y);
        }
}

// grid (ceil(T / kTileQ), n_head), kThreads threads. Warp w owns query rows w*16 .. w*16+15 of the
// tile; thread (g = lane/4, t = lane%4) holds rows g and g+8 of each MMA fragment. Per 64-key tile:
// S = Q K^T on the tensor cores (two MMAs per step: Q hi and Q lo), causal mask, online softmax in
// registers, P rounded to fp16 and O += P V. Keys after a row's position are masked, so only the
// last tiles do waste.
template <int HD>
__global__ void __launch_bounds__(kThreads)
    prefill_kernel(const float* __restrict__ q, int64_t q_row_stride, float* __restrict__ out, int64_t out_row_stride,
                   int T, int pos0, int n_head, int n_head_kv, const int32_t* __restrict__ block_table,
                   const __half* __restrict__ k_cache, const __half* __restrict__ v_cache, float scale) {
    __shared__ __align__(16) __half k_s[kTileKeys * kStride<HD>];
    __shared__ __align__(16) __half v_s[kTileKeys * kStride<HD>];
    wait_for_previous_kernel();

    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
    const int tile0 = blockIdx.x * kTileQ, h = blockIdx.y, kvh = h / (n_head / n_head_kv);
    const int n_rows = min(kTileQ, T - tile0), row0 = tile0 + warp * kRowsPerWarp;
    const int n_keys = pos0 + tile0 + n_rows;
    // Positions of this thread's two rows (rows past T take the last row's: a finite max, not stored).
    const int qpos[2] = {pos0 + min(row0 + g, T - 1), pos0 + min(row0 + g + 8, T - 1)};

    uint32_t q_hi[HD / 16][4], q_lo[HD / 16][4];
    load_queries<HD>(q, q_row_stride, h, row0, T - 1, q_hi, q_lo);

    float o[HD / 8][4] = {};
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // l: this thread's part of each row's sum
    for (int b0 = 0; b0 < n_keys; b0 += kTileKeys) {
        __syncthreads();  // the previous tile is consumed
        load_tile<HD>(k_s, k_cache, block_table, b0, n_keys, n_head_kv, kvh);
        load_tile<HD>(v_s, v_cache, block_table, b0, n_keys, n_head_kv, kvh);
        __syncthreads();

        float s[kTileKeys / 8][4] = {};  // S (16 rows x 64 keys) as 8 column tiles of 8 keys
#pragma unroll
        for (int j = 0; j < kTileKeys / 8; ++j) {
            const __half* krow = k_s + (8 * j + g) * kStride<HD> + 2 * t;
#pragma unroll
            for (int kk = 0; kk < HD / 16; ++kk) {
                const uint32_t b0v = *reinterpret_cast<const uint32_t*>(krow + 16 * kk);
                const uint32_t b1v = *reinterpret_cast<const uint32_t*>(krow + 16 * kk + 8);
                mma_f16(s[j], q_hi[kk], b0v, b1v);
                mma_f16(s[j], q_lo[kk], b0v, b1v);
            }
        }

        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int j = 0; j < kTileKeys / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int key = b0 + 8 * j + 2 * t + (e & 1);
                s[j][e] = key <= qpos[e / 2] ? s[j][e] * scale : -INFINITY;
                mx[e / 2] = fmaxf(mx[e / 2], s[j][e]);
            }
        float alpha[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {  // the 4 threads of a row are lanes 4g .. 4g+3
            mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
            mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
            const float m_new = fmaxf(m[i], mx[i]);  // finite: tile 0 holds key 0, which every row sees
            alpha[i] = expf(m[i] - m_new);
            m[i] = m_new;
            l[i] *= alpha[i];
        }
#pragma unroll
        for (int j = 0; j < kTileKeys / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                s[j][e] = expf(s[j][e] - m[e / 2]);
                l[e / 2] += s[j][e];
            }
#pragma unroll
        for (int d = 0; d < HD / 8; ++d)
#pragma unroll
            for (int e = 0; e < 4; ++e) o[d][e] *= alpha[e / 2];

                // O += P V: P's C fragments of column tiles 2kk and 2kk+1 are the A fragment of key step kk.
#pragma unroll
        for (int kk = 0; kk < kTileKeys / 16; ++kk) {
            const uint32_t a[4] = {pack_half2(s[2 * kk][0], s[2 * kk][1]), pack_half2(s[2 * kk][2], s[2 * kk][3]),
                                   pack_half2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                   pack_half2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
            // Lane l addresses key 16kk + l%8 + 8*((l/8)%2), dims from 8*(l/16): matrices (keys 0-7,
            // dims d), (keys 8-15, dims d), (keys 0-7, dims d+8), (keys 8-15, dims d+8).
            const __half* vrow = v_s + (16 * kk + lane % 8 + 8 * ((lane / 8) % 2)) * kStride<HD> + 8 * (lane / 16);
#pragma unroll
            for (int d = 0; d < HD / 8; d += 2) {
                uint32_t b[4];
                ldmatrix_x4_trans(vrow + 8 * d, b);
                mma_f16(o[d], a, b[0], b[1]);
                mma_f16(o[d + 1], a, b[2], b[3]);
            }
        }
    }

#pragma unroll
    for (int i = 0; i < 2; ++i) {
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int row = row0 + g + 8 * i;
        if (row >= tile0 + n_rows) continue;
        float* dst = out + row * out_row_stride + static_cast<int64_t>(h) * HD + 2 * t;
#pragma unroll
        for (int d = 0; d < HD / 8; ++d)
            *reinterpret_cast<float2*>(dst + 8 * d) = make_float2(o[d][2 * i] / l[i], o[d][2 * i + 1] / l[i]);
    }
}

}  // namespace loom::kernels::prefill_mma
