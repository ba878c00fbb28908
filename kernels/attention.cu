// Attention kernels over the paged KV cache: split-KV decode merged by its last block, tiled prefill
// (tensor cores for an fp16 cache of head_dim <= 128: prefill_mma.cuh; f32 CUDA cores otherwise).
#include "kernels/attention.h"

#include <cuda_fp16.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "kernels/attention_shapes.h"
#include "kernels/cuda_check.h"
#include "kernels/kv_cache_row.cuh"
#include "kernels/launch.cuh"
#include "kernels/prefill_mma.cuh"
#include "kernels/q8_unit.cuh"
#include "kernels/reduce.cuh"

namespace loom::kernels {
namespace {

constexpr int kDecodeThreads = 128;
constexpr int kStaticSharedBytes = 48 * 1024;  // the most static shared memory one block may declare

constexpr int kPrefillThreads = 128;
constexpr int kTileQ = 32;                                // query rows per prefill block
constexpr int kThreadsPerRow = kPrefillThreads / kTileQ;  // 4: each owns 4 keys and head_dim/4 dims

__device__ __forceinline__ float warp_max_f(float v) {
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// 8 cache values as loaded (one 16-byte load of fp16, two of f32) and their f32 values: a row's loads are
// all issued before the first is used, so one key costs one trip to memory rather than one per chunk.
template <typename KV>
struct Raw8;
template <>
struct Raw8<__half> {
    uint4 r;
};
template <>
struct Raw8<float> {
    float4 a, b;
};
__device__ __forceinline__ Raw8<__half> load_raw8(const __half* src) { return {*reinterpret_cast<const uint4*>(src)}; }
__device__ __forceinline__ Raw8<float> load_raw8(const float* src) {
    return {reinterpret_cast<const float4*>(src)[0], reinterpret_cast<const float4*>(src)[1]};
}
__device__ __forceinline__ void to_float8(const Raw8<__half>& raw, float* dst) {
    const __half2* h = reinterpret_cast<const __half2*>(&raw.r);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 f = __half22float2(h[i]);
        dst[2 * i] = f.x;
        dst[2 * i + 1] = f.y;
    }
}
__device__ __forceinline__ void to_float8(const Raw8<float>& raw, float* dst) {
    dst[0] = raw.a.x, dst[1] = raw.a.y, dst[2] = raw.a.z, dst[3] = raw.a.w;
    dst[4] = raw.b.x, dst[5] = raw.b.y, dst[6] = raw.b.z, dst[7] = raw.b.w;
}
// Chunks of a key row whose raw loads are in flight at once: 32 registers of fp16 or f32.
template <typename KV>
inline constexpr int kRawBatch = sizeof(KV) == 2 ? 8 : 4;

// Pair i of a cache row (8-byte aligned for f32, 4-byte for fp16) -> f32.
__device__ __forceinline__ float2 load2(const __half* src, int i) {
    return __half22float2(reinterpret_cast<const __half2*>(src)[i]);
}
__device__ __forceinline__ float2 load2(const float* src, int i) { return reinterpret_cast<const float2*>(src)[i]; }

// Decode's 8-dim chunks of a head and the key lanes that share the threads; with head sizes whose
// chunk count does not divide the threads, the last threads idle in the value sum.
__host__ __device__ constexpr int decode_lanes(int hd) { return kDecodeThreads / (hd / 8); }

// Static shared bytes of a decode block serving `group` query heads of head size hd.
__host__ __device__ constexpr int decode_shared_bytes(int hd, int group) {
    return static_cast<int>(sizeof(float)) *
               (group * hd + group * kDecodeSplitTokens + decode_lanes(hd) * group * hd + 2 * group) +
           16;
}

// Query heads one decode block serves (larger GQA groups take more blocks): 8, or 4 where 8 would
// not fit the static shared memory (head_dim 256).
__host__ __device__ constexpr int decode_group_cap(int hd) {
    return decode_shared_bytes(hd, 8) <= kStaticSharedBytes ? 8 : 4;
}

// The merge of one (sequence, head chunk)'s split results into out, run by the split block that
// finished last. Per head the largest m (a max: exact in any order); then each thread sums 4 dims
// over the sequence's own splits in split order, reading each split's (m, l) beside its acc and
// weighting on the fly (many independent loads in flight; one dependent chain per value was the
// long-context tail). Splits past the sequence's end are not read, so the result does not depend on
// how many splits the batch's longest sequence gave the grid.
template <int HD>
__device__ void merge_splits(int seq, int h0, int G, int n_head, int n_splits, const int32_t* __restrict__ seq_lens,
                             const float* part_acc, const float2* part_ml, float* m_s, float* __restrict__ out,
                             int64_t out_row_stride) {
    const int tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
    const int n_own = (seq_lens[seq] + kDecodeSplitTokens - 1) / kDecodeSplitTokens;
    const auto base = [&](int g) { return (static_cast<int64_t>(seq) * n_head + h0 + g) * n_splits; };
    for (int g = warp; g < G; g += kDecodeThreads / kWarpSize) {
        float m = -INFINITY;
        for (int sp = lane; sp < n_own; sp += kWarpSize) m = fmaxf(m, __ldcg(&part_ml[base(g) + sp]).x);
        m = warp_max_f(m);
        if (lane == 0) m_s[g] = m;
    }
    __syncthreads();
    for (int i = tid; i < G * HD / 4; i += kDecodeThreads) {
        const int g = i / (HD / 4), d = 4 * (i % (HD / 4));
        const float m = m_s[g];
        float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
        float l = 0.f;
#pragma unroll 16
        for (int sp = 0; sp < n_own; ++sp) {
            const float2 ml = __ldcg(&part_ml[base(g) + sp]);
            const float4 a = __ldcg(reinterpret_cast<const float4*>(part_acc + (base(g) + sp) * HD + d));
            const float w = expf(ml.x - m);
            acc.x += w * a.x;
            acc.y += w * a.y;
            acc.z += w * a.z;
            acc.w += w * a.w;
            l += w * ml.y;
        }
        float* o = out + seq * out_row_stride + static_cast<int64_t>(h0 + g) * HD + d;
        o[0] = acc.x / l, o[1] = acc.y / l, o[2] = acc.z / l, o[3] = acc.w / l;
    }
}

// grid (n_head_kv * head chunks, n_seq, n_splits). Each block serves up to kMaxGroup query heads of
// one KV head (sharing its K/V reads) over one split of one sequence's keys:
//   1. scores p[g][j] for the split's keys, one key per thread;
//   2. per head max m and sum l of exp(score - m), one warp per head;
//   3. sum_j p[g][j] * v_j, threads as (key lane r, 8-dim chunk c), reduced over r in shared.
// With one split the normalised result goes to out; otherwise (acc, m, l) go to the workspace and
// the split block that finishes last merges them into out.
template <int HD, typename KV>
__global__ void __launch_bounds__(kDecodeThreads)
    decode_split_kernel(const float* __restrict__ q, int64_t q_row_stride, float* __restrict__ out,
                        int64_t out_row_stride, int n_head, int n_head_kv, const int32_t* __restrict__ seq_lens,
                        const int32_t* __restrict__ seq_slots, const int32_t* __restrict__ block_tables,
                        int block_table_stride, const KV* __restrict__ k_cache, const KV* __restrict__ v_cache,
                        float scale, int n_splits, float* __restrict__ part_acc, float2* __restrict__ part_ml,
                        unsigned* __restrict__ split_counters, uint8_t* __restrict__ xq, q8::XMeta* __restrict__ xm) {
    wait_for_previous_kernel();
    constexpr int kChunks = HD / 8, kLanes = decode_lanes(HD), kMaxGroup = decode_group_cap(HD);
    constexpr bool kAllLanes = kLanes * kChunks == kDecodeThreads;  // 8, 16, 32, 64, 128
    __shared__ float q_s[kMaxGroup][HD];
    __shared__ float p_s[kMaxGroup][kDecodeSplitTokens];
    __shared__ float red_s[kLanes][kMaxGroup][HD];  // about 32 KiB (16 KiB at head_dim 256)
    __shared__ float m_s[kMaxGroup], l_s[kMaxGroup];
    // The split's cache block ids, read once: every key and value row load then starts from shared memory,
    // not from a dependent global load of the block table.
    __shared__ int32_t ids_s[kDecodeSplitTokens / kKvBlockTokens];

    const int tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
    const int group = n_head / n_head_kv, n_chunks = (group + kMaxGroup - 1) / kMaxGroup;
    const int kvh = blockIdx.x / n_chunks, chunk = blockIdx.x % n_chunks;
    const int h0 = kvh * group + chunk * kMaxGroup;
    const int G = min(kMaxGroup, group - chunk * kMaxGroup);
    const int seq = blockIdx.y, split = blockIdx.z;
    const int t0 = split * kDecodeSplitTokens;
    const int n = max(0, min(seq_lens[seq] - t0, kDecodeSplitTokens));
    const int slot = seq_slots ? seq_slots[seq] : seq;
    const int32_t* table = block_tables + static_cast<int64_t>(slot) * block_table_stride;

    for (int i = tid; i < G * HD; i += kDecodeThreads)
        q_s[i / HD][i % HD] = q[seq * q_row_stride + static_cast<int64_t>(h0) * HD + i];
    for (int i = tid; i < (n + kKvBlockTokens - 1) / kKvBlockTokens; i += kDecodeThreads)
        ids_s[i] = table[t0 / kKvBlockTokens + i];
    __syncthreads();

    // A key's row: kRawBatch chunks' loads issued, then used in dimension order (the sum's order is the
    // dimensions', however the loads are grouped).
    constexpr int kKBatch = kRawBatch<KV> < kChunks ? kRawBatch<KV> : kChunks;
    for (int j = tid; j < n; j += kDecodeThreads) {
        asm volatile("" ::: "memory");  // keeps the query's shared reads in the loop (hoisted, they spill)
        const int pos = t0 + j;
        const KV* krow = k_cache + cache_row(ids_s[j / kKvBlockTokens], n_head_kv, kvh, pos, HD);
        float acc[kMaxGroup] = {};
        for (int c0 = 0; c0 < kChunks; c0 += kKBatch) {
            Raw8<KV> raw[kKBatch];
#pragma unroll
            for (int b = 0; b < kKBatch; ++b)
                if (c0 + b < kChunks) raw[b] = load_raw8(krow + 8 * (c0 + b));
#pragma unroll
            for (int b = 0; b < kKBatch; ++b)
                if (c0 + b < kChunks) {
                    const int d0 = 8 * (c0 + b);
                    float kf[8];
                    to_float8(raw[b], kf);
#pragma unroll
                    for (int g = 0; g < kMaxGroup; ++g)
                        if (g < G)
#pragma unroll
                            for (int i = 0; i < 8; ++i) acc[g] += q_s[g][d0 + i] * kf[i];
                }
        }
#pragma unroll
        for (int g = 0; g < kMaxGroup; ++g)
            if (g < G) p_s[g][j] = acc[g] * scale;
    }
    __syncthreads();

    for (int g = warp; g < G; g += kDecodeThreads / kWarpSize) {
        float m = -INFINITY;
        for (int j = lane; j < n; j += kWarpSize) m = fmaxf(m, p_s[g][j]);
        m = warp_max_f(m);
        float l = 0.f;
        for (int j = lane; j < n; j += kWarpSize) {
            const float e = expf(p_s[g][j] - m);
            p_s[g][j] = e;
            l += e;
        }
        l = warp_sum(l);
        if (lane == 0) {
            m_s[g] = m;
            l_s[g] = l;
        }
    }
    __syncthreads();

    const int c = tid % kChunks, r = tid / kChunks;
    const bool lane_active = kAllLanes || r < kLanes;
    // kVBatch rows' loads in flight before any is used, then summed in row order as one at a time: with
    // one row per iteration a split was ~n / kLanes dependent trips to memory (15 us a layer at batch 1).
    constexpr int kVBatch = 8;
    float acc[kMaxGroup][8] = {};
    for (int j0 = lane_active ? r : n; j0 < n; j0 += kVBatch * kLanes) {
        Raw8<KV> raw[kVBatch];
#pragma unroll
        for (int u = 0; u < kVBatch; ++u) {
            const int pos = t0 + j0 + u * kLanes;
            if (j0 + u * kLanes < n)
                raw[u] = load_raw8(
                    v_cache + cache_row(ids_s[(j0 + u * kLanes) / kKvBlockTokens], n_head_kv, kvh, pos, HD) + c * 8);
        }
#pragma unroll
        for (int u = 0; u < kVBatch; ++u) {
            const int j = j0 + u * kLanes;
            if (j >= n) break;
            float vf[8];
            to_float8(raw[u], vf);
#pragma unroll
            for (int g = 0; g < kMaxGroup; ++g)
                if (g < G) {
                    const float p = p_s[g][j];
#pragma unroll
                    for (int i = 0; i < 8; ++i) acc[g][i] += p * vf[i];
                }
        }
    }
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g)
        if (g < G && lane_active)
#pragma unroll
            for (int i = 0; i < 8; ++i) red_s[r][g][c * 8 + i] = acc[g][i];
    __syncthreads();

