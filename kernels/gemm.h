// Matrix-matrix products for prefill and batched decode: weights dequantized to fp16, then cuBLAS
// on the tensor cores (fp16 inputs, fp32 accumulation and output).
#pragma once

#include <cstdint>

#include "gguf/tensor_type.h"
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
    friend void gemm_f16(GemmContext&, const uint16_t*, const uint16_t*, float*, int, int, int, Stream);
    friend void gemm_f32(GemmContext&, const float*, const float*, float*, int, int, int, Stream);
    // The handle bound to `stream`: a new stream is set (host-side only), and the workspace set again
    // because cublasSetStream drops it.
    cublasContext* bound_to(Stream stream);

    cublasContext* handle_ = nullptr;
    void* workspace_;
    uint64_t workspace_bytes_;
    Stream stream_;
};

// Scratch that gemm needs for W (n_out, n_in) @ X (n_rows, n_in)^T: fp16 W then fp16 X, each
// 256-byte aligned. Callers with several shapes reserve the largest of this over them.
uint64_t gemm_workspace_bytes(int max_n_in, int max_n_out, int max_rows);

// W (n_out, n_in) of `type`, rows tensor_bytes(type, n_in) apart, @ X (n_rows, n_in)^T -> Y (n_rows, n_out),
// f32 in and out, all device pointers. W is dequantized to fp16 (an F16 W is used in place) and X
// rounded to fp16 in `workspace`, then one cuBLAS product with fp32 accumulation; an F32 W instead
// multiplies X in full fp32 (no rounding, workspace unused).
// Preconditions (std::invalid_argument otherwise): dequantize_f16_supports(type); n_in a positive multiple
// of its block; n_out, n_rows >= 0; W and X 16-byte aligned, workspace 256-byte aligned and at least
// gemm_workspace_bytes(n_in, n_out, n_rows); Y overlapping none of them. Asynchronous on `stream`,
// allocates and synchronizes nothing (safe inside CUDA graph capture); cuBLAS failures throw CublasError.
void gemm(GemmContext& ctx, gguf::TensorType type, const void* W, const float* X, float* Y, int n_in, int n_out,
          int n_rows, void* workspace, uint64_t workspace_bytes, Stream stream);

// The cuBLAS step alone: W (n_out, n_in) fp16 @ X (n_rows, n_in)^T fp16 -> Y (n_rows, n_out) f32, fp32
// accumulation on the tensor cores. n_in > 0, n_out and n_rows >= 0 (std::invalid_argument otherwise).
void gemm_f16(GemmContext& ctx, const uint16_t* W, const uint16_t* X, float* Y, int n_in, int n_out, int n_rows,
              Stream stream);

// The F32 step alone: W (n_out, n_in) f32 @ X (n_rows, n_in)^T f32 -> Y (n_rows, n_out) f32, full
// fp32 (no TF32). Same shape rules as gemm_f16; gemm() checks them.
void gemm_f32(GemmContext& ctx, const float* W, const float* X, float* Y, int n_in, int n_out, int n_rows,
              Stream stream);

}  // namespace loom::kernels
