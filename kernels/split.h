// f32 activations as the sum of two 16-bit values (hi + lo), so a 16-bit GEMM keeps ~22 (fp16) or
// ~16 (bf16) significant bits of each activation instead of 11 or 8.
#pragma once

#include <cstdint>

#include "kernels/stream.h"

namespace loom::kernels {

// The 16-bit operand formats of the cuBLAS products: IEEE binary16 and bfloat16.
enum class HalfType { f16, bf16 };

// X (n floats) -> hi[i] = round(X[i]), lo[i] = round(X[i] - hi[i]), both in `type`, round to nearest
// even (the subtraction is exact in f32). hi + lo is within max(2^-22 |x|, 2^-25) of x for fp16 (lo
// goes subnormal below |x| = 2^-3) and within 2^-16 |x| for bf16. Where hi overflows to +-inf (fp16:
// |x| >= 65520) lo is 0, so the sum is that inf as one rounding would give, not inf - inf = NaN.
// Each value equals the CPU's (gguf::float_to_half / float_to_bf16) bit for bit.
// Preconditions (std::invalid_argument otherwise): n >= 0; X, hi and lo 16-byte aligned, hi and lo
// not overlapping X or each other. Asynchronous on `stream`, allocates nothing (graph-capture safe).
void split_to_half(HalfType type, const float* X, uint16_t* hi, uint16_t* lo, int64_t n, Stream stream);

inline void split_to_f16(const float* X, uint16_t* hi, uint16_t* lo, int64_t n, Stream stream) {
    split_to_half(HalfType::f16, X, hi, lo, n, stream);
}
inline void split_to_bf16(const float* X, uint16_t* hi, uint16_t* lo, int64_t n, Stream stream) {
    split_to_half(HalfType::bf16, X, hi, lo, n, stream);
}

}  // namespace loom::kernels
