// RMSNorm kernel: per-row sum of squares by warp shuffles, then the scaled copy.
#include "kernels/rmsnorm.h"

#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/launch.cuh"
#include "kernels/reduce.cuh"

namespace loom::kernels {
namespace {

constexpr int kThreads = 256;

// Row elements a thread keeps in registers between the sum and the scaled copy (with their
// weights, loaded before the reduction): rows up to kHeld * kThreads floats then cost one global
// round trip instead of two. Longer rows read the rest again. Sums run in the same order either way.
constexpr int kHeld = 16;

// Every read of the row happens before the block_sum barrier and every write after it, so Y == X
// is safe.
__global__ void __launch_bounds__(kThreads)
    rmsnorm_kernel(const float* X, const float* __restrict__ w, float* Y, int n, float eps) {
    wait_for_previous_kernel();
    const float* x = X + static_cast<size_t>(blockIdx.x) * n;
    float* y = Y + static_cast<size_t>(blockIdx.x) * n;
    float held[kHeld], weight[kHeld];
    float sum_sq = 0.f;
#pragma unroll
    for (int j = 0; j < kHeld; ++j) {
        const int i = threadIdx.x + j * kThreads;
        if (i < n) {
            held[j] = x[i];
            weight[j] = __ldg(w + i);
            sum_sq += held[j] * held[j];
        }
    }
    for (int i = threadIdx.x + kHeld * kThreads; i < n; i += kThreads) sum_sq += x[i] * x[i];
    sum_sq = block_sum(sum_sq);
    const float scale = 1.0f / sqrtf(sum_sq / static_cast<float>(n) + eps);
#pragma unroll
    for (int j = 0; j < kHeld; ++j) {
        const int i = threadIdx.x + j * kThreads;
        if (i < n) y[i] = held[j] * scale * weight[j];
    }
    for (int i = threadIdx.x + kHeld * kThreads; i < n; i += kThreads) y[i] = x[i] * scale * __ldg(w + i);
}

// Each thread re-reads only the elements of X it wrote itself, so no barrier is needed between the
// add and the scaled copy beyond block_sum's.
__global__ void __launch_bounds__(kThreads)
    add_rmsnorm_kernel(float* X, const float* __restrict__ R, const float* __restrict__ w, float* __restrict__ Y, int n,
                       float eps) {
    wait_for_previous_kernel();
    float* x = X + static_cast<size_t>(blockIdx.x) * n;
    const float* r = R + static_cast<size_t>(blockIdx.x) * n;
    float* y = Y + static_cast<size_t>(blockIdx.x) * n;
    float held[kHeld], weight[kHeld];
    float sum_sq = 0.f;
#pragma unroll
    for (int j = 0; j < kHeld; ++j) {
        const int i = threadIdx.x + j * kThreads;
        if (i < n) {
            held[j] = x[i] + r[i];
            x[i] = held[j];
            weight[j] = __ldg(w + i);
            sum_sq += held[j] * held[j];
        }
    }
    for (int i = threadIdx.x + kHeld * kThreads; i < n; i += kThreads) {
        const float v = x[i] + r[i];
        x[i] = v;
        sum_sq += v * v;
    }
    sum_sq = block_sum(sum_sq);
    const float scale = 1.0f / sqrtf(sum_sq / static_cast<float>(n) + eps);
#pragma unroll
    for (int j = 0; j < kHeld; ++j) {
        const int i = threadIdx.x + j * kThreads;
        if (i < n) y[i] = held[j] * scale * weight[j];
    }
    for (int i = threadIdx.x + kHeld * kThreads; i < n; i += kThreads) y[i] = x[i] * scale * __ldg(w + i);
}

}  // namespace

void add_rmsnorm(float* X, const float* R, const float* w, float* Y, int rows, int n, float eps, Stream stream) {
    if (n <= 0 || rows < 0)
        throw std::invalid_argument("add_rmsnorm: rows " + std::to_string(rows) + ", n " + std::to_string(n));
    if (rows == 0) return;
    launch_kernel("add_rmsnorm_kernel", add_rmsnorm_kernel, {rows, kThreads, 0, stream}, X, R, w, Y, n, eps);
}

void rmsnorm(const float* X, const float* w, float* Y, int rows, int n, float eps, Stream stream) {
    if (n <= 0 || rows < 0)
        throw std::invalid_argument("rmsnorm: rows " + std::to_string(rows) + ", n " + std::to_string(n));
    if (rows == 0) return;
    launch_kernel("rmsnorm_kernel", rmsnorm_kernel, {rows, kThreads, 0, stream}, X, w, Y, n, eps);
}

}  // namespace loom::kernels
