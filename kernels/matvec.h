// Quantized matrix-vector products for decode: y = W x with W in a GGML block format, x in f32,
// plain or with the RMSNorm and residual add around them fused in.
#pragma once

#include "gguf/tensor_type.h"
#include "kernels/stream.h"

namespace loom::kernels {

inline constexpr int kMaxMatvecVectors = 32;

// Weight types matvec accepts: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K.
bool matvec_supports(gguf::TensorType type);

// W (n_out, n_in) of `type`, rows tensor_bytes(type, n_in) apart, @ X (n_vec, n_in)^T
// -> Y (n_vec, n_out), all device pointers; f32 accumulation, one warp per output row.
// 1 <= n_vec <= kMaxMatvecVectors: every row of W is read once for all n_vec vectors, and each
// vector's sums are added in the same order whatever n_vec is (a result does not depend on what
// else shares the call).
// Preconditions (std::invalid_argument otherwise): a supported type; n_in a multiple of its block
// (32 or 256 elements; any n_in for F32, F16, BF16); W and X 16-byte aligned; Y does not overlap X.
// Asynchronous on `stream`; launch errors throw CudaError.
void matvec(gguf::TensorType type, const void* W, const float* X, float* Y, int n_in, int n_out, int n_vec,
            Stream stream);

// RMSNorm fused into the products around it, so a decode layer launches no norm kernel. A residual
// product leaves, besides the new residual R, R ⊙ w (w: the next norm's weight) and the sums of R^2
// over groups of kNormRowsPerPartial elements; the next (normed) product reads both and scales its
// dot products by 1 / sqrt(mean(R^2) + eps), which equals the product with rmsnorm(R) * w up to f32
// rounding. S below is (n_vec, norm_partial_count(n)) for vectors of n elements.
inline constexpr int kNormRowsPerPartial = 4;
constexpr int norm_partial_count(int n) { return (n + kNormRowsPerPartial - 1) / kNormRowsPerPartial; }

// Y (n_vec, n_out) = W @ (XW_t / sqrt(sum(S_t) / n_in + eps)) for XW = x ⊙ w and S the square sums
// of x. Preconditions as matvec; S 4-byte aligned.
void matvec_normed(gguf::TensorType type, const void* W, const float* XW, const float* S, float eps, float* Y, int n_in,
                   int n_out, int n_vec, Stream stream);

// The gate/up layout of matvec_normed_swiglu and swiglu_pairs: the fused (2 n_ff, n_in) matrix holds
// pairs of gate rows and pairs of up rows in turn, [gate 2j; gate 2j+1; up 2j; up 2j+1] for
// j = 0 .. n_ff/2 - 1, so the four rows of one matvec block are both inputs of two outputs.
inline constexpr int kSwigluPairRows = 2;

// matvec_normed with SwiGLU applied to its output: W (n_out = 2 n_ff, n_in) in the pair layout
// above -> Y (n_vec, n_ff) = silu(gate) * up, as swiglu() computes it. n_out a multiple of 4.
void matvec_normed_swiglu(gguf::TensorType type, const void* W, const float* XW, const float* S, float eps, float* Y,
                          int n_in, int n_out, int n_vec, Stream stream);

// R (n_vec, n_out) += W @ X^T; then RW = R ⊙ w (w: n_out) and S = R's square sums. R, RW, S and X
// do not overlap. Preconditions as matvec.
void matvec_residual(gguf::TensorType type, const void* W, const float* X, float* R, const float* w, float* RW,
                     float* S, int n_in, int n_out, int n_vec, Stream stream);

// RW and S of matvec_residual for an R no product wrote (the first layer's input): R (n_vec, n).
void norm_inputs(const float* R, const float* w, float* RW, float* S, int n_vec, int n, Stream stream);

// matvec_residual's epilogue for a product that wrote plain Y (n_vec, n) (the q8 family): R += Y, then
// norm_inputs, in one pass and with matvec_residual's float operations, so its R, RW and S bits equal
// matvec_residual's given the same product sums. Y, RW and S overlap neither R nor each other.
void residual_norm_inputs(float* R, const float* Y, const float* w, float* RW, float* S, int n_vec, int n,
                          Stream stream);

}  // namespace loom::kernels
