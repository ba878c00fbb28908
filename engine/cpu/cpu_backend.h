// The CPU reference backend: weights dequantized to f32, a plain forward pass over a paged KV cache
// (the plan's block tables), prefill as matrix-matrix work, matrix products split across threads.
// Runs only when named.
#pragma once

#include <functional>
#include <memory>

#include "engine/backend.h"
#include "gguf/reader.h"

namespace loom::engine::cpu {

class CpuBackend : public Backend {
public:
    // n_ctx <= 0: the model's training context. n_threads <= 0: one per hardware thread.
    // q8_emulation, for tests only (BackendOptions::cpu_q8_emulation): the input rows of every product the
    // CUDA backend takes through its int8 q8 products (engine/q8_policy.h) are first replaced by their q8
    // round trip, so its results can be checked against this backend like with like.
    CpuBackend(const gguf::File& file, int n_ctx, int n_threads, const BatchLimits& limits = {},
               bool q8_emulation = false);
    ~CpuBackend() override;

    std::string name() const override { return "cpu"; }
    std::string device() const override;
    const ModelConfig& config() const override;
    int n_ctx() const override;
    int max_batch_tokens() const override;
    KvCapacity kv_capacity() const override;
    bool batch_invariant() const override { return true; }  // one order per row, whatever the step holds
    // Entries run one after another (each a full forward pass); the CPU Sampler picks the tokens.
    std::vector<BatchOutput> execute(const StepPlan& plan) override;
    MemoryReport memory() const override;

    // A test hook (chunk and batch invariance): while set, a sampling step computes the logits of every
    // position of every entry and hands them over, (T, n_vocab) floats for positions pos0 .. pos0+T-1
    // of sequence seq, before it samples from the last row.
    using StepLogitsSink = std::function<void(int seq, int pos0, int T, const float* logits)>;
    void set_step_logits_sink(StepLogitsSink sink);

private:
    struct State;
    std::unique_ptr<State> s_;
};

}  // namespace loom::engine::cpu
