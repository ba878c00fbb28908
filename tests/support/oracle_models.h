// The oracle models: tiny random-weight llama, qwen2 and qwen3 GGUFs (F32, large-variance weights)
// that tests/reference/make_oracle_expectations.py runs through Hugging Face transformers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "gguf/tensor_type.h"

namespace loom::test {

// 3 layers, 8 query / 2 KV heads, hidden 128, FFN 256, vocabulary 256; head_dim decoupled from the
// hidden size (attention.key_length / value_length). Weights and embeddings are uniform with
// standard deviation 0.25 (so activations grow large), norm weights 1 + that, qwen2's Q/K/V biases
// that; drawn from a counter-based generator, so every build writes the same bytes.
// matrix_type: how the matrices and the embedding are stored (the same values converted: F16
// rounded to nearest even, quantized types through gguf::quantize, a matrix whose rows do not fit
// the type's block taking gguf::fit_row's fallback); norms and biases stay F32, as converters write them.
struct OracleSpec {
    std::string arch;  // "llama", "qwen2", "qwen3"
    int head_dim = 64;
    gguf::TensorType matrix_type = gguf::TensorType::F32;
    std::string name() const;  // e.g. "qwen2-hd96", "qwen2-hd96-f16", "qwen2-hd96-q8_0"
};

inline constexpr int kOracleEmbd = 128, kOracleLayers = 3, kOracleHeads = 8, kOracleKvHeads = 2;
inline constexpr int kOracleFfn = 256, kOracleVocab = 256, kOracleContext = 256;

// llama, qwen2, qwen3, each with head_dim 64, 96, 128 and 256, in F32 and in F16: the models
// tests/reference/oracle_expected.json has transformers' results for.
std::vector<OracleSpec> oracle_specs();

// The same 12 models with Q8_0 and with Q4_K matrices (Q5_0 where a row of 128 does not fit Q4_K),
// for comparing the CUDA backend with the CPU backend on quantized weights.
std::vector<OracleSpec> oracle_quantized_specs();

// Writes the model of `spec` as a GGUF file (about 1.5-6 MB).
void write_oracle_model(const OracleSpec& spec, const std::filesystem::path& path);

}  // namespace loom::test
