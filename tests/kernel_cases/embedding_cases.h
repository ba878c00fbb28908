// Embedding lookup cases: table types and shapes, seeded tables and token ids, the CPU dequantizer's
// rows as the (bit-exact) reference, and the bytes a launch must move.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/tensor_type.h"
#include "kernel_cases/bench_shapes.h"
#include "kernel_cases/inputs.h"

namespace loom::kcases {

// A table (n_vocab, n_embd) of `type` and n_tokens ids to look up.
struct EmbeddingCase {
    gguf::TensorType type;
    int64_t n_vocab;
    int n_embd, n_tokens;
    uint32_t seed;
    std::string name() const;  // "Q8_0 49152x576 T=64"
};
// Real shapes (SmolLM2, Qwen2.5's width), every table type, one and three blocks, plain types off
// their 16-byte groups.
std::vector<EmbeddingCase> embedding_test_cases();
// kernel_bench's: the model's table under every synth type's token_embd type, at kBenchTokens.
std::vector<EmbeddingCase> embedding_bench_cases(const BenchModel& m);

// N(0, 0.5) weights (seed) quantized to the case's type, and their dequantized values.
QuantMatrix embedding_table(const EmbeddingCase& c);
// n_tokens uniform ids (seed ^ 0x5bd1e995), the first n_vocab - 1 and the second (if any) 0.
std::vector<int32_t> embedding_ids(const EmbeddingCase& c);
// The table's dequantized rows of `ids`, (ids.size(), n_embd).
std::vector<float> embedding_reference(const std::vector<float>& table, const std::vector<int32_t>& ids, int n_embd);

// Per token: its id read, one table row read, the f32 row written.
inline double embedding_bytes(gguf::TensorType type, int n_tokens, int n_embd) {
    return static_cast<double>(n_tokens) *
           (static_cast<double>(gguf::tensor_bytes(type, static_cast<uint64_t>(n_embd))) + 4.0 * n_embd + 4.0);
}

}  // namespace loom::kcases
