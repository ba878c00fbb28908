// GGML weight matrices to fp16 on the GPU: the first step of the dequantize-then-cuBLAS matrix product.
#pragma once

#include <cstdint>

#include "gguf/tensor_type.h"
#include "kernels/stream.h"

namespace loom::kernels {

// Types dequantize_to_f16 accepts: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K.
bool dequantize_f16_supports(gguf::TensorType type);

// W (n_rows, n_in) of `type`, rows tensor_bytes(type, n_in) apart -> out (n_rows, n_in) fp16 bits.
// Each value equals the CPU dequantizer's (gguf::dequantize) rounded to fp16, nearest even; F32
// magnitudes past the fp16 range become +-inf. With type F32 this also converts activations.
// Preconditions (std::invalid_argument otherwise): a supported type; n_in a positive multiple of its
// block (32 or 256 elements; any n_in for F32 and F16); n_rows >= 0; W and out 16-byte aligned and
// not overlapping. Asynchronous on `stream`, allocates nothing (safe inside CUDA graph capture).
void dequantize_to_f16(gguf::TensorType type, const void* W, uint16_t* out, int n_in, int64_t n_rows, Stream stream);

}  // namespace loom::kernels
