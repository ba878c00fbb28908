// The q8 family's x quantization of one unit by one warp (lane = element), shared by the quantize kernels
// of kernels/q8_kernels.cuh and by the kernels that quantize their own output for a q8 product (decode
// attention), so every producer writes the same bytes; and of four units by one warp, for a producer that
// has many units per warp (the fused decode residual).
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

// Four units unit0 .. unit0 + 3 of one vector by one warp, 8 lanes per unit: lane l holds elements 4 (l % 8)
// .. + 3 of unit unit0 + l / 8 (x4). Writes quantize_unit's bytes for each unit: the maximum and the integer
// sums are exact in any order, and d and each q are the same operations on the same values. Its reductions
// take 3 shuffle rounds for four units where four quantize_unit calls take 4 x 5 in turn.
__device__ __forceinline__ void quantize_units4(float4 x4, int lane, int unit0, uint8_t* xq_v, XMeta* xm_v) {
    const int unit = unit0 + lane / 8, j = lane % 8;  // elements 4 j .. 4 j + 3
    const float x[4] = {x4.x, x4.y, x4.z, x4.w};
    float amax = fmaxf(fmaxf(fabsf(x[0]), fabsf(x[1])), fmaxf(fabsf(x[2]), fabsf(x[3])));
    for (int off = 4; off > 0; off /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float d = __fdiv_rn(amax, 127.0f);
    uint32_t word = 0;
    int sum = 0;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        const int q = d > 0 ? max(-127, min(127, __float2int_rn(__fdiv_rn(x[e], d)))) : 0;
        word |= static_cast<uint32_t>(static_cast<uint8_t>(static_cast<int8_t>(q))) << (8 * e);
        sum += q;
    }
    *reinterpret_cast<uint32_t*>(xq_v + pos8(unit, 4 * j)) = word;  // elements 4 j .. + 3 are 4 bytes in a row
    for (int off = 2; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);  // j < 4: sa, else sb
    const int sb = __shfl_xor_sync(0xffffffffu, sum, 4);
    if (j == 0) xm_v[unit] = {d, static_cast<int16_t>(sum), static_cast<int16_t>(sb)};
}

}  // namespace loom::kernels::q8
