// Paged KV cache: the fp16 / f32 block layout, and the kernel that stores new tokens' K/V rows in it.
#pragma once

#include <cstdint>

#include "kernels/rope.h"
#include "kernels/stream.h"

namespace loom::kernels {

// Tokens per cache block. Every sequence owns a block table of int32 block ids: its token at
// position p lives in block block_table[p / kKvBlockTokens], slot p % kKvBlockTokens.
inline constexpr int kKvBlockTokens = 16;

// What the cache stores: fp16 (the default, half the memory) or f32 (reference-grade results).
enum class KvType { f16, f32 };

inline int kv_type_bytes(KvType type) { return type == KvType::f32 ? 4 : 2; }
inline const char* kv_type_name(KvType type) { return type == KvType::f32 ? "f32" : "f16"; }

// One arena of fp16 or f32 values, n_blocks blocks per layer:
//   arena = [layer 0 K][layer 0 V][layer 1 K][layer 1 V] ...
//   each K or V region: (n_blocks, n_head_kv, kKvBlockTokens, head_dim)
// so the 16 rows of one KV head in one block are contiguous (head_dim * 16 elements), which is
// what the attention kernels read in one go. A block id indexes the same block in every layer.
// Offsets and sizes count elements; arena_bytes() is the allocation.
struct KvCacheLayout {
    int n_layer = 0;
    int n_blocks = 0;
    int n_head_kv = 0;
    int head_dim = 0;
    KvType type = KvType::f16;

    int64_t block_elems() const { return static_cast<int64_t>(n_head_kv) * kKvBlockTokens * head_dim; }
    int64_t region_elems() const { return static_cast<int64_t>(n_blocks) * block_elems(); }
    int64_t arena_elems() const { return 2 * static_cast<int64_t>(n_layer) * region_elems(); }
    int64_t arena_bytes() const { return arena_elems() * kv_type_bytes(type); }
    int64_t k_offset(int layer) const { return 2 * static_cast<int64_t>(layer) * region_elems(); }
    int64_t v_offset(int layer) const { return k_offset(layer) + region_elems(); }
};

// One layer's K and V regions (device pointers into the arena, elements of `type`) with their head shape.
struct KvLayer {
    void* k = nullptr;
    void* v = nullptr;
    int n_head_kv = 0;
    int head_dim = 0;
    KvType type = KvType::f16;
};

inline KvLayer kv_layer(void* arena, const KvCacheLayout& layout, int layer) {
    char* base = static_cast<char*>(arena);
    const int64_t bytes = kv_type_bytes(layout.type);
    return {base + layout.k_offset(layer) * bytes, base + layout.v_offset(layer) * bytes, layout.n_head_kv,
            layout.head_dim, layout.type};
}

// Stores the K and V rows of n_tokens new tokens, rounded f32 -> fp16 (nearest even) or copied as f32.
// k, v: n_tokens rows of n_head_kv * head_dim floats, rows k_row_stride / v_row_stride floats
// apart (so they may sit in a fused QKV row). Token t goes to position positions[t] of sequence
// token_seq[t] (token_seq null: every token belongs to sequence 0), whose block table is row
// token_seq[t] of block_tables (block_table_stride ints apart). The table must cover each
// position. Device pointers; asynchronous on `stream`.
void kv_cache_write(const float* k, const float* v, int n_tokens, int64_t k_row_stride, int64_t v_row_stride,
                    const int32_t* positions, const int32_t* token_seq, const int32_t* block_tables,
                    int block_table_stride, KvLayer layer, Stream stream);

// rope() on the q and k rows of n_tokens tokens, then kv_cache_write() of the rotated k and of v,
// in one launch (one block per head of each token); the results equal the two calls' bit for bit. q, k, v:
// rows q_row_stride / k_row_stride / v_row_stride floats apart (they may share a fused QKV row);
// q and k are rotated in place. layer.n_head_kv >= 1. Device pointers; asynchronous on `stream`.
void rope_kv_cache_write(float* q, float* k, const float* v, int n_tokens, int n_head, int64_t q_row_stride,
                         int64_t k_row_stride, int64_t v_row_stride, const int32_t* positions, const int32_t* token_seq,
                         const float* inv_freq, RopeStyle style, const int32_t* block_tables, int block_table_stride,
                         KvLayer layer, Stream stream);

// Applies block-table changes staged by the host: updates[0] = n (<= max_updates), then n pairs
// (flat index into block_tables, block id). The count is read on the device, so one launch shape
// serves every step. Device pointers; asynchronous on `stream`.
void update_block_tables(int32_t* block_tables, const int32_t* updates, int max_updates, Stream stream);

}  // namespace loom::kernels
