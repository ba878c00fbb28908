// check_cuda_attention_heads: the CUDA attention's head-shape rule applied to a model's metadata.
#include "engine/cuda_support.h"

#include <string>

#include "engine/errors.h"
#include "kernels/attention_shapes.h"

namespace loom::engine {

void check_cuda_attention_heads(const gguf::File& file, const ModelConfig& c) {
    const std::string p = c.arch_name + ".";
    if (c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0)
        throw ModelError("cuda backend: " + p + "attention.head_count " + std::to_string(c.n_head) +
                         " is not a multiple of " + p + "attention.head_count_kv " + std::to_string(c.n_head_kv));
    if (kernels::attention_head_dim_supported(c.head_dim)) return;
    // Name where the head size came from: the explicit key, or the embedding width over the heads.
    const std::string source = file.find(p + "attention.key_length")
                                   ? p + "attention.key_length"
                                   : p + "embedding_length " + std::to_string(c.n_embd) + " / " + p +
                                         "attention.head_count " + std::to_string(c.n_head);
    throw ModelError("cuda backend: head_dim " + std::to_string(c.head_dim) + " (" + source + ", tensor " +
                     layer_tensor(0, "attn_k.weight") + " has " + std::to_string(c.n_head_kv) + " heads of " +
                     std::to_string(c.head_dim) + ") is not supported by the CUDA attention kernels: " +
                     kernels::kAttentionHeadDimRule + "; run with --backend cpu");
}

}  // namespace loom::engine
