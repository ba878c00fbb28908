// Warp-shuffle and block-wide reductions shared by the CUDA kernels (device code only).
#pragma once

#include <cstdint>

namespace loom::kernels {

inline constexpr int kWarpSize = 32;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ unsigned long long warp_max(unsigned long long v) {
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
        const unsigned long long other = __shfl_xor_sync(0xffffffffu, v, offset);
        v = other > v ? other : v;
    }
    return v;
}

// Sum over the whole block, returned to every thread. blockDim.x must be a multiple of 32; every
// thread of the block must call it (it holds barriers).
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float partial[kWarpSize];
    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
    const int n_warps = blockDim.x / kWarpSize;
    v = warp_sum(v);
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < n_warps ? partial[lane] : 0.f;
    v = warp_sum(v);
    __syncthreads();  // the next call may overwrite `partial`
    return v;
}

// Maximum over the whole block, returned to every thread; same rules as block_sum.
__device__ __forceinline__ unsigned long long block_max(unsigned long long v) {
    __shared__ unsigned long long partial[kWarpSize];
    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
    const int n_warps = blockDim.x / kWarpSize;
    v = warp_max(v);
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < n_warps ? partial[lane] : 0ull;
    v = warp_max(v);
    __syncthreads();
    return v;
}

}  // namespace loom::kernels
