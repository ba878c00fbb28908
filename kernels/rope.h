// Rotary position embedding, applied in place to the query and key heads of a batch of tokens.
#pragma once

#include <cstdint>

#include "kernels/stream.h"

namespace loom::kernels {

// Which dimensions form a rotated pair: Normal (2i, 2i+1), NeoX (i, i + head_dim/2). Mirrors
// engine::RopeMode, which the kernels layer cannot see.
enum class RopeStyle { Normal, NeoX };

// For token t (0 .. n_tokens-1) at position positions[t], rotates pair i of every head by the
// angle positions[t] * inv_freq[i] (formed and turned into cos/sin in double, as the CPU does).
// q: n_tokens rows of n_head heads, rows q_row_stride floats apart (>= n_head * head_dim);
// k: n_tokens rows of n_head_kv heads, rows k_row_stride floats apart (k may be null when
// n_head_kv == 0). inv_freq: head_dim/2 floats (engine::cpu::rope_inv_freq). head_dim even.
// Device pointers; asynchronous on `stream`. Strided rows let q and k live in one fused QKV row.
void rope(float* q, float* k, int n_tokens, int n_head, int n_head_kv, int head_dim, int64_t q_row_stride,
          int64_t k_row_stride, const int32_t* positions, const float* inv_freq, RopeStyle style, Stream stream);

}  // namespace loom::kernels
