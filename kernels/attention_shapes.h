// The head shapes the CUDA attention kernels handle, as a plain C++ check usable without a GPU.
#pragma once

namespace loom::kernels {

// Largest head size the attention kernels instantiate.
inline constexpr int kMaxAttentionHeadDim = 256;

// head_dim 8 (stories260K) or any multiple of 16 up to kMaxAttentionHeadDim; any GQA/MQA ratio
// (n_head a multiple of n_head_kv) is handled.
constexpr bool attention_head_dim_supported(int head_dim) {
    return head_dim == 8 || (head_dim > 0 && head_dim % 16 == 0 && head_dim <= kMaxAttentionHeadDim);
}

inline constexpr const char* kAttentionHeadDimRule = "head_dim must be 8 or a multiple of 16 up to 256";

}  // namespace loom::kernels
