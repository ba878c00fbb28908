// Published hyperparameters of the model families loom targets, used to synthesize models at real shapes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace loom::gguf {

// Llama-3 ("llama3") RoPE frequency scaling.
struct Llama3RopeScaling {
    float factor = 1.0f;
    float low_freq_factor = 1.0f;
    float high_freq_factor = 1.0f;
    uint32_t original_context = 0;
};

struct ModelShape {
    std::string name;
    uint32_t vocab = 0;
    uint32_t embd = 0;
    uint32_t layers = 0;
    uint32_t heads = 0;
    uint32_t kv_heads = 0;
    uint32_t ffn = 0;
    uint32_t context = 0;
    float rope_base = 10000.0f;
    float rms_eps = 1e-5f;
    bool tied_embeddings = false;  // no output.weight: the output projection reuses token_embd.weight
    std::optional<Llama3RopeScaling> rope_scaling;

    uint32_t head_dim() const { return embd / heads; }
};

// Every known shape, in a fixed order.
const std::vector<ModelShape>& model_shapes();
// nullptr when `name` is unknown.
const ModelShape* find_model_shape(std::string_view name);
// "a, b, c": the known names, for error messages.
std::string model_shape_names();

// Llama-3 rule: the divisor of each of the head_dim/2 RoPE frequencies (1 = unscaled,
// factor = fully scaled, smooth blend in between); what GGUF stores as rope_freqs.weight.
std::vector<float> llama3_rope_freq_divisors(uint32_t head_dim, float rope_base, const Llama3RopeScaling& s);

}  // namespace loom::gguf
