// The oracle models: tiny random-weight llama, qwen2 and qwen3 GGUFs (F32, large-variance weights)
// that tests/reference/make_oracle_expectations.py runs through Hugging Face transformers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace loom::test {

// 3 layers, 8 query / 2 KV heads, hidden 128, FFN 256, vocabulary 256; head_dim decoupled from the
// hidden size (attention.key_length / value_length). Weights and embeddings are uniform with
// standard deviation 0.25 (so activations grow large), norm weights 1 + that, qwen2's Q/K/V biases
// that; drawn from a counter-based generator, so every build writes the same bytes.
// f16: the matrices and the embedding stored as F16 (the same values rounded to nearest even),
// norms and biases F32, as converters write them.
struct OracleSpec {
    std::string arch;  // "llama", "qwen2", "qwen3"
    int head_dim = 64;
    bool f16 = false;
    std::string name() const { return arch + "-hd" + std::to_string(head_dim) + (f16 ? "-f16" : ""); }
};

inline constexpr int kOracleEmbd = 128, kOracleLayers = 3, kOracleHeads = 8, kOracleKvHeads = 2;
inline constexpr int kOracleFfn = 256, kOracleVocab = 256, kOracleContext = 256;

// llama, qwen2, qwen3, each with head_dim 64, 96, 128 and 256, in F32 and in F16.
std::vector<OracleSpec> oracle_specs();

// Writes the model of `spec` as a GGUF file (about 1.5-6 MB).
void write_oracle_model(const OracleSpec& spec, const std::filesystem::path& path);

}  // namespace loom::test
