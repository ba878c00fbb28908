// The interface the engine drives: batched steps over many sequences sharing a paged KV cache, and
// a single-sequence forward pass with logits out. Implemented by the CPU reference and CUDA backends.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/kv_blocks.h"
#include "engine/model_config.h"
#include "engine/sampler.h"

namespace loom::engine {

// Receives each layer's output hidden state during a forward pass (for --dump-layers).
class LayerObserver {
public:
    virtual ~LayerObserver() = default;
    // hidden (T, n_embd) for positions pos0 .. pos0+T-1 after layer `layer` (n_layer = final norm).
    virtual void on_layer_output(int layer, int pos0, int T, const float* hidden) = 0;
};

inline constexpr int kMaxTopLogprobs = 20;         // alternatives a sampled token may report
inline constexpr int kMaxLogitBiasEntries = 300;  // logit_bias entries per request (OpenAI's limit)

// How many sequences, KV positions and tokens per step a backend is built for.
struct BatchLimits {
    int max_seqs = 1;           // sequences open at once (forward() uses one of them)
    int kv_tokens = 0;          // positions in the shared KV cache; 0: max_seqs * n_ctx
    int max_batch_tokens = 512;  // tokens one step carries in all (prefill chunks + decode tokens)
    // CUDA only (the CPU backend refuses it): bytes weights + KV cache + workspace may take; 0: no
    // limit. With kv_tokens 0 the KV cache gets what the budget leaves, up to max_seqs * n_ctx.
    uint64_t vram_budget = 0;
};

// One sequence's part of a batched step.
struct BatchEntry {
    int seq = -1;                              // from Backend::open_sequence()
    std::span<const int32_t> tokens;           // run at positions length(seq) .. length(seq)+n-1
    const SamplingParams* sampling = nullptr;  // sample a token after the last one; null: prefill only
    std::span<const int32_t> history;          // prompt + tokens generated so far (the penalty window's source)
    uint64_t sample_step = 0;                  // the Philox counter: tokens the request has generated so far
    int top_logprobs = -1;                     // < 0: no log-probabilities; else 0 .. kMaxTopLogprobs alternatives
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
    std::string where;            // "device 0 (NVIDIA H100 80GB HBM3)" or "host RAM"
    bool device_resident = false;  // every arena verified to be device memory (cudaPointerGetAttributes)
    std::vector<MemoryUse> uses;
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual std::string name() const = 0;    // "cpu" or "cuda"
    virtual std::string device() const = 0;  // what ran it, e.g. "NVIDIA H100 80GB HBM3" or "CPU, 2 threads"
    virtual const ModelConfig& config() const = 0;
    virtual int n_ctx() const = 0;   // positions one sequence may hold
    virtual int n_past() const = 0;  // positions forward() has filled so far
    virtual void reset() = 0;        // empties forward()'s sequence

    // Runs tokens at positions n_past .. n_past+T-1 and appends their K/V. logits receives
    // (n_vocab) floats for the last token, or (T, n_vocab) when all_logits. Throws RequestError
    // when the tokens do not fit the context or an id is out of range.
    virtual void forward(std::span<const int32_t> tokens, std::span<float> logits, bool all_logits,
                         LayerObserver* observer = nullptr) = 0;

    // Batched steps. Sequences are slots of the paged KV cache (kv_blocks() has the accounting);
    // forward() keeps its own sequence there too while it holds positions.
    virtual int max_batch_tokens() const = 0;   // tokens one step may carry in total
    virtual const KvBlockPool& kv_blocks() const = 0;
    virtual int open_sequence() = 0;           // RequestError when every slot is taken
    virtual void close_sequence(int seq) = 0;  // returns its KV blocks at once
    // Runs every entry's tokens in one pass and samples where asked; outputs in entry order.
    // Throws before computing anything (RequestError, KvCacheFullError, SamplingParamError) when an
    // entry is invalid: see check_batch_inputs. An observer (--dump-layers) needs a batch of one
    // entry (RequestError otherwise) and sees its layer outputs.
    virtual std::vector<BatchOutput> step(std::span<const BatchEntry> batch, LayerObserver* observer = nullptr) = 0;

    virtual MemoryReport memory() const = 0;
};

// The checks every Backend::forward makes before computing: tokens present, room in the context,
// ids inside the vocabulary, a logits buffer large enough. Throws RequestError naming what is wrong.
void check_forward_inputs(const ModelConfig& config, int n_ctx, int n_past, std::span<const int32_t> tokens,
                          size_t logits_size, bool all_logits);

// The checks every Backend::step makes: open, distinct sequences; 1.. tokens each, inside the
// vocabulary and the context; at most max_batch_tokens in all; enough free KV blocks for all
// (KvCacheFullError); valid sampling parameters, at most kMaxLogitBiasEntries biases and
// top_logprobs <= kMaxTopLogprobs.
void check_batch_inputs(const ModelConfig& config, int n_ctx, int max_batch_tokens, const KvBlockPool& kv,
                        std::span<const BatchEntry> batch, const LayerObserver* observer);

}  // namespace loom::engine
