// SwiGLU's value, shared by the elementwise kernels and the matvec that forms its input on the fly,
// so both give the same bits.
#pragma once

namespace loom::kernels {

// silu(g) * u = g / (1 + e^-g) * u
__device__ __forceinline__ float swiglu_value(float g, float u) { return g / (1.0f + expf(-g)) * u; }

}  // namespace loom::kernels