    for (int i = tid; i < G * HD; i += kDecodeThreads) {
        const int g = i / HD, d = i % HD;
        float s = 0.f;
        for (int rr = 0; rr < kLanes; ++rr) s += red_s[rr][g][d];
        if (n_splits == 1) {
            const float o = s / l_s[g];
            out[seq * out_row_stride + static_cast<int64_t>(h0 + g) * HD + d] = o;
            if (xq) {  // HD % 32 == 0: the warp's 32 values are one unit of the row (d % 32 == lane)
                const int q_dim = n_head * HD;
                q8::quantize_unit(o, lane, ((h0 + g) * HD + d) / q8::kUnit, xq + static_cast<int64_t>(seq) * q_dim,
                                  xm + static_cast<int64_t>(seq) * (q_dim / q8::kUnit));
            }
        } else {
            const int64_t idx = (static_cast<int64_t>(seq) * n_head + h0 + g) * n_splits + split;
            part_acc[idx * HD + d] = s;
            if (d == 0) part_ml[idx] = make_float2(m_s[g], l_s[g]);
        }
    }
    if (n_splits == 1) return;

    // The last split block of this (sequence, head chunk) to finish merges all splits: the writes
    // above are fenced before its arrival is counted, and the merge reads them through L2.
    __shared__ bool merges;
    __threadfence();
    __syncthreads();
    if (tid == 0) {
        unsigned* counter = split_counters + static_cast<int64_t>(seq) * gridDim.x + blockIdx.x;
        merges = atomicAdd(counter, 1u) == static_cast<unsigned>(n_splits - 1);
        if (merges) *counter = 0;  // ready for the next launch
    }
    __syncthreads();
    if (!merges) return;
    __threadfence();
    merge_splits<HD>(seq, h0, G, n_head, n_splits, seq_lens, part_acc, part_ml, m_s, out, out_row_stride);
}

// A prefill block's tiles in (dynamic) shared memory: f32, rows padded by one float against bank
// conflicts. 35 KiB at head_dim 128, 66 KiB at 256 (above the 48 KiB a block gets by default).
template <int HD>
struct PrefillTiles {
    static constexpr int kStride = HD + 1;
    float q_s[kTileQ][kStride];
    float k_s[kKvBlockTokens][kStride];
    float v_s[kKvBlockTokens][kStride];
    float p_s[kTileQ][kKvBlockTokens];
};

// grid (ceil(T / kTileQ), n_head), sizeof(PrefillTiles<HD>) dynamic shared bytes. Thread (row r,
// quarter qq) owns query row r of the tile, keys qq*4 .. qq*4+3 of each cache block and output
// dims qq, qq+4, ... Blocks of 16 keys stream through shared memory with an online softmax per
// row; keys after a row's position are masked, so only the last blocks do waste.
template <int HD, typename KV>
__global__ void __launch_bounds__(kPrefillThreads)
    prefill_kernel(const float* __restrict__ q, int64_t q_row_stride, float* __restrict__ out, int64_t out_row_stride,
                   int T, int pos0, int n_head, int n_head_kv, const int32_t* __restrict__ block_table,
                   const KV* __restrict__ k_cache, const KV* __restrict__ v_cache, float scale) {
    wait_for_previous_kernel();
    extern __shared__ float4 prefill_shared[];  // float4: 16-byte aligned
    PrefillTiles<HD>& tiles = *reinterpret_cast<PrefillTiles<HD>*>(prefill_shared);
    auto& q_s = tiles.q_s;
    auto& k_s = tiles.k_s;
    auto& v_s = tiles.v_s;
    auto& p_s = tiles.p_s;

    const int tid = threadIdx.x, r = tid / kThreadsPerRow, qq = tid % kThreadsPerRow;
    const int tile0 = blockIdx.x * kTileQ, h = blockIdx.y;
    const int kvh = h / (n_head / n_head_kv);
    const int n_rows = min(kTileQ, T - tile0);
    // Rows past T repeat the last query, so every row has a finite max; they are not stored.
    for (int i = tid; i < kTileQ * HD; i += kPrefillThreads) {
        const int row = i / HD, d = i % HD;
        q_s[row][d] = q[(tile0 + min(row, n_rows - 1)) * q_row_stride + static_cast<int64_t>(h) * HD + d];
    }
    const int qpos = pos0 + tile0 + min(r, n_rows - 1);
    const int n_keys = pos0 + tile0 + n_rows;

    float m = -INFINITY, l = 0.f;
    float acc[HD / kThreadsPerRow] = {};
    for (int b0 = 0; b0 < n_keys; b0 += kKvBlockTokens) {
        __syncthreads();  // the previous block's k_s / v_s are consumed (and q_s is written)
        const int64_t base = cache_row(block_table[b0 / kKvBlockTokens], n_head_kv, kvh, 0, HD);
        for (int i = tid; i < kKvBlockTokens * HD / 2; i += kPrefillThreads) {
            const int row = 2 * i / HD, d = 2 * i % HD;
            // Slots past the last key may hold anything (NaN bits too): zero them, as 0 * NaN = NaN.
            float2 kf = make_float2(0.f, 0.f), vf = kf;
            if (b0 + row < n_keys) {
                kf = load2(k_cache + base, i);
                vf = load2(v_cache + base, i);
            }
            k_s[row][d] = kf.x;
            k_s[row][d + 1] = kf.y;
            v_s[row][d] = vf.x;
            v_s[row][d + 1] = vf.y;
        }
        __syncthreads();

        float s[4];
        float mx = -INFINITY;
#pragma unroll
        for (int jj = 0; jj < 4; ++jj) {
            const int j = qq * 4 + jj;
            float dot = 0.f;
#pragma unroll 8
            for (int d = 0; d < HD; ++d) dot += q_s[r][d] * k_s[j][d];
            s[jj] = b0 + j <= qpos ? dot * scale : -INFINITY;
            mx = fmaxf(mx, s[jj]);
        }
        // The 4 threads of a row are adjacent lanes of one warp.
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m, mx);  // finite: block 0 holds key 0, which every row sees
        float sum = 0.f;
#pragma unroll
        for (int jj = 0; jj < 4; ++jj) {
            const float p = expf(s[jj] - m_new);
            p_s[r][qq * 4 + jj] = p;
            sum += p;
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const float alpha = expf(m - m_new);
        l = l * alpha + sum;
        m = m_new;
        __syncwarp();
#pragma unroll
        for (int i = 0; i < HD / kThreadsPerRow; ++i) {
            float a = acc[i] * alpha;
#pragma unroll
            for (int j = 0; j < kKvBlockTokens; ++j) a += p_s[r][j] * v_s[j][qq + kThreadsPerRow * i];
            acc[i] = a;
        }
    }
    if (r < n_rows) {
        float* o = out + (tile0 + r) * out_row_stride + static_cast<int64_t>(h) * HD;
#pragma unroll
        for (int i = 0; i < HD / kThreadsPerRow; ++i) o[qq + kThreadsPerRow * i] = acc[i] / l;
    }
}

int decode_splits(int max_seq_len) { return (max_seq_len + kDecodeSplitTokens - 1) / kDecodeSplitTokens; }

void check_heads(const char* fn, int n_head, const KvLayer& layer) {
    if (n_head <= 0 || layer.n_head_kv <= 0 || n_head % layer.n_head_kv != 0 ||
        !attention_head_dim_supported(layer.head_dim))
        throw std::invalid_argument(std::string(fn) + ": unsupported heads (n_head " + std::to_string(n_head) +
                                    ", n_head_kv " + std::to_string(layer.n_head_kv) + ", head_dim " +
                                    std::to_string(layer.head_dim) + "; " + kAttentionHeadDimRule + ")");
}

// f(head_dim as std::integral_constant, cache element pointer type) for the layer's head size
// (checked by check_heads) and KV type: every supported shape has its own instantiation.
template <int... I, class F>
void dispatch_multiple_of_16(int head_dim, F&& f, std::integer_sequence<int, I...>) {
    (void)((head_dim == 16 * (I + 1) ? (f(std::integral_constant<int, 16 * (I + 1)>{}), true) : false) || ...);
}

template <class F>
void dispatch_head_dim(int head_dim, F&& f) {
    if (head_dim == 8)
        f(std::integral_constant<int, 8>{});  // stories260K: 128 key lanes
    else
        dispatch_multiple_of_16(head_dim, f, std::make_integer_sequence<int, kMaxAttentionHeadDim / 16>{});
}

template <class F>
void dispatch_heads(const KvLayer& layer, F&& f) {
    dispatch_head_dim(layer.head_dim, [&](auto hd) {
        if (layer.type == KvType::f32)
            f(hd, static_cast<const float*>(nullptr));
        else
            f(hd, static_cast<const __half*>(nullptr));
    });
}

template <int HD, typename KV>
void launch_decode(const float* q, int64_t q_row_stride, float* out, int64_t out_row_stride, int n_seq, int n_head,
                   const int32_t* seq_lens, int max_seq_len, const int32_t* seq_slots, const int32_t* block_tables,
                   int block_table_stride, KvLayer layer, float* workspace, unsigned* split_counters, Stream stream,
                   int8_t* xq, q8::XMeta* xmeta) {
    static_assert(decode_shared_bytes(HD, decode_group_cap(HD)) <= kStaticSharedBytes);
    constexpr int kMaxGroup = decode_group_cap(HD);
    const int group = n_head / layer.n_head_kv, n_splits = decode_splits(max_seq_len);
    const float scale = 1.0f / std::sqrt(static_cast<float>(HD));  // as the CPU reference forms it
    float* part_acc = n_splits > 1 ? workspace : nullptr;
    float2* part_ml = n_splits > 1
                          ? reinterpret_cast<float2*>(workspace + static_cast<int64_t>(n_seq) * n_head * n_splits * HD)
                          : nullptr;
    const dim3 grid(static_cast<unsigned>(layer.n_head_kv * ((group + kMaxGroup - 1) / kMaxGroup)),
                    static_cast<unsigned>(n_seq), static_cast<unsigned>(n_splits));
    launch_kernel("decode_split_kernel", decode_split_kernel<HD, KV>, {grid, kDecodeThreads, 0, stream}, q,
                  q_row_stride, out, out_row_stride, n_head, layer.n_head_kv, seq_lens, seq_slots, block_tables,
                  block_table_stride, static_cast<const KV*>(layer.k), static_cast<const KV*>(layer.v), scale, n_splits,
                  part_acc, part_ml, split_counters, reinterpret_cast<uint8_t*>(xq), xmeta);
}

template <int HD, typename KV>
void launch_prefill(const float* q, int64_t q_row_stride, float* out, int64_t out_row_stride, int T, int pos0,
                    int n_head, const int32_t* block_table, KvLayer layer, Stream stream) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(HD));
    if constexpr (std::is_same_v<KV, __half> && prefill_mma::supports<HD>()) {
        // The tensor-core kernel reads queries and writes outputs as float2: even strides, 8-byte aligned rows.
        const bool pairs = q_row_stride % 2 == 0 && out_row_stride % 2 == 0 &&
                           reinterpret_cast<uintptr_t>(q) % 8 == 0 && reinterpret_cast<uintptr_t>(out) % 8 == 0;
        if (pairs) {
            const dim3 grid(static_cast<unsigned>((T + prefill_mma::kTileQ - 1) / prefill_mma::kTileQ),
                            static_cast<unsigned>(n_head));
            launch_kernel("prefill_mma_kernel", prefill_mma::prefill_kernel<HD>,
                          {grid, prefill_mma::kThreads, 0, stream}, q, q_row_stride, out, out_row_stride, T, pos0,
                          n_head, layer.n_head_kv, block_table, static_cast<const __half*>(layer.k),
                          static_cast<const __half*>(layer.v), scale);
            return;
        }
    }
    const dim3 grid(static_cast<unsigned>((T + kTileQ - 1) / kTileQ), static_cast<unsigned>(n_head));
    constexpr size_t kShared = sizeof(PrefillTiles<HD>);
    if (kShared > kStaticSharedBytes)  // opt in to more (per device, so on every launch; cheap)
        check_cuda(cudaFuncSetAttribute(prefill_kernel<HD, KV>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(kShared)),
                   "prefill_kernel shared memory", __FILE__, __LINE__);
    launch_kernel("prefill_kernel", prefill_kernel<HD, KV>, {grid, kPrefillThreads, kShared, stream}, q, q_row_stride,
                  out, out_row_stride, T, pos0, n_head, layer.n_head_kv, block_table, static_cast<const KV*>(layer.k),
                  static_cast<const KV*>(layer.v), scale);
}

}  // namespace

