// Embedding lookup cases: the tests' shapes, kernel_bench's shapes, tables, ids, the reference.
#include "kernel_cases/embedding_cases.h"

#include <random>

namespace loom::kcases {

using gguf::TensorType;

std::string EmbeddingCase::name() const {
    return std::string(gguf::tensor_type_name(type)) + " " + std::to_string(n_vocab) + "x" + std::to_string(n_embd) +
           " T=" + std::to_string(n_tokens);
}

std::vector<EmbeddingCase> embedding_test_cases() {
    std::vector<EmbeddingCase> cases;
    uint32_t seed = 101;
    const auto add = [&](TensorType type, int64_t n_vocab, int n_embd, int n_tokens) {
        cases.push_back({type, n_vocab, n_embd, n_tokens, seed++});
    };
    // Real shapes: SmolLM2-135M (49152 x 576), Qwen2.5-0.5B width 896 (a shorter vocabulary).
    for (const auto type : {TensorType::Q8_0, TensorType::Q4_0, TensorType::F16}) add(type, 49152, 576, 64);
    for (const auto type : {TensorType::F32, TensorType::F16, TensorType::BF16, TensorType::Q4_0, TensorType::Q4_1,
                            TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0})
        add(type, 2003, 896, 17);
    for (const auto type : {TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K}) {
        add(type, 3001, 1536, 9);
        add(type, 777, 256, 1);
        add(type, 129, 768, 33);
    }
    // Odd widths: one block, three blocks, and plain types of any width.
    for (const auto type : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0}) {
        add(type, 5, 32, 3);
        add(type, 301, 96, 7);
    }
    // Plain types: widths off their 16-byte groups take the one-element-per-thread path.
    add(TensorType::F32, 11, 37, 5);
    add(TensorType::F32, 11, 36, 5);
    for (const auto type : {TensorType::F16, TensorType::BF16}) {
        add(type, 13, 1, 4);
        add(type, 1000, 577, 2);
        add(type, 1000, 8, 6);
    }
    return cases;
}

std::vector<EmbeddingCase> embedding_bench_cases(const BenchModel& m) {
    std::vector<EmbeddingCase> cases;
    for (const auto type : embedding_types(m))
        for (const int n_tokens : kBenchTokens)
            cases.push_back({type, m.shape.vocab, static_cast<int>(m.shape.embd), n_tokens, 11});
    return cases;
}

QuantMatrix embedding_table(const EmbeddingCase& c) { return random_matrix(c.type, c.n_vocab, c.n_embd, c.seed, 0.5f); }

std::vector<int32_t> embedding_ids(const EmbeddingCase& c) {
    std::mt19937 rng(c.seed ^ 0x5bd1e995u);
    std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(c.n_vocab - 1));
    std::vector<int32_t> ids(static_cast<size_t>(c.n_tokens));
    for (auto& id : ids) id = pick(rng);
    ids.front() = static_cast<int32_t>(c.n_vocab - 1);
    if (c.n_tokens > 1) ids[1] = 0;
    return ids;
}

std::vector<float> embedding_reference(const std::vector<float>& table, const std::vector<int32_t>& ids, int n_embd) {
    std::vector<float> ref;
    ref.reserve(ids.size() * static_cast<size_t>(n_embd));
    for (const int32_t id : ids) {
        const auto row = table.begin() + static_cast<std::ptrdiff_t>(id) * n_embd;
        ref.insert(ref.end(), row, row + n_embd);
    }
    return ref;
}

}  // namespace loom::kcases
