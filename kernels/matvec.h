// Quantized matrix-vector products for decode: y = W x with W in a GGML block format, x in f32.
#pragma once

#include "gguf/tensor_type.h"
#include "kernels/stream.h"

namespace loom::kernels {

inline constexpr int kMaxMatvecVectors = 8;

// Weight types matvec accepts: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K.
bool matvec_supports(gguf::TensorType type);

// W (n_out, n_in) of `type`, rows tensor_bytes(type, n_in) apart, @ X (n_vec, n_in)^T
// -> Y (n_vec, n_out), all device pointers; f32 accumulation, one warp per output row.
// 1 <= n_vec <= kMaxMatvecVectors: every row of W is read once for all n_vec vectors.
// Preconditions (std::invalid_argument otherwise): a supported type; n_in a multiple of its block
// (32 or 256 elements; any n_in for F32, F16, BF16); W and X 16-byte aligned; Y does not overlap X.
// Asynchronous on `stream`; launch errors throw CudaError.
void matvec(gguf::TensorType type, const void* W, const float* X, float* Y, int n_in, int n_out, int n_vec,
            Stream stream);

}  // namespace loom::kernels
