// CPU conversion between f32 and GGML block formats: dequantization (the oracle for GPU kernels)
// and quantizers used by `loom synth`.
#pragma once

#include <cstdint>
#include <string>

#include "gguf/tensor_type.h"

namespace loom::gguf {

// src holds tensor_bytes(type, n) bytes -> dst (n floats). n must be a multiple of the block size.
// Throws UnsupportedTypeError (naming `tensor` when given) for types loom cannot dequantize.
void dequantize(TensorType type, const void* src, float* dst, uint64_t n, const std::string& tensor = {});

// Types with a quantizer: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K.
bool can_quantize(TensorType type);

// src (n floats) -> dst (tensor_bytes(type, n) bytes). n must be a multiple of the block size.
// Throws UnsupportedTypeError for types without a quantizer.
void quantize(TensorType type, const float* src, void* dst, uint64_t n);

}  // namespace loom::gguf
