// KV cache write kernels: one thread per (token, K-or-V, pair of dims), fp16 conversion (or f32 copy) on the GPU.
#include "kernels/kv_cache.h"

#include <cuda_fp16.h>

#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda_check.h"
#include "kernels/kv_cache_row.cuh"
#include "kernels/launch.cuh"
#include "kernels/rope.cuh"

namespace loom::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kHeadThreads = 64;  // rope_kv_cache_write: one pair of a 128-dim head per thread

// Two adjacent values as one aligned store: half2 (rounded to nearest even) or float2.
__device__ __forceinline__ void store_pair(__half* dst, const float* src) {
    *reinterpret_cast<__half2*>(dst) = __halves2half2(__float2half_rn(src[0]), __float2half_rn(src[1]));
}
__device__ __forceinline__ void store_pair(float* dst, const float* src) {
    *reinterpret_cast<float2*>(dst) = make_float2(src[0], src[1]);
}

// Stores pair p (< n_head_kv * head_dim: K; above: V) of one token's K/V rows as one aligned pair.
template <typename KV>
__device__ __forceinline__ void store_kv_pair(int p, const float* k_row, const float* v_row, int pos,
                                              const int32_t* table, KV* k_cache, KV* v_cache, int n_head_kv,
                                              int head_dim) {
    const int pairs_per_side = n_head_kv * head_dim / 2;
    const bool is_v = p >= pairs_per_side;
    const int e = 2 * (is_v ? p - pairs_per_side : p);  // element within the token's row
    const int head = e / head_dim, d = e % head_dim;
    const int block = table[pos / kKvBlockTokens];
    const int64_t dst = cache_row(block, n_head_kv, head, pos, head_dim) + d;
    const float* src = (is_v ? v_row : k_row) + e;
    store_pair((is_v ? v_cache : k_cache) + dst, src);
}

// grid (n_tokens, ceil(kv_dim / kThreads)): blockIdx.x is the token; each thread converts
// two adjacent values (head_dim is even), so every store is one aligned pair.
template <typename KV>
__global__ void __launch_bounds__(kThreads)
    kv_cache_write_kernel(const float* __restrict__ k, const float* __restrict__ v, int64_t k_row_stride,
                          int64_t v_row_stride, const int32_t* __restrict__ positions,
                          const int32_t* __restrict__ token_seq, const int32_t* __restrict__ block_tables,
                          int block_table_stride, KV* k_cache, KV* v_cache, int n_head_kv, int head_dim) {
    wait_for_previous_kernel();
    const int token = blockIdx.x;
    const int p = blockIdx.y * blockDim.x + threadIdx.x;
    if (p >= n_head_kv * head_dim) return;
    const int seq = token_seq ? token_seq[token] : 0;
    store_kv_pair(p, k + token * k_row_stride, v + token * v_row_stride, positions[token],
                  block_tables + static_cast<int64_t>(seq) * block_table_stride, k_cache, v_cache, n_head_kv, head_dim);
}

// grid (n_tokens, n_head + n_head_kv): block (token, h) rotates query head h, or for h >= n_head key
// head h - n_head and then stores that KV head's rotated K and its V row in the cache (the block's own
// global writes are visible to it after the barrier). A block per head rather than per token: at batch 1
// one block walking a token's ~40 heads in turn was a chain of dependent loads (~11 us a layer on the H100).
template <typename KV>
__global__ void __launch_bounds__(kHeadThreads)
    rope_kv_cache_write_kernel(float* q, float* k, const float* __restrict__ v, int n_head, int64_t q_row_stride,
                               int64_t k_row_stride, int64_t v_row_stride, const int32_t* __restrict__ positions,
                               const int32_t* __restrict__ token_seq, const float* __restrict__ inv_freq, bool neox,
                               const int32_t* __restrict__ block_tables, int block_table_stride, KV* k_cache,
                               KV* v_cache, int n_head_kv, int head_dim) {
    wait_for_previous_kernel();
    extern __shared__ float2 cos_sin[];  // head_dim / 2 entries
    const int token = blockIdx.x, head = blockIdx.y, pos = positions[token], half = head_dim / 2;
    float* k_row = k + token * k_row_stride;
    rope_angles(cos_sin, half, pos, inv_freq);
    __syncthreads();
    const bool is_q = head < n_head;
    const int kvh = head - n_head;
    float* row = is_q ? q + token * q_row_stride + static_cast<int64_t>(head) * head_dim : k_row + kvh * head_dim;
    for (int i = threadIdx.x; i < half; i += blockDim.x) rope_rotate_pair(row, i, half, cos_sin, neox);
    if (is_q) return;  // the same for the whole block
    __syncthreads();
    const int seq = token_seq ? token_seq[token] : 0;
    const int32_t* table = block_tables + static_cast<int64_t>(seq) * block_table_stride;
    const int pairs_per_side = n_head_kv * half;
    for (int j = threadIdx.x; j < head_dim; j += blockDim.x)  // the head's K pairs, then its V pairs
        store_kv_pair((j < half ? 0 : pairs_per_side) + kvh * half + j % half, k_row, v + token * v_row_stride, pos,
                      table, k_cache, v_cache, n_head_kv, head_dim);
}

