// cuBLAS matrix products: 16-bit operands on the tensor cores (F16/BF16 weights times split activations,
// dequantized weights times fp16 activations) with fp32 accumulation, or full fp32 for F32 weights.
#include "kernels/gemm.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cublas_check.h"
#include "kernels/dequantize.h"
#include "kernels/split.h"

namespace loom::kernels {
namespace {

constexpr uint64_t kAlign = 256;

uint64_t round_up(uint64_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

uint64_t f16_bytes(int64_t rows, int64_t cols) { return static_cast<uint64_t>(rows * cols) * sizeof(uint16_t); }

bool aligned(const void* p, uint64_t to) { return reinterpret_cast<uintptr_t>(p) % to == 0; }

bool overlaps(const void* a, uint64_t a_bytes, const void* b, uint64_t b_bytes) {
    const auto a0 = reinterpret_cast<uintptr_t>(a), b0 = reinterpret_cast<uintptr_t>(b);
    return a_bytes > 0 && b_bytes > 0 && a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

std::string shape(int n_in, int n_out, int n_rows) {
    return "W (" + std::to_string(n_out) + ", " + std::to_string(n_in) + ") @ X (" + std::to_string(n_rows) + ", " +
           std::to_string(n_in) + ")^T";
}

}  // namespace

GemmContext::GemmContext(void* cublas_workspace, uint64_t bytes, Stream stream)
    : workspace_(cublas_workspace), workspace_bytes_(bytes), stream_(stream) {
    if (!aligned(cublas_workspace, kAlign))
        throw std::invalid_argument("GemmContext: the cuBLAS workspace must be 256-byte aligned");
    LOOM_CUBLAS_CHECK(cublasCreate(&handle_));
    try {
        LOOM_CUBLAS_CHECK(cublasSetStream(handle_, stream_));
        LOOM_CUBLAS_CHECK(cublasSetWorkspace(handle_, workspace_, workspace_bytes_));
        // fp16 inputs with fp32 compute use the tensor cores by default; no TF32 or reduced-precision modes.
        LOOM_CUBLAS_CHECK(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH));
    } catch (...) {
        cublasDestroy(handle_);
        throw;
    }
}

GemmContext::~GemmContext() { cublasDestroy(handle_); }

uint64_t GemmContext::cublas_workspace_bytes() { return uint64_t{32} << 20; }

cublasContext* GemmContext::bound_to(Stream stream) {
    if (stream != stream_) {
        LOOM_CUBLAS_CHECK(cublasSetStream(handle_, stream));
        LOOM_CUBLAS_CHECK(cublasSetWorkspace(handle_, workspace_, workspace_bytes_));
        stream_ = stream;
    }
    return handle_;
}

uint64_t gemm_workspace_bytes(int max_n_in, int max_n_out, int max_rows) {
    if (max_n_in < 0 || max_n_out < 0 || max_rows < 0)
        throw std::invalid_argument("gemm_workspace_bytes: negative size in " + shape(max_n_in, max_n_out, max_rows));
    return round_up(f16_bytes(max_n_out, max_n_in)) + 2 * round_up(f16_bytes(max_rows, max_n_in));
}

void gemm_half(GemmContext& ctx, HalfType type, const uint16_t* W, const uint16_t* X, float* Y, int n_in, int n_out,
               int n_rows, bool accumulate, Stream stream) {
    if (n_in <= 0 || n_out < 0 || n_rows < 0)
        throw std::invalid_argument("gemm_half: bad shape " + shape(n_in, n_out, n_rows));
    if (n_out == 0 || n_rows == 0) return;
    // Row-major Y (n_rows, n_out) is column-major Y^T (n_out, n_rows) = W X^T, where row-major W is
    // column-major W^T (op T, lda n_in) and row-major X is column-major X^T (op N, ldb n_in).
    const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
    const cudaDataType_t data = type == HalfType::f16 ? CUDA_R_16F : CUDA_R_16BF;
    LOOM_CUBLAS_CHECK(cublasGemmEx(ctx.bound_to(stream), CUBLAS_OP_T, CUBLAS_OP_N, n_out, n_rows, n_in, &alpha, W, data,
                                   n_in, X, data, n_in, &beta, Y, CUDA_R_32F, n_out, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT));
}

// Pedantic fp32: no TF32, whatever NVIDIA_TF32_OVERRIDE says. F32 weights are rare (small
// reference models), so exactness matters more than speed here.
void gemm_f32(GemmContext& ctx, const float* W, const float* X, float* Y, int n_in, int n_out, int n_rows,
              Stream stream) {
    const float alpha = 1.f, beta = 0.f;
    LOOM_CUBLAS_CHECK(cublasGemmEx(ctx.bound_to(stream), CUBLAS_OP_T, CUBLAS_OP_N, n_out, n_rows, n_in, &alpha, W,
                                   CUDA_R_32F, n_in, X, CUDA_R_32F, n_in, &beta, Y, CUDA_R_32F, n_out,
                                   CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT));
}

void gemm(GemmContext& ctx, gguf::TensorType type, const void* W, const float* X, float* Y, int n_in, int n_out,
          int n_rows, void* workspace, uint64_t workspace_bytes, Stream stream) {
    const std::string type_name(gguf::tensor_type_name(type));
    if (!dequantize_f16_supports(type)) throw std::invalid_argument("gemm: no kernel for weight type " + type_name);
    const auto block = static_cast<int>(gguf::tensor_type_info(type).block_elems);
    if (n_in <= 0 || n_out < 0 || n_rows < 0 || n_in % block != 0)
        throw std::invalid_argument("gemm: bad shape " + shape(n_in, n_out, n_rows) + ": n_in must be a positive " +
                                    "multiple of the " + type_name + " block size " + std::to_string(block) +
                                    ", n_out and n_rows >= 0");
    const uint64_t need = gemm_workspace_bytes(n_in, n_out, n_rows);
    if (workspace_bytes < need)
        throw std::invalid_argument("gemm: workspace of " + std::to_string(workspace_bytes) + " bytes, " +
                                    shape(n_in, n_out, n_rows) + " needs " + std::to_string(need));
    if (!aligned(W, 16) || !aligned(X, 16) || !aligned(workspace, kAlign))
        throw std::invalid_argument("gemm: W and X must be 16-byte aligned, the workspace 256-byte aligned");
    const uint64_t y_bytes = static_cast<uint64_t>(int64_t{n_rows} * n_out) * sizeof(float);
    const uint64_t w_bytes = gguf::tensor_bytes(type, static_cast<uint64_t>(int64_t{n_out} * n_in));
    const uint64_t x_bytes = static_cast<uint64_t>(int64_t{n_rows} * n_in) * sizeof(float);
    if (overlaps(Y, y_bytes, W, w_bytes) || overlaps(Y, y_bytes, X, x_bytes) || overlaps(Y, y_bytes, workspace, need))
        throw std::invalid_argument("gemm: Y overlaps W, X or the workspace");
    if (n_out == 0 || n_rows == 0) return;
    if (type == gguf::TensorType::F32) {  // kept f32 (docs/VALIDATION.md's precision policy): no fp16 rounding
        gemm_f32(ctx, static_cast<const float*>(W), X, Y, n_in, n_out, n_rows, stream);
        return;
    }

    // Workspace: [16-bit W][X hi][X lo], as gemm_workspace_bytes sizes it.
    auto* w16 = static_cast<uint16_t*>(workspace);
    auto* x_hi = reinterpret_cast<uint16_t*>(static_cast<char*>(workspace) + round_up(f16_bytes(n_out, n_in)));
    auto* x_lo = reinterpret_cast<uint16_t*>(reinterpret_cast<char*>(x_hi) + round_up(f16_bytes(n_rows, n_in)));
    if (type == gguf::TensorType::F16 || type == gguf::TensorType::BF16) {
        // Weights used exactly as stored; the activations keep ~22 (fp16) or ~16 (bf16) bits as hi + lo.
        const HalfType half = type == gguf::TensorType::F16 ? HalfType::f16 : HalfType::bf16;
        const auto* w = static_cast<const uint16_t*>(W);
        split_to_half(half, X, x_hi, x_lo, int64_t{n_rows} * n_in, stream);
        gemm_half(ctx, half, w, x_hi, Y, n_in, n_out, n_rows, false, stream);
        gemm_half(ctx, half, w, x_lo, Y, n_in, n_out, n_rows, true, stream);
        return;
    }
    // Quantized weights carry a larger error of their own: one fp16 rounding of X costs little beside it.
    dequantize_to_f16(type, W, w16, n_in, n_out, stream);
    dequantize_to_f16(gguf::TensorType::F32, X, x_hi, n_in, n_rows, stream);
    gemm_half(ctx, HalfType::f16, w16, x_hi, Y, n_in, n_out, n_rows, false, stream);
}

}  // namespace loom::kernels
