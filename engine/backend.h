// The interface the engine drives: a backend executes the StepPlans the engine makes (token chunks
// at given positions, K/V stored where the plan's tables say) and returns sampled tokens or logits.
// Implemented by the CPU reference and CUDA backends.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/model_config.h"
#include "engine/sampler.h"
#include "engine/step_plan.h"

namespace loom::engine {

// Receives each layer's output hidden state during a forward pass (for --dump-layers).
class LayerObserver {
public:
    virtual ~LayerObserver() = default;
    // hidden (T, n_embd) for positions pos0 .. pos0+T-1 after layer `layer` (n_layer = final norm).
    virtual void on_layer_output(int layer, int pos0, int T, const float* hidden) = 0;
};

inline constexpr int kMaxTopLogprobs = 20;        // alternatives a sampled token may report
inline constexpr int kMaxLogitBiasEntries = 300;  // logit_bias entries per request (OpenAI's limit)

// How many sequences, KV positions and tokens per step a backend is built for.
struct BatchLimits {
    int max_seqs = 1;            // sequences a step may address at once
    int kv_tokens = 0;           // positions in the shared KV cache; 0: max_seqs * n_ctx
    int max_batch_tokens = 512;  // tokens one step carries in all (prefill chunks + decode tokens)
    // CUDA only (the CPU backend refuses it): bytes weights + KV cache + workspace may take; 0: no
    // limit. With kv_tokens 0 the KV cache gets what the budget leaves, up to max_seqs * n_ctx.
    uint64_t vram_budget = 0;
};

// What a step produced for one entry: a token when it sampled, or why sampling failed.
struct BatchOutput {
    bool sampled = false;
    SampledToken token{};
    std::string error;  // non-empty: this entry's sampling failed (NaN logits, every token banned)
};

// Memory a backend holds, by purpose ("weights", "kv_cache", "workspace").
struct MemoryUse {
    std::string purpose;
    uint64_t reserved = 0;  // bytes set aside
    uint64_t used = 0;      // bytes handed out of it
};
struct MemoryReport {
    std::string where;             // "device 0 (NVIDIA H100 80GB HBM3)" or "host RAM"
    bool device_resident = false;  // every arena verified at load to be device memory (cudaPointerGetAttributes)
    std::vector<MemoryUse> uses;
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual std::string name() const = 0;    // "cpu" or "cuda"
    virtual std::string device() const = 0;  // what ran it, e.g. "NVIDIA H100 80GB HBM3" or "CPU, 2 threads"
    virtual const ModelConfig& config() const = 0;
    virtual int n_ctx() const = 0;             // positions one sequence may hold
    virtual int max_batch_tokens() const = 0;  // tokens one sampling step may carry in total
    virtual KvCapacity kv_capacity() const = 0;
    // Whether a position's logits are the same bits however it was batched or chunked (the cpu backend
    // always; cuda when built with BackendOptions::batch_invariant).
    virtual bool batch_invariant() const = 0;

    // Runs every entry's tokens, stores their K/V where the entry's table says, and samples where
    // asked (outputs in entry order), or fills plan.logits. Throws RequestError before computing
    // anything when the plan addresses what the backend does not have (see check_plan).
    virtual std::vector<BatchOutput> execute(const StepPlan& plan) = 0;

    // What the backend holds now. Safe to call from any thread while execute() runs: what it reads is
    // fixed at load or counted atomically (the CPU backend's KV blocks take their RAM when first written).
    virtual MemoryReport memory() const = 0;
};

// validate(params) and the per-request limits (kMaxLogitBiasEntries, kMaxTopLogprobs): SamplingParamError.
void check_sampling(const SamplingParams& params, int top_logprobs, int n_vocab);

// RequestError naming the first id outside 0 .. n_vocab-1.
void check_token_ids(std::span<const int32_t> tokens, int n_vocab);

// The checks every Backend::execute makes: entries present, rows inside max_seqs, tables covering
// the positions with blocks the backend has, a logits buffer large enough, positions inside n_ctx,
// at most max_batch_tokens tokens in a sampling step, an observer only on a plan of one entry.
void check_plan(const StepPlan& plan, const KvCapacity& kv, int n_vocab, int n_ctx, int max_batch_tokens);

}  // namespace loom::engine