__global__ void update_block_tables_kernel(int32_t* block_tables, const int32_t* __restrict__ updates,
                                           int max_updates) {
    wait_for_previous_kernel();
    const int n = min(updates[0], max_updates);
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        block_tables[updates[1 + 2 * i]] = updates[2 + 2 * i];
}

}  // namespace

void kv_cache_write(const float* k, const float* v, int n_tokens, int64_t k_row_stride, int64_t v_row_stride,
                    const int32_t* positions, const int32_t* token_seq, const int32_t* block_tables,
                    int block_table_stride, KvLayer layer, Stream stream) {
    const int64_t kv_dim = static_cast<int64_t>(layer.n_head_kv) * layer.head_dim;
    if (n_tokens < 0 || layer.n_head_kv <= 0 || layer.head_dim <= 0 || layer.head_dim % 2 != 0 ||
        k_row_stride < kv_dim || v_row_stride < kv_dim || block_table_stride <= 0)
        throw std::invalid_argument("kv_cache_write: bad shape (n_tokens " + std::to_string(n_tokens) + ", n_head_kv " +
                                    std::to_string(layer.n_head_kv) + ", head_dim " + std::to_string(layer.head_dim) +
                                    ", strides " + std::to_string(k_row_stride) + "/" + std::to_string(v_row_stride) +
                                    "/" + std::to_string(block_table_stride) + ")");
    if (n_tokens == 0) return;
    const dim3 grid(static_cast<unsigned>(n_tokens), static_cast<unsigned>((kv_dim + kThreads - 1) / kThreads));
    const auto launch = [&](auto* cache) {
        using KV = std::remove_pointer_t<decltype(cache)>;
        launch_kernel("kv_cache_write_kernel", kv_cache_write_kernel<KV>, {grid, kThreads, 0, stream}, k, v,
                      k_row_stride, v_row_stride, positions, token_seq, block_tables, block_table_stride,
                      static_cast<KV*>(layer.k), static_cast<KV*>(layer.v), layer.n_head_kv, layer.head_dim);
    };
    if (layer.type == KvType::f32)
        launch(static_cast<float*>(nullptr));
    else
        launch(static_cast<__half*>(nullptr));
}

void rope_kv_cache_write(float* q, float* k, const float* v, int n_tokens, int n_head, int64_t q_row_stride,
                         int64_t k_row_stride, int64_t v_row_stride, const int32_t* positions, const int32_t* token_seq,
                         const float* inv_freq, RopeStyle style, const int32_t* block_tables, int block_table_stride,
                         KvLayer layer, Stream stream) {
    const int64_t kv_dim = static_cast<int64_t>(layer.n_head_kv) * layer.head_dim;
    if (n_tokens < 0 || n_head < 0 || layer.n_head_kv <= 0 || layer.head_dim <= 0 || layer.head_dim % 2 != 0 ||
        q_row_stride < static_cast<int64_t>(n_head) * layer.head_dim || k_row_stride < kv_dim ||
        v_row_stride < kv_dim || block_table_stride <= 0)
        throw std::invalid_argument("rope_kv_cache_write: bad shape (n_tokens " + std::to_string(n_tokens) +
                                    ", n_head " + std::to_string(n_head) + ", n_head_kv " +
                                    std::to_string(layer.n_head_kv) + ", head_dim " + std::to_string(layer.head_dim) +
                                    ", strides " + std::to_string(q_row_stride) + "/" + std::to_string(k_row_stride) +
                                    "/" + std::to_string(v_row_stride) + "/" + std::to_string(block_table_stride) +
                                    ")");
    if (n_tokens == 0) return;
    const size_t shared_bytes = static_cast<size_t>(layer.head_dim / 2) * sizeof(float2);
    const auto launch = [&](auto* cache) {
        using KV = std::remove_pointer_t<decltype(cache)>;
        launch_kernel("rope_kv_cache_write_kernel", rope_kv_cache_write_kernel<KV>,
                      {dim3(static_cast<unsigned>(n_tokens), static_cast<unsigned>(n_head + layer.n_head_kv)),
                       kHeadThreads, shared_bytes, stream},
                      q, k, v, n_head, q_row_stride, k_row_stride, v_row_stride, positions, token_seq, inv_freq,
                      style == RopeStyle::NeoX, block_tables, block_table_stride, static_cast<KV*>(layer.k),
                      static_cast<KV*>(layer.v), layer.n_head_kv, layer.head_dim);
    };
    if (layer.type == KvType::f32)
        launch(static_cast<float*>(nullptr));
    else
        launch(static_cast<__half*>(nullptr));
}

void update_block_tables(int32_t* block_tables, const int32_t* updates, int max_updates, Stream stream) {
    if (max_updates <= 0)
        throw std::invalid_argument("update_block_tables: max_updates " + std::to_string(max_updates));
    const unsigned blocks = static_cast<unsigned>((max_updates + kThreads - 1) / kThreads);
    launch_kernel("update_block_tables_kernel", update_block_tables_kernel, {blocks, kThreads, 0, stream}, block_tables,
                  updates, max_updates);
}

}  // namespace loom::kernels
