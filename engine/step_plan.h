// What one step asks of a backend: the sequences that run, their token chunks and positions, and
// the KV blocks each one's positions live in. The engine decides all of it; a backend executes it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/sampler.h"

namespace loom::engine {

class LayerObserver;

// The KV memory a backend set aside, in the units the engine hands out: `blocks` blocks of
// `block_tokens` positions, addressed by up to `max_seqs` block tables (rows 0 .. max_seqs-1);
// `type` is what K and V are stored as ("f16", "f32"), which /health reports.
struct KvCapacity {
    int blocks = 0;
    int block_tokens = 0;
    int max_seqs = 0;
    const char* type = "f32";
};

// One sequence's part of a step.
struct PlanEntry {
    int seq = -1;  // its block-table row, 0 .. max_seqs-1
    int pos0 = 0;  // tokens run at positions pos0 .. pos0+n-1
    std::span<const int32_t> tokens;
    // The sequence's block table after this step: block i holds positions i*block_tokens ..
    // (i+1)*block_tokens-1; it covers pos0+n positions. Entries from pos0/block_tokens (rounded up)
    // on are the blocks this step added.
    std::span<const int32_t> blocks;
    const SamplingParams* sampling = nullptr;  // sample a token after the last one; null: no token
    std::span<const int32_t> history;          // prompt + tokens generated so far (the penalty window's source)
    uint64_t sample_step = 0;                  // the Philox counter: tokens the request has generated so far
    int top_logprobs = -1;                     // < 0: no log-probabilities; else 0 .. kMaxTopLogprobs alternatives
};

struct StepPlan {
    std::vector<PlanEntry> entries;
    LayerObserver* observer = nullptr;  // sees the layer outputs; the plan then has one entry
    // Non-empty: a logits pass of one entry that samples nothing. Receives (n_vocab) floats for the
    // last token, or (n, n_vocab) when all_logits; the entry may then exceed max_batch_tokens.
    std::span<float> logits;
    bool all_logits = false;
};

}  // namespace loom::engine
