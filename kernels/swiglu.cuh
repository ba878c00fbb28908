// SwiGLU's float expression on the device, the one every kernel applying it inlines (elementwise.cu's
// swiglu kernels, matvec.cu's normed_swiglu epilogue, q8's quantize_kernel), so their values cannot drift.
#pragma once

#include <cstdint>

#include "kernels/matvec.h"

namespace loom::kernels {

// silu(g) * u = g / (1 + e^-g) * u, each op rounded by itself: the _rn intrinsics keep the compiler from
// contracting expf's last product with the 1 + into an fma in one kernel and not in another. expf is
// CUDA's (within 2 ulp of e^x); host references use std::exp, so they may differ by an ulp or two.
__device__ __forceinline__ float swiglu_value(float g, float u) {
    return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
}

// Element col of one row of the pair layout (kernels/matvec.h: kSwigluPairRows gate values, as many up
// values, in turn): silu(gate col) * up col.
__device__ __forceinline__ float swiglu_pair_value(const float* row, int64_t col) {
    const int64_t g_at = col / kSwigluPairRows * 2 * kSwigluPairRows + col % kSwigluPairRows;
    return swiglu_value(row[g_at], row[g_at + kSwigluPairRows]);
}

}  // namespace loom::kernels
