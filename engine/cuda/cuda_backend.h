// The CUDA backend: weights kept in their GGUF formats in VRAM, a paged fp16/f32 KV cache addressed by
// the engine's block tables, batched steps mixing prefill chunks and decode tokens, GPU sampling, and decode
// steps replayed from CUDA graphs. Plain C++: no CUDA headers leak to callers.
#pragma once

#include <memory>

#include "engine/backend.h"
#include "engine/load_step.h"
#include "gguf/reader.h"

namespace loom::engine::cuda {

class CudaBackend : public Backend {
public:
    // Uploads every weight of `file` to `device` and reserves the KV cache and all scratch there.
    // n_ctx <= 0: the model's training context. cuda_graphs: replay decode-only steps from CUDA
    // graphs (one per batch size, captured on first use). limits.vram_budget > 0: the arenas stay
    // inside it (the KV cache sized from it unless limits.kv_tokens is set), else MemoryBudgetError
    // before any allocation. Throws kernels::VramError (device too old, too little VRAM),
    // kernels::CudaError, or ModelError for a weight type no kernel handles or heads the attention
    // kernels do not (checked before anything is allocated). kv_f32: the KV cache stores f32 (twice
    // the memory) instead of fp16. batch_invariant: every token a decode row, prefill ones included
    // (BackendOptions::batch_invariant). on_load_step hears the upload's progress and, later, each
    // graph capture.
    CudaBackend(const gguf::File& file, int n_ctx, int device = 0, const BatchLimits& limits = {},
                bool cuda_graphs = true, bool kv_f32 = false, bool batch_invariant = false,
                LoadCallback on_load_step = {});
    ~CudaBackend() override;

    std::string name() const override { return "cuda"; }
    std::string device() const override;
    const ModelConfig& config() const override;
    int n_ctx() const override;
    int max_batch_tokens() const override;
    KvCapacity kv_capacity() const override;
    bool batch_invariant() const override;
    // A sampling plan: one pass over every entry's tokens (decode tokens first, then prefill
    // chunks), sampling on the GPU, one device-to-host copy of the sampled tokens, one stream
    // synchronisation. A logits plan: passes of up to max_batch_tokens tokens, the logits back in
    // one device-to-host copy per pass (more when all_logits needs more rows than the logits buffer
    // holds); an observer adds a synchronous copy per layer.
    std::vector<BatchOutput> execute(const StepPlan& plan) override;
    MemoryReport memory() const override;

    // Decode-step graphs captured so far (for tests and benchmarks).
    int cuda_graphs_captured() const;

    // The weight upload at load: bytes copied file -> pinned staging -> VRAM, and the seconds it took.
    uint64_t upload_bytes() const;
    double upload_seconds() const;

private:
    struct State;
    std::unique_ptr<State> s_;
};

}  // namespace loom::engine::cuda
