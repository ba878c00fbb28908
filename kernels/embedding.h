// Token embedding lookup: rows of a (possibly quantized) table dequantized to f32 hidden states.
#pragma once

#include <cstdint>

#include "gguf/tensor_type.h"
#include "kernels/stream.h"

namespace loom::kernels {

// Table types embedding_lookup accepts: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K.
bool embedding_supports(gguf::TensorType type);

// table (n_vocab, n_embd) of `type`, rows tensor_bytes(type, n_embd) apart; ids (n_tokens) int32
// -> out (n_tokens, n_embd) f32, all device pointers. Values equal gguf::dequantize's bit for bit.
// An id outside [0, n_vocab) yields a row of NaN rather than a read outside the table.
// Preconditions (std::invalid_argument otherwise): a supported type; n_embd a positive multiple of
// its block (any width for F32, F16, BF16); table and out 16-byte aligned. Asynchronous on `stream`.
void embedding_lookup(gguf::TensorType type, const void* table, int64_t n_vocab, int n_embd, const int32_t* ids,
                      int n_tokens, float* out, Stream stream);

}  // namespace loom::kernels
