// RoPE's device parts, shared by the rope kernel and the fused rope + KV-cache write: the angle
// table of one token and the rotation of its heads.
#pragma once

#include <cstdint>

namespace loom::kernels {

// cos_sin[i] (i < head_dim / 2) for one position, by the whole block; the caller syncs after.
// Double angle and sincos: at positions in the thousands a float angle is off by ~1e-3 rad.
__device__ __forceinline__ void rope_angles(float2* cos_sin, int half, int position,
                                            const float* __restrict__ inv_freq) {
    const double pos = position;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        double s, c;
        sincos(pos * static_cast<double>(inv_freq[i]), &s, &c);
        cos_sin[i] = make_float2(static_cast<float>(c), static_cast<float>(s));
    }
}

// Rotates pair i (< head_dim / 2) of one head (row v) by cos_sin[i].
__device__ __forceinline__ void rope_rotate_pair(float* v, int i, int half, const float2* cos_sin, bool neox) {
    const int a = neox ? i : 2 * i;
    const int b = neox ? i + half : 2 * i + 1;
    const float x0 = v[a], x1 = v[b];
    const float2 cs = cos_sin[i];
    v[a] = x0 * cs.x - x1 * cs.y;
    v[b] = x0 * cs.y + x1 * cs.x;
}

// Rotates every pair of one token's n_head query heads (row q) and n_head_kv key heads (row k),
// the block's threads striding over the pairs.
__device__ __forceinline__ void rope_rotate_token(float* q, float* k, int n_head, int n_head_kv, int head_dim,
                                                  const float2* cos_sin, bool neox) {
    const int half = head_dim / 2;
    const int n_pairs = (n_head + n_head_kv) * half;
    for (int p = threadIdx.x; p < n_pairs; p += blockDim.x) {
        const int head = p / half;
        float* v = head < n_head ? q + head * head_dim : k + (head - n_head) * head_dim;
        rope_rotate_pair(v, p % half, half, cos_sin, neox);
    }
}

}  // namespace loom::kernels
