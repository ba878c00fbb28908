// Argmax kernel: each thread scans a strided slice, then one block-wide max of packed keys.
#include "kernels/argmax.h"

#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/launch.cuh"
#include "kernels/reduce.cuh"

namespace loom::kernels {
namespace {

constexpr int kThreads = 1024;

// (order key of the value) << 32 | ~index: the maximum of these is the largest value at the lowest
// index, so the whole reduction is one integer max. The key increases with the float, -0 equals
// +0, and every NaN maps to the top.
__device__ __forceinline__ unsigned long long pack(float v, int index) {
    const uint32_t bits = __float_as_uint(v);
    uint32_t key = bits ^ ((0u - (bits >> 31)) | 0x80000000u);  // negatives flip, positives gain the top bit
    if (key == 0x7fffffffu) key = 0x80000000u;                  // -0 joins +0
    if (isnan(v)) key = 0xffffffffu;
    return static_cast<unsigned long long>(key) << 32 | static_cast<uint32_t>(~static_cast<uint32_t>(index));
}

__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* __restrict__ X, int n, int32_t* out) {
    wait_for_previous_kernel();
    const float* x = X + static_cast<size_t>(blockIdx.x) * n;
    unsigned long long best = 0;  // below every packed value: the smallest key, -inf's, is 0x007fffff
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const unsigned long long candidate = pack(__ldg(x + i), i);
        best = candidate > best ? candidate : best;
    }
    best = block_max(best);
    if (threadIdx.x == 0) out[blockIdx.x] = static_cast<int32_t>(~static_cast<uint32_t>(best & 0xffffffffu));
}

}  // namespace

void argmax(const float* X, int rows, int n, int32_t* out, Stream stream) {
    if (rows < 0 || n <= 0)
        throw std::invalid_argument("argmax: rows " + std::to_string(rows) + ", n " + std::to_string(n));
    if (rows == 0) return;
    launch_kernel("argmax_kernel", argmax_kernel, {rows, kThreads, 0, stream}, X, n, out);
}

}  // namespace loom::kernels
