// The q8 family's device side: x quantized per 32-element unit to int8 (plain, RMS-normed first, or SwiGLU of
// a fused gate/up product first), and the products of repacked weights (kernels/q8_repack.h) with it on dp4a
// or int8 tensor cores. Every kernel equals q8_product_ref bit for bit, for any n_vec: a vector's result does
// not depend on its batch.
// The CUDA backend takes them for every q8_eligible layer matrix (engine/q8_policy.h).
#pragma once

#include <cstdint>

#include "kernels/q8_layout.h"
#include "kernels/q8_repack.h"
#include "kernels/stream.h"

namespace loom::kernels {

inline constexpr int kQ8MaxVectors = 65535;

// Q8Kernel::automatic takes the dp4a rows kernel up to this many vectors and the MMA kernel above. On an
// H100 (matvec_dev, 8B Q4_0 4096x4096) dp4a takes 21.0 us at 1 vector against the MMA's 28.2, but ~100 us
// at 8 against 31.8; with 8 here the 8B Q8_0 decode step at batch 8 took 9.49 ms, with 1 6.13 ms. The two
// give the same bits, so only speed moves.
inline constexpr int kQ8Dp4aMaxVectors = 1;

enum class Q8Kernel { automatic, dp4a, mma };

// A repacked matrix on the device: q8_repack's bytes at `data` (256-byte aligned), described by `layout`.
struct Q8Matrix {
    Q8Layout layout;
    const void* data = nullptr;
};

// GGUF rows (rows x tensor_bytes(type, n_in) bytes) at gguf_rows -> q8_layout(type, rows, n_in).bytes at
// out, the bytes q8_repack writes on the host (stream padding zeroed), both on the device, so a model's
// weights repack at device speed after upload. Preconditions (std::invalid_argument otherwise): those of
// q8_layout, out 256-byte aligned and not overlapping the rows. Asynchronous on `stream`; launch errors
// throw CudaError.
void q8_repack_device(gguf::TensorType type, const void* gguf_rows, int rows, int n_in, void* out, Stream stream);

// The same for rows row0 .. row0 + n_rows - 1 of a (rows, n_in) matrix, their GGUF bytes at gguf_rows, into
// their places in the layout at out (its stream padding zeroed too): a matrix larger than the staging at
// hand repacks a slice at a time. Preconditions as q8_repack_device, with 0 <= row0, 1 <= n_rows and
// row0 + n_rows <= rows.
void q8_repack_device_rows(gguf::TensorType type, const void* gguf_rows, int row0, int n_rows, int rows, int n_in,
                           void* out, Stream stream);

// W (rows, n_in) -> out (rows, n_in) fp16 bits, row-major: each value q8_dequantize_row's rounded to
// nearest even (q8_dequantize_f16_ref), which equals dequantize_to_f16 of the GGUF rows W was repacked
// from; for the cuBLAS products of prefill parts (kernels/gemm.h). Preconditions (std::invalid_argument
// otherwise): W.layout is q8_layout's, W.data and out 16-byte aligned and not overlapping. Asynchronous
// on `stream`, allocates nothing; launch errors throw CudaError.
void q8_dequantize_f16(const Q8Matrix& W, uint16_t* out, Stream stream);

// Sizes of quantized x for (n_vec, n_in): xq bytes and XMeta entries.
inline uint64_t q8_xq_bytes(int n_vec, int n_in) { return static_cast<uint64_t>(n_vec) * n_in; }
inline uint64_t q8_xmeta_count(int n_vec, int n_in) { return static_cast<uint64_t>(n_vec) * (n_in / q8::kUnit); }

// X (n_vec, n_in) f32 -> xq (q8_xq_bytes, 16-byte aligned, units in q8::pos8 order) and xmeta
// (q8_xmeta_count, 8-byte aligned), as q8_quantize_x_ref + q8_device_order compute them. Preconditions
// (std::invalid_argument otherwise): 1 <= n_vec <= kQ8MaxVectors, n_in a positive multiple of 128, X
// 4-byte aligned. Asynchronous on `stream`; launch errors throw CudaError.
void q8_quantize_x(const float* X, int8_t* xq, q8::XMeta* xmeta, int n_vec, int n_in, Stream stream);

// The same of XW * s per vector, s = 1 / sqrt(Σ S / n_in + eps): the inputs of matvec_normed (XW = x ⊙ w
// and the square-sum partials S, (n_vec, norm_partial_count(n_in))), so a normed product is this then
// q8_product. s is summed in one fixed order, whatever n_vec (q8_quantize_x_normed_ref does the same).
void q8_quantize_x_normed(const float* XW, const float* S, float eps, int8_t* xq, q8::XMeta* xmeta, int n_vec, int n_in,
                          Stream stream);

// Decode rows whose next products are q8 ones: R (n_vec, n) += Y, then xq / xmeta of the normed R (R ⊙ w
// scaled by 1 / sqrt(Σ R² / n + eps)) in one launch, one block per vector, with residual_norm_inputs' and
// q8_quantize_x_normed's float operations in their order, so R, xq and xmeta equal those two calls' bit
// for bit (their RW and S are not written). Preconditions (std::invalid_argument otherwise): those of
// q8_quantize_x with n for n_in, n <= kQ8ResidualMaxN; R, Y, w 16-byte aligned, R overlapping none of the
// others.
inline constexpr int kQ8ResidualMaxN = 8192;  // R ⊙ w and the square sums in 40 KiB of shared memory
void q8_residual_quantize_normed(float* R, const float* Y, const float* w, float eps, int8_t* xq, q8::XMeta* xmeta,
                                 int n_vec, int n, Stream stream);

// The same of x = silu(gate) * up (n_vec, n_ff) from gate_up (n_vec, 2 n_ff), rows of a fused gate/up
// product in the pair layout of kernels/matvec.h, in one pass: equal bit for bit to swiglu_pairs then
// q8_quantize_x (both inline kernels/swiglu.cuh's expression), so a decode step's down product needs no f32
// SwiGLU rows. Preconditions as q8_quantize_x, with n_ff for n_in and gate_up 4-byte aligned; the CPU
// reference is q8_quantize_swiglu_ref.
void q8_quantize_swiglu(const float* gate_up, int8_t* xq, q8::XMeta* xmeta, int n_vec, int n_ff, Stream stream);

// Y (n_vec, W.layout.rows) = W @ x for x quantized by q8_quantize_x*. Preconditions (std::invalid_argument
// otherwise): W.data 256-byte aligned, xq 16-byte and xmeta 8-byte aligned, Y 4-byte aligned and
// overlapping none of them, 1 <= n_vec <= kQ8MaxVectors. Asynchronous on `stream`; launch errors throw
// CudaError.
void q8_product(const Q8Matrix& W, const int8_t* xq, const q8::XMeta* xmeta, float* Y, int n_vec, Q8Kernel kernel,
                Stream stream);

// Whether q8_product_f32 takes `type`: Q4_0, Q8_0, Q4_K, Q6_K (the f32 family; kernels/q8_kernels.cuh).
constexpr bool q8_f32_supports(gguf::TensorType type) {
    return type == gguf::TensorType::Q4_0 || type == gguf::TensorType::Q8_0 || type == gguf::TensorType::Q4_K ||
           type == gguf::TensorType::Q6_K;
}

// Y (n_vec, W.layout.rows) = W @ x for f32 x (n_vec, n_in), not quantized: the f32 family's order (stated in
// kernels/q8_kernels.cuh), one for every n_vec, so a vector's result does not depend on its batch; f32
// accuracy, for the logits' output projection. Preconditions (std::invalid_argument otherwise): those of
// q8_product on W and Y, a type q8_f32_supports, X 16-byte aligned and not overlapping Y. Asynchronous on
// `stream`; launch errors throw CudaError.
void q8_product_f32(const Q8Matrix& W, const float* X, float* Y, int n_vec, Stream stream);

}  // namespace loom::kernels
