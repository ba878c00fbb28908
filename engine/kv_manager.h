// The KV cache's one owner on the host: sequence slots, their block tables, and the StepPlans that
// address them. The Engine schedules requests through it; tests and benches that drive raw batches
// (or a single sequence's forward pass) use it directly. One KvManager per backend at a time.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/backend.h"
#include "engine/kv_blocks.h"

namespace loom::engine {

// One sequence's part of a batched step, before the KvManager places it.
struct BatchEntry {
    int seq = -1;                              // from KvManager::open()
    std::span<const int32_t> tokens;           // run at positions length(seq) .. length(seq)+n-1
    const SamplingParams* sampling = nullptr;  // sample a token after the last one; null: prefill only
    std::span<const int32_t> history;          // prompt + tokens generated so far (the penalty window's source)
    uint64_t sample_step = 0;                  // the Philox counter: tokens the request has generated so far
    int top_logprobs = -1;                     // < 0: no log-probabilities; else 0 .. kMaxTopLogprobs alternatives
};

class KvManager {
public:
    // A block pool the size of backend.kv_capacity().
    explicit KvManager(Backend& backend);

    Backend& backend() { return backend_; }
    const KvBlockPool& blocks() const { return pool_; }

    int open();           // the lowest free slot; RequestError when every slot is taken
    void close(int seq);  // returns its KV blocks at once

    // Runs every entry's tokens in one backend step and samples where asked; outputs in entry order.
    // Throws before computing anything (RequestError, KvCacheFullError, SamplingParamError) when an
    // entry is invalid: open, distinct sequences; 1.. tokens each, inside the vocabulary and the
    // context; at most max_batch_tokens in all; enough free KV blocks; valid sampling parameters,
    // at most kMaxLogitBiasEntries biases and top_logprobs <= kMaxTopLogprobs. An observer
    // (--dump-layers) needs a batch of one entry and sees its layer outputs.
    std::vector<BatchOutput> step(std::span<const BatchEntry> batch, LayerObserver* observer = nullptr);

    // A single sequence of its own (it holds a slot while it holds positions): runs tokens at
    // positions n_past .. n_past+T-1. logits receives (n_vocab) floats for the last token, or
    // (T, n_vocab) when all_logits. RequestError when the tokens do not fit the context, an id is
    // out of range or the buffer is short; KvCacheFullError when the blocks run out.
    void forward(std::span<const int32_t> tokens, std::span<float> logits, bool all_logits,
                 LayerObserver* observer = nullptr);
    int n_past() const;  // positions forward() has filled so far
    void reset();        // ends forward()'s sequence

private:
    void check_batch(std::span<const BatchEntry> batch, const LayerObserver* observer) const;
    PlanEntry place(int seq, std::span<const int32_t> tokens);  // takes the blocks, advances the length

    Backend& backend_;
    KvBlockPool pool_;
    int forward_seq_ = -1;
};

}  // namespace loom::engine
