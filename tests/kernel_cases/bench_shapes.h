// The real-model shapes kernel_bench times (and the kernel tests check where cheap): models, their
// weight matrices under every `loom synth` type, their embedding tables.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "gguf/model_shapes.h"
#include "gguf/synth.h"
#include "gguf/tensor_type.h"

namespace loom::kcases {

// The token counts per-token kernels are timed at: a decode token and a 512-token prompt.
inline constexpr int kBenchTokens[] = {1, 512};

struct BenchModel {
    std::string name;
    gguf::SynthArch arch;
    gguf::ModelShape shape;
    int head_dim() const { return static_cast<int>(shape.head_dim()); }
    int q_dim() const { return static_cast<int>(shape.heads) * head_dim(); }
    int kv_dim() const { return static_cast<int>(shape.kv_heads) * head_dim(); }
};

// SmolLM2-135M, Qwen2.5-0.5B, Llama-3-8B.
std::vector<BenchModel> bench_models();
// One of bench_models() by name; throws std::invalid_argument for another.
BenchModel bench_model(const std::string& name);

// Attention shapes of other head sizes (only heads, KV heads and head_dim = embd / heads matter):
// Phi-2's 80, Phi-3's 96, Gemma 2's 256.
std::vector<BenchModel> attention_models();

// A weight matrix of one layer (or the output projection): W (n_out, n_in) in `type`.
struct BenchMatrix {
    std::string role;  // q, k, v, o, gate, up, down, output
    gguf::TensorType type;
    int n_in, n_out;
    bool operator<(const BenchMatrix& o) const;
};

// The matrices `loom synth` makes for the model under every synth type: q4_k_m contributes its
// Q4_K layers and its Q6_K ("more bits") layers, each after fit_row; duplicates collapse. In role order.
std::vector<BenchMatrix> synth_matrices(const BenchModel& m);

// token_embd's type under every synth type.
std::set<gguf::TensorType> embedding_types(const BenchModel& m);

}  // namespace loom::kcases
