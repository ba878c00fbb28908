// The device memory a model will need, estimated from a GGUF's header alone (tensor sizes and
// hyperparameters) before any worker loads it: what the orchestrator places models by.
#pragma once

#include <cstdint>

namespace loom::gguf {

class File;

// Bytes by purpose, as a worker's /health reports them (vram_bytes).
struct MemoryEstimate {
    uint64_t weights = 0;
    uint64_t kv_cache = 0;
    uint64_t workspace = 0;
    uint64_t total() const { return weights + kv_cache + workspace; }
};

// What the worker will serve: `context` positions per sequence (0: the model's context_length)
// for `sequences` sequences decoded together, `batch_tokens` tokens per step at most, its KV cache
// storing `kv_value_bytes` per value (4: f32, 2: fp16; 0: the CUDA backend's default for the model,
// f32 when unquantized_matrices(file), else fp16 — as engine::default_kv_cache_type decides).
struct MemoryDemand {
    int context = 0;
    int sequences = 1;
    int batch_tokens = 512;
    int kv_value_bytes = 0;
};

// weights: every tensor's bytes (each rounded up to 256, as device arenas align them);
// kv_cache: layers x kv_heads x head_dim x 2 (K and V) x context x sequences x kv_value_bytes;
// workspace: the step's float activations (hidden, attention, feed-forward and logits rows), the
// prefill GEMM's scratch (a 16-bit copy of the largest matrix and two 16-bit copies of its input
// rows) and a fixed 64 MiB for cuBLAS, sampler and attention scratch. An estimate: the worker's real
// use is reported beside it. FormatError (a missing or zero hyperparameter named) from the header.
MemoryEstimate estimate_memory(const File& file, const MemoryDemand& demand);

// The context_length the file states (0 when it states none).
int model_context(const File& file);

}  // namespace loom::gguf
