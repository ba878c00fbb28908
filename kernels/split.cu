// The hi + lo split of f32 activations into two fp16 or bf16 values, for the two-product GEMM.
#include "kernels/split.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/launch.cuh"

namespace loom::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = 1 << 20;  // grid-stride loops cover the rest

struct F16 {
    __device__ static uint16_t round(float x) { return __half_as_ushort(__float2half_rn(x)); }
    __device__ static float widen(uint16_t h) { return __half2float(__ushort_as_half(h)); }
};

struct BF16 {
    __device__ static uint16_t round(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
    __device__ static float widen(uint16_t h) { return __bfloat162float(__ushort_as_bfloat16(h)); }
};

// One value's two halves, packed: hi in .x, lo in .y.
template <class Format>
__device__ __forceinline__ ushort2 split_one(float x) {
    const uint16_t hi = Format::round(x);
    const float hi_f = Format::widen(hi);
    // x - hi is exact in f32 (both within one binade of x); an overflowed hi keeps lo at 0.
    const uint16_t lo = isinf(hi_f) ? Format::round(0.f) : Format::round(__fsub_rn(x, hi_f));
    return ushort2{hi, lo};
}

// n floats -> n hi and n lo halves: four per step (16-byte loads, 8-byte stores), the last n % 4 one each.
template <class Format>
__global__ void __launch_bounds__(kThreads)
    split_kernel(const float* __restrict__ X, uint16_t* __restrict__ hi, uint16_t* __restrict__ lo, int64_t n) {
    wait_for_previous_kernel();
    const int64_t n4 = n / 4;
    const int64_t first = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
    const int64_t stride = int64_t{gridDim.x} * blockDim.x;
    for (int64_t i = first; i < n4; i += stride) {
        const float4 f = __ldg(reinterpret_cast<const float4*>(X) + i);
        const ushort2 a = split_one<Format>(f.x), b = split_one<Format>(f.y), c = split_one<Format>(f.z),
                      d = split_one<Format>(f.w);
        reinterpret_cast<ushort4*>(hi)[i] = ushort4{a.x, b.x, c.x, d.x};
        reinterpret_cast<ushort4*>(lo)[i] = ushort4{a.y, b.y, c.y, d.y};
    }
    if (first < n - 4 * n4) {
        const ushort2 t = split_one<Format>(X[4 * n4 + first]);
        hi[4 * n4 + first] = t.x;
        lo[4 * n4 + first] = t.y;
    }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

bool overlaps(const void* a, uint64_t a_bytes, const void* b, uint64_t b_bytes) {
    const auto a0 = reinterpret_cast<uintptr_t>(a), b0 = reinterpret_cast<uintptr_t>(b);
    return a_bytes > 0 && b_bytes > 0 && a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

}  // namespace

void split_to_half(HalfType type, const float* X, uint16_t* hi, uint16_t* lo, int64_t n, Stream stream) {
    const char* name = type == HalfType::f16 ? "split_to_f16" : "split_to_bf16";
    if (n < 0) throw std::invalid_argument(std::string(name) + ": n " + std::to_string(n) + " < 0");
    if (!aligned16(X) || !aligned16(hi) || !aligned16(lo))
        throw std::invalid_argument(std::string(name) + ": X, hi and lo must be 16-byte aligned");
    const uint64_t x_bytes = static_cast<uint64_t>(n) * sizeof(float), h_bytes = static_cast<uint64_t>(n) * 2;
    if (overlaps(X, x_bytes, hi, h_bytes) || overlaps(X, x_bytes, lo, h_bytes) || overlaps(hi, h_bytes, lo, h_bytes))
        throw std::invalid_argument(std::string(name) + ": X, hi and lo overlap");
    if (n == 0) return;
    const auto grid = static_cast<unsigned>(std::clamp<int64_t>((n / 4 + kThreads) / kThreads, 1, kMaxGrid));
    if (type == HalfType::f16)
        launch_kernel("split_kernel<F16>", split_kernel<F16>, {grid, kThreads, 0, stream}, X, hi, lo, n);
    else
        launch_kernel("split_kernel<BF16>", split_kernel<BF16>, {grid, kThreads, 0, stream}, X, hi, lo, n);
}

}  // namespace loom::kernels
