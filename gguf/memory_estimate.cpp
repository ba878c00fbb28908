// Estimating a model's device memory from its GGUF header: tensor bytes, KV cache, step activations.
#include "gguf/memory_estimate.h"

#include <algorithm>
#include <string>

#include "gguf/errors.h"
#include "gguf/reader.h"

namespace loom::gguf {

namespace {

constexpr uint64_t kAlign = 256;
constexpr uint64_t kScratchBytes = uint64_t{64} << 20;  // GEMM (cuBLAS) and sampler scratch

uint64_t round_up(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// "{arch}.{key}" as a positive count; KeyError naming it otherwise.
uint64_t hyper(const File& f, const std::string& arch, const std::string& key) {
    const auto v = f.find_uint(arch + "." + key);
    if (!v || *v == 0)
        throw KeyError("cannot estimate memory: metadata key '" + arch + "." + key + "' is missing or 0");
    return *v;
}

}  // namespace

int model_context(const File& file) {
    const auto arch = file.find_string("general.architecture");
    if (!arch) return 0;
    return static_cast<int>(std::min<uint64_t>(file.find_uint(*arch + ".context_length").value_or(0), 1 << 24));
}

MemoryEstimate estimate_memory(const File& file, const MemoryDemand& demand) {
    const auto arch = file.find_string("general.architecture");
    if (!arch) throw KeyError("cannot estimate memory: metadata key 'general.architecture' is missing");
    const uint64_t layers = hyper(file, *arch, "block_count"), embd = hyper(file, *arch, "embedding_length"),
                   heads = hyper(file, *arch, "attention.head_count"), ff = hyper(file, *arch, "feed_forward_length");
    const uint64_t kv_heads = file.find_uint(*arch + ".attention.head_count_kv").value_or(heads);
    const uint64_t head_dim = file.find_uint(*arch + ".attention.key_length").value_or(embd / heads);
    uint64_t vocab = file.find_uint(*arch + ".vocab_size").value_or(0);
    if (vocab == 0)
        if (const Value* tokens = file.find("tokenizer.ggml.tokens"); tokens && tokens->type() == ValueType::ARRAY)
            vocab = tokens->as_array().size();
    const uint64_t context = demand.context > 0 ? static_cast<uint64_t>(demand.context)
                                                : static_cast<uint64_t>(std::max(model_context(file), 1));
    const uint64_t seqs = static_cast<uint64_t>(std::max(demand.sequences, 1));
    const uint64_t rows = static_cast<uint64_t>(std::max(demand.batch_tokens, 1));

    MemoryEstimate e;
    for (const TensorInfo& t : file.tensors()) e.weights += round_up(t.n_bytes);
    const uint64_t kv_value = demand.kv_value_bytes > 0    ? static_cast<uint64_t>(demand.kv_value_bytes)
                              : unquantized_matrices(file) ? sizeof(float)
                                                           : sizeof(uint16_t);
    e.kv_cache = round_up(layers * kv_heads * head_dim * 2 * context * seqs * kv_value);
    const uint64_t q = heads * head_dim, kv = kv_heads * head_dim;
    const uint64_t activations = rows * (4 * embd + q + (q + 2 * kv) + 3 * ff) + seqs * vocab;
    e.workspace = round_up(activations * sizeof(float)) + kScratchBytes;
    return e;
}

}  // namespace loom::gguf