int64_t decode_attention_workspace_floats(int n_seq, int n_head, int head_dim, int max_seq_len) {
    const int n_splits = decode_splits(max_seq_len);
    if (n_splits <= 1) return 0;
    // per (sequence, head, split): head_dim accumulators, then one (m, l) float2 each
    return static_cast<int64_t>(n_seq) * n_head * n_splits * (head_dim + 2);
}

bool decode_attention(const float* q, int64_t q_row_stride, float* out, int64_t out_row_stride, int n_seq, int n_head,
                      const int32_t* seq_lens, int max_seq_len, const int32_t* seq_slots, const int32_t* block_tables,
                      int block_table_stride, KvLayer layer, float* workspace, unsigned* split_counters, Stream stream,
                      int8_t* xq, q8::XMeta* xmeta) {
    check_heads("decode_attention", n_head, layer);
    const int64_t q_dim = static_cast<int64_t>(n_head) * layer.head_dim;
    const bool splits = decode_splits(max_seq_len) > 1;
    if (n_seq < 0 || max_seq_len <= 0 || q_row_stride < q_dim || out_row_stride < q_dim || block_table_stride <= 0 ||
        (splits && (workspace == nullptr || split_counters == nullptr)) || (xq == nullptr) != (xmeta == nullptr))
        throw std::invalid_argument("decode_attention: bad shape (n_seq " + std::to_string(n_seq) + ", max_seq_len " +
                                    std::to_string(max_seq_len) + ", strides " + std::to_string(q_row_stride) + "/" +
                                    std::to_string(out_row_stride) + "/" + std::to_string(block_table_stride) +
                                    ", workspace " + (workspace ? "set" : "null") + ", split counters " +
                                    (split_counters ? "set" : "null") + ", xq " + (xq ? "set" : "null") + ", xmeta " +
                                    (xmeta ? "set" : "null") + ")");
    const bool quantize = xq && !splits && layer.head_dim % q8::kUnit == 0;
    if (n_seq == 0) return quantize;
    dispatch_heads(layer, [&](auto head_dim, auto cache) {
        launch_decode<decltype(head_dim)::value, std::remove_cv_t<std::remove_pointer_t<decltype(cache)>>>(
            q, q_row_stride, out, out_row_stride, n_seq, n_head, seq_lens, max_seq_len, seq_slots, block_tables,
            block_table_stride, layer, workspace, split_counters, stream, quantize ? xq : nullptr,
            quantize ? xmeta : nullptr);
    });
    return quantize;
}

void prefill_attention(const float* q, int64_t q_row_stride, float* out, int64_t out_row_stride, int T, int pos0,
                       int n_head, const int32_t* block_table, KvLayer layer, Stream stream) {
    check_heads("prefill_attention", n_head, layer);
    const int64_t q_dim = static_cast<int64_t>(n_head) * layer.head_dim;
    if (T < 0 || pos0 < 0 || q_row_stride < q_dim || out_row_stride < q_dim)
        throw std::invalid_argument("prefill_attention: bad shape (T " + std::to_string(T) + ", pos0 " +
                                    std::to_string(pos0) + ", strides " + std::to_string(q_row_stride) + "/" +
                                    std::to_string(out_row_stride) + ")");
    if (T == 0) return;
    dispatch_heads(layer, [&](auto head_dim, auto cache) {
        launch_prefill<decltype(head_dim)::value, std::remove_cv_t<std::remove_pointer_t<decltype(cache)>>>(
            q, q_row_stride, out, out_row_stride, T, pos0, n_head, block_table, layer, stream);
    });
}

}  // namespace loom::kernels
