// Causal attention over the paged KV cache (fp16 or f32): decode (one query per sequence) and prefill.
#pragma once

#include <cstdint>

#include "kernels/kv_cache.h"
#include "kernels/q8_layout.h"
#include "kernels/stream.h"

namespace loom::kernels {

// Both kernels match engine::cpu::attention: query head h reads KV head h / (n_head / n_head_kv),
// scores are dot(q, k) / sqrt(head_dim), softmax and sums in f32 (online, rescaled by the running
// max). The K/V rows of every attended position must already be in the cache (kv_cache_write).
// head_dim (from `layer`) must pass attention_head_dim_supported (8, or a multiple of 16 up to
// 256: each has its own instantiation); n_head any multiple of layer.n_head_kv (GQA, MQA).

// Decode splits each sequence's keys into chunks of this many positions, one thread block each;
// the last block of a sequence's splits to finish merges them.
inline constexpr int kDecodeSplitTokens = 256;

// Floats of scratch decode_attention needs (0 when every sequence fits one split).
int64_t decode_attention_workspace_floats(int n_seq, int n_head, int head_dim, int max_seq_len);

// One query token per sequence. q: n_seq rows of n_head * head_dim floats, q_row_stride apart;
// out likewise (out_row_stride). Sequence s attends to its positions 0 .. seq_lens[s]-1, with
// 1 <= seq_lens[s] <= max_seq_len (max_seq_len is a host-side bound that sizes the grid, so a
// CUDA graph may pass the context size and keep one grid while lengths change); its block table
// is row seq_slots[s] of block_tables (row s when seq_slots is null), block_table_stride ints
// apart. When max_seq_len needs more than one split: workspace holds at least
// decode_attention_workspace_floats(...) floats, and split_counters at least
// decode_attention_counters(n_seq, n_head) unsigned ints, zero-filled once before first use (the
// kernel leaves them zero); both may be null otherwise. Device pointers; asynchronous on `stream`.
// xq / xmeta (both or neither; a q8 product's input, kernels/q8_matmul.h): where every sequence fits one
// split and head_dim is a multiple of 32, out's rows are also quantized into them (n_seq rows of
// n_head * head_dim, as q8_quantize_x writes them, bit for bit) and the call returns true; otherwise they
// are left alone and it returns false.
bool decode_attention(const float* q, int64_t q_row_stride, float* out, int64_t out_row_stride, int n_seq, int n_head,
                      const int32_t* seq_lens, int max_seq_len, const int32_t* seq_slots, const int32_t* block_tables,
                      int block_table_stride, KvLayer layer, float* workspace, unsigned* split_counters, Stream stream,
                      int8_t* xq = nullptr, q8::XMeta* xmeta = nullptr);

// Counters decode_attention's splits arrive at (one per sequence and head at most).
inline int64_t decode_attention_counters(int n_seq, int n_head) { return static_cast<int64_t>(n_seq) * n_head; }

// T query tokens of one sequence at positions pos0 .. pos0+T-1; query t sees positions
// 0 .. pos0+t. q: T rows of n_head * head_dim floats, q_row_stride apart; out likewise.
// block_table covers positions 0 .. pos0+T-1. Tiled over queries and cache blocks: no T x T
// score matrix is stored. Device pointers; asynchronous on `stream`.
void prefill_attention(const float* q, int64_t q_row_stride, float* out, int64_t out_row_stride, int T, int pos0,
                       int n_head, const int32_t* block_table, KvLayer layer, Stream stream);

}  // namespace loom::kernels
