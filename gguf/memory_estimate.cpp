// Estimating a model's device memory from its GGUF header: tensor bytes, KV cache, step activations.
#include "gguf/memory_estimate.h"

#include <algorithm>
#include <string>

#include "gguf/errors.h"
#include "gguf/reader.h"

namespace loom::gguf {

namespace {

constexpr uint64_t kAlign = 256;
// cuBLAS's own workspace (32 MiB) and the sampler's and attention's scratch.
constexpr uint64_t kScratchBytes = uint64_t{64} << 20;

uint64_t round_up(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// The CUDA backend's prefill GEMM scratch, bounded above: a 16-bit copy of its largest matrix (quantized
// weights are dequantized into it; gate and up are one fused matrix, as are Q, K and V) and the two
// 16-bit halves of `rows` activation rows of the widest input. For an 8B model this is ~264 MiB at
// 512 rows, so a fixed allowance would place models that then do not fit.
uint64_t gemm_scratch(uint64_t embd, uint64_t q, uint64_t kv, uint64_t ff, uint64_t rows) {
    const uint64_t largest = std::max({(q + 2 * kv) * embd, embd * q, 2 * ff * embd, embd * ff});
    const uint64_t widest = std::max({embd, q, ff});
    return round_up(largest * 2) + 2 * round_up(rows * widest * 2);
}

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
    // A matrix the CUDA backend repacks for the q8 products keeps its bytes in four streams, each
    // starting 256-byte aligned: at most kAlign * 4 more than the file's.
    for (const TensorInfo& t : file.tensors()) e.weights += round_up(t.n_bytes) + (t.ne.size() >= 2 ? 4 * kAlign : 0);
    const uint64_t kv_value = demand.kv_value_bytes > 0    ? static_cast<uint64_t>(demand.kv_value_bytes)
                              : unquantized_matrices(file) ? sizeof(float)
                                                           : sizeof(uint16_t);
    e.kv_cache = round_up(layers * kv_heads * head_dim * 2 * context * seqs * kv_value);
    const uint64_t q = heads * head_dim, kv = kv_heads * head_dim;
    const uint64_t activations = rows * (4 * embd + q + (q + 2 * kv) + 3 * ff) + seqs * vocab;
    // The q8 products' quantized rows: one int8 and a 8-byte scale per 32 elements of the widest input.
    const uint64_t q8_rows = round_up(rows * std::max({embd, q, ff})) + round_up(rows * std::max({embd, q, ff}) / 4);
    e.workspace = round_up(activations * sizeof(float)) + gemm_scratch(embd, q, kv, ff, rows) + q8_rows + kScratchBytes;
    return e;
}

}  // namespace loom::gguf
