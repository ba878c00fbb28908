// The bytes the small kernels kernel_bench times (SwiGLU, adds, argmax, embedding) must move.
#pragma once

#include <cstdint>

#include "gguf/tensor_type.h"

namespace loom::kcases {

// gate and up read, out written (the pair layout reads the same two values per output).
inline double swiglu_bytes(uint64_t n) { return 12.0 * static_cast<double>(n); }
// a and b read, the sum written.
inline double add_bytes(uint64_t n) { return 12.0 * static_cast<double>(n); }
// x read and written, the bias read once.
inline double add_bias_bytes(int rows, int n) { return 8.0 * rows * n + 4.0 * n; }
// every row read, one index per row written.
inline double argmax_bytes(int rows, int n) { return 4.0 * rows * n + 4.0 * rows; }
// per token: its id read, one table row read, the f32 row written.
inline double embedding_bytes(gguf::TensorType type, int n_tokens, int n_embd) {
    return static_cast<double>(n_tokens) *
           (static_cast<double>(gguf::tensor_bytes(type, static_cast<uint64_t>(n_embd))) + 4.0 * n_embd + 4.0);
}

}  // namespace loom::kcases
