// Where a position's K or V row lives in the paged cache (kernels/kv_cache.h's layout), for device code.
#pragma once

#include <cstdint>

#include "kernels/kv_cache.h"

namespace loom::kernels {

// Element offset of (block, kv head, position's slot) row in a K or V region:
// (n_blocks, n_head_kv, kKvBlockTokens, head_dim).
__device__ __forceinline__ int64_t cache_row(int block, int n_head_kv, int kvh, int pos, int head_dim) {
    return ((static_cast<int64_t>(block) * n_head_kv + kvh) * kKvBlockTokens + pos % kKvBlockTokens) * head_dim;
}

}  // namespace loom::kernels
