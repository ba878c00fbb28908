// The q8 family's x quantization of one unit by one warp (lane = element), shared by the quantize kernels
// of kernels/q8_kernels.cuh and by the kernels that quantize their own output for a q8 product (decode
// attention), so every producer writes the same bytes.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/q8_layout.h"

namespace loom::kernels::q8 {

// One unit of one vector: lane l holds element l (xv); the unit's int8 values go to xq_v in pos8 order and
// its XMeta to xm_v[unit].
__device__ __forceinline__ void quantize_unit(float xv, int lane, int unit, uint8_t* xq_v, XMeta* xm_v) {
    float amax = fabsf(xv);
    for (int off = 16; off > 0; off /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float d = __fdiv_rn(amax, 127.0f);
    const int q = d > 0 ? max(-127, min(127, __float2int_rn(__fdiv_rn(xv, d)))) : 0;
    xq_v[pos8(unit, lane)] = static_cast<uint8_t>(static_cast<int8_t>(q));
    int sa = lane < 16 ? q : 0, sb = lane < 16 ? 0 : q;
    for (int off = 16; off > 0; off /= 2) {
        sa += __shfl_xor_sync(0xffffffffu, sa, off);
        sb += __shfl_xor_sync(0xffffffffu, sb, off);
    }
    if (lane == 0) xm_v[unit] = {d, static_cast<int16_t>(sa), static_cast<int16_t>(sb)};
}

}  // namespace loom::kernels::q8
