// Elementwise kernels: grid-stride loops over coalesced f32 arrays.
#include "kernels/elementwise.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/launch.cuh"
#include "kernels/matvec.h"
#include "kernels/swiglu.cuh"

namespace loom::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;  // grid-stride beyond this: enough to fill any current GPU

unsigned blocks_for(int64_t n) {
    return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks));
}

// In-place aliasing is safe: each element is read and written by the same thread only.
__global__ void swiglu_kernel(const float* gate, const float* up, float* out, int64_t n) {
    wait_for_previous_kernel();
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        out[i] = swiglu_value(gate[i], up[i]);
    }
}

__global__ void swiglu_pairs_kernel(const float* __restrict__ gate_up, int64_t total, int n, float* __restrict__ out) {
    wait_for_previous_kernel();
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
        out[i] = swiglu_pair_value(gate_up + i / n * 2 * n, i % n);
    }
}

__global__ void add_kernel(const float* a, const float* b, float* out, int64_t n) {
    wait_for_previous_kernel();
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
        out[i] = a[i] + b[i];
}

__global__ void add_bias_kernel(float* X, const float* __restrict__ bias, int64_t total, int n) {
    wait_for_previous_kernel();
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x)
        X[i] += __ldg(bias + i % n);
}

// grid (n, ...): block y-stride over one row's columns.
__global__ void gather_rows_kernel(const float* __restrict__ src, int64_t width, const int32_t* __restrict__ rows,
                                   float* __restrict__ dst) {
    wait_for_previous_kernel();
    const float* from = src + static_cast<int64_t>(rows[blockIdx.x]) * width;
    float* to = dst + static_cast<int64_t>(blockIdx.x) * width;
    for (int64_t i = blockIdx.y * int64_t{blockDim.x} + threadIdx.x; i < width; i += int64_t{gridDim.y} * blockDim.x)
        to[i] = from[i];
}

}  // namespace

void swiglu(const float* gate, const float* up, float* out, int64_t n, Stream stream) {
    if (n < 0) throw std::invalid_argument("swiglu: n " + std::to_string(n));
    if (n == 0) return;
    launch_kernel("swiglu_kernel", swiglu_kernel, {blocks_for(n), kThreads, 0, stream}, gate, up, out, n);
}

void swiglu_pairs(const float* gate_up, int rows, int n, float* out, Stream stream) {
    if (rows < 0 || n <= 0 || n % kSwigluPairRows != 0)
        throw std::invalid_argument("swiglu_pairs: rows " + std::to_string(rows) + ", n " + std::to_string(n) +
                                    " (n must be positive and even)");
    const int64_t total = int64_t{rows} * n;
    if (total == 0) return;
    launch_kernel("swiglu_pairs_kernel", swiglu_pairs_kernel, {blocks_for(total), kThreads, 0, stream}, gate_up, total,
                  n, out);
}

void add(const float* a, const float* b, float* out, int64_t n, Stream stream) {
    if (n < 0) throw std::invalid_argument("add: n " + std::to_string(n));
    if (n == 0) return;
    launch_kernel("add_kernel", add_kernel, {blocks_for(n), kThreads, 0, stream}, a, b, out, n);
}

void add_bias(float* X, const float* bias, int rows, int n, Stream stream) {
    if (rows < 0 || n <= 0)
        throw std::invalid_argument("add_bias: rows " + std::to_string(rows) + ", n " + std::to_string(n));
    const int64_t total = int64_t{rows} * n;
    if (total == 0) return;
    launch_kernel("add_bias_kernel", add_bias_kernel, {blocks_for(total), kThreads, 0, stream}, X, bias, total, n);
}

void gather_rows(const float* src, int64_t width, const int32_t* rows, int n, float* dst, Stream stream) {
    if (n < 0 || width <= 0)
        throw std::invalid_argument("gather_rows: n " + std::to_string(n) + ", width " + std::to_string(width));
    if (n == 0) return;
    const dim3 grid(static_cast<unsigned>(n), std::min(blocks_for(width), 64u));
    launch_kernel("gather_rows_kernel", gather_rows_kernel, {grid, kThreads, 0, stream}, src, width, rows, dst);
}

}  // namespace loom::kernels
