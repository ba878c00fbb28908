// Matrix-matrix products for prefill and batched decode: cuBLAS on the tensor cores with 16-bit
// inputs and fp32 accumulation (F16/BF16 weights as stored, times activations split into hi + lo;
// quantized weights dequantized to fp16, times fp16 activations), or full fp32 for F32 weights.
#pragma once

#include <cstdint>

#include "gguf/tensor_type.h"
#include "kernels/split.h"
#include "kernels/stream.h"

// cuBLAS defines cublasHandle_t as a pointer to this opaque struct (no CUDA headers here).
struct cublasContext;

namespace loom::kernels {

// The cuBLAS handle, made once at model load: creating one allocates and synchronizes, so never per call.
// cuBLAS runs in the caller's workspace (no allocation of its own, as CUDA graph capture requires).
class GemmContext {
public:
    // cublas_workspace: device memory of `bytes` (>= cublas_workspace_bytes() recommended, 256-byte
    // aligned) that outlives the context; `stream` is the one products run on until told otherwise.
    // Every stream the context is given must outlive it (cublasDestroy may use the last one).
    // Throws std::invalid_argument for a misaligned workspace, CublasError when cuBLAS fails.
    GemmContext(void* cublas_workspace, uint64_t bytes, Stream stream);
    ~GemmContext();
    GemmContext(const GemmContext&) = delete;
    GemmContext& operator=(const GemmContext&) = delete;

    // cuBLAS's recommended workspace on Hopper (32 MiB), enough for every earlier architecture too.
    static uint64_t cublas_workspace_bytes();

private:
    friend void gemm_half(GemmContext&, HalfType, const uint16_t*, const uint16_t*, float*, int, int, int, bool,
                          Stream);
    friend void gemm_f32(GemmContext&, const float*, const float*, float*, int, int, int, Stream);
    // The handle bound to `stream`: a new stream is set (host-side only), and the workspace set again
    // because cublasSetStream drops it.
    cublasContext* bound_to(Stream stream);

    cublasContext* handle_ = nullptr;
    void* workspace_;
    uint64_t workspace_bytes_;
    Stream stream_;
};

// Scratch that gemm needs for W (n_out, n_in) @ X (n_rows, n_in)^T: a 16-bit W, then X's 16-bit
// hi and lo halves, each 256-byte aligned. Callers with several shapes reserve the largest of this.
uint64_t gemm_workspace_bytes(int max_n_in, int max_n_out, int max_rows);

// W (n_out, n_in) of `type`, rows tensor_bytes(type, n_in) apart, @ X (n_rows, n_in)^T -> Y (n_rows, n_out),
// f32 in and out, all device pointers (docs/VALIDATION.md's precision policy):
// - F32 W: X multiplied in full fp32 (no rounding, workspace unused);
// - F16 / BF16 W, used in place: X split into hi + lo of the same 16-bit type in `workspace`
//   (split_to_half), then Y = W hi + W lo, two cuBLAS products into one fp32 sum;
// - quantized W: dequantized to fp16 and X rounded to fp16 in `workspace`, one cuBLAS product.
// Preconditions (std::invalid_argument otherwise): dequantize_f16_supports(type); n_in a positive multiple
// of its block; n_out, n_rows >= 0; W and X 16-byte aligned, workspace 256-byte aligned and at least
// gemm_workspace_bytes(n_in, n_out, n_rows); Y overlapping none of them. Asynchronous on `stream`,
// allocates and synchronizes nothing (safe inside CUDA graph capture); cuBLAS failures throw CublasError.
void gemm(GemmContext& ctx, gguf::TensorType type, const void* W, const float* X, float* Y, int n_in, int n_out,
          int n_rows, void* workspace, uint64_t workspace_bytes, Stream stream);

// The cuBLAS step alone: W (n_out, n_in) @ X (n_rows, n_in)^T, both of `type`, -> Y (n_rows, n_out)
// f32, fp32 accumulation on the tensor cores; accumulate: Y += the product instead of Y =. n_in > 0,
// n_out and n_rows >= 0 (std::invalid_argument otherwise).
void gemm_half(GemmContext& ctx, HalfType type, const uint16_t* W, const uint16_t* X, float* Y, int n_in, int n_out,
               int n_rows, bool accumulate, Stream stream);

// The F32 step alone: W (n_out, n_in) f32 @ X (n_rows, n_in)^T f32 -> Y (n_rows, n_out) f32, full
// fp32 (no TF32). Same shape rules as gemm_half; gemm() checks them.
void gemm_f32(GemmContext& ctx, const float* W, const float* X, float* Y, int n_in, int n_out, int n_rows,
              Stream stream);

}  // namespace loom::kernels
