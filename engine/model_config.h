// What a model is, read from GGUF metadata and checked against its tensors: architecture,
// dimensions, RoPE flavour, and the optional parts (biases, Q/K norms, tied embeddings).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/reader.h"

namespace loom::engine {

enum class Architecture { Llama, Qwen2, Qwen3 };

// Normal: rotate adjacent pairs (2i, 2i+1) — GGUF `llama` files, whose Q/K rows the converter
// permuted. NeoX: rotate (i, i + d/2) — qwen2/qwen3, stored in Hugging Face order.
enum class RopeMode { Normal, NeoX };

struct ModelConfig {
    Architecture arch = Architecture::Llama;
    std::string arch_name;  // as in general.architecture
    int n_vocab = 0;
    int n_embd = 0;
    int n_layer = 0;
    int n_head = 0;
    int n_head_kv = 0;
    int head_dim = 0;  // per head, for Q, K and V
    int n_ff = 0;
    int n_ctx_train = 0;
    float rms_eps = 1e-5f;
    RopeMode rope_mode = RopeMode::Normal;
    float rope_base = 10000.f;
    int rope_dim = 0;  // rotated dimensions per head (== head_dim for every supported model)
    // Per-frequency divisors (rope_dim / 2 of them): Llama-3 scaling or linear scaling; empty = none.
    std::vector<float> rope_freq_divisors;
    bool tied_embeddings = false;  // no output.weight: logits use token_embd.weight
    bool qkv_bias = false;         // qwen2
    bool qk_norm = false;          // qwen3: RMSNorm over each head of Q and K before RoPE

    int q_dim() const { return n_head * head_dim; }
    int kv_dim() const { return n_head_kv * head_dim; }

    // Reads the metadata and checks every tensor the forward pass will use (presence, shape,
    // type). Throws ModelError naming the key or tensor.
    static ModelConfig from_gguf(const gguf::File& file);
};

std::string to_string(Architecture arch);

// The name of layer `layer`'s tensor, e.g. tensor_name(3, "attn_q.weight") = "blk.3.attn_q.weight".
std::string layer_tensor(int layer, const char* suffix);

}  // namespace loom::engine
