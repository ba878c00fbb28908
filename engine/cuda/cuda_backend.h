// The CUDA backend: one sequence on one GPU, weights kept in their GGUF formats in VRAM, a paged
// fp16 KV cache, the forward pass of the CPU reference built from loom_kernels launches.
// Plain C++: no CUDA headers leak to callers.
#pragma once

#include <memory>

#include "engine/backend.h"
#include "gguf/reader.h"

namespace loom::engine::cuda {

class CudaBackend : public Backend {
public:
    // Uploads every weight of `file` to `device` and reserves the KV cache and all scratch there.
    // n_ctx <= 0: the model's training context. Throws kernels::VramError (device too old, too
    // little VRAM), kernels::CudaError, or ModelError for a weight type no kernel handles.
    CudaBackend(const gguf::File& file, int n_ctx, int device = 0);
    ~CudaBackend() override;

    std::string name() const override { return "cuda"; }
    std::string device() const override;
    const ModelConfig& config() const override;
    int n_ctx() const override;
    int n_past() const override;
    void reset() override;
    // Prefill runs in chunks of up to 8 tokens (matvec's multi-vector path); a single token takes
    // the decode attention path. Allocates nothing. Logits come back in one device-to-host copy
    // (one per 8-token chunk when all_logits); an observer adds a synchronous copy per layer.
    void forward(std::span<const int32_t> tokens, std::span<float> logits, bool all_logits,
                 LayerObserver* observer = nullptr) override;

private:
    struct State;
    std::unique_ptr<State> s_;
};

}  // namespace loom::engine::cuda
