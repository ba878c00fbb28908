// What the CUDA backend can run, checked from the model file alone (no GPU needed), before upload.
#pragma once

#include "engine/model_config.h"
#include "gguf/reader.h"

namespace loom::engine {

// Throws ModelError naming the metadata key (or tensor) and value when the CUDA attention kernels
// cannot serve this model's heads: head_dim outside kernels::attention_head_dim_supported, or
// n_head not a multiple of n_head_kv. The CUDA backend calls it before allocating anything.
void check_cuda_attention_heads(const gguf::File& file, const ModelConfig& config);

}  // namespace loom::engine
