// Input checks shared by every backend's forward pass.
#include "engine/backend.h"

#include <set>

#include "engine/errors.h"

namespace loom::engine {

void check_forward_inputs(const ModelConfig& c, int n_ctx, int n_past, std::span<const int32_t> tokens,
                          size_t logits_size, bool all_logits) {
    const int T = static_cast<int>(tokens.size());
    if (T == 0) throw RequestError("forward: no tokens");
    if (n_past + T > n_ctx)
        throw RequestError("context full: " + std::to_string(n_past) + " positions used + " + std::to_string(T) +
                           " new tokens > context " + std::to_string(n_ctx));
    for (int32_t id : tokens)
        if (id < 0 || id >= c.n_vocab)
            throw RequestError("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                               std::to_string(c.n_vocab - 1) + ")");
    const size_t need = static_cast<size_t>(all_logits ? T : 1) * c.n_vocab;
    if (logits_size < need)
        throw RequestError("forward: logits buffer holds " + std::to_string(logits_size) + " floats, needs " +
                           std::to_string(need));
}

void check_batch_inputs(const ModelConfig& c, int n_ctx, int max_batch_tokens, const KvBlockPool& kv,
                        std::span<const BatchEntry> batch, const LayerObserver* observer) {
    if (batch.empty()) throw RequestError("step: empty batch");
    if (observer && batch.size() != 1)
        throw RequestError("step: a layer observer needs a batch of one sequence, not " + std::to_string(batch.size()));
    std::set<int> seen;
    int64_t total = 0, blocks = 0;
    for (const BatchEntry& e : batch) {
        const std::string who = "step: sequence " + std::to_string(e.seq);
        if (!kv.is_open(e.seq)) throw RequestError(who + " is not open");
        if (!seen.insert(e.seq).second) throw RequestError(who + " appears twice in one batch");
        if (e.tokens.empty()) throw RequestError(who + " has no tokens");
        const int n = static_cast<int>(e.tokens.size());
        if (kv.length(e.seq) + n > n_ctx)
            throw RequestError("context full: sequence " + std::to_string(e.seq) + " holds " +
                               std::to_string(kv.length(e.seq)) + " positions + " + std::to_string(n) +
                               " new tokens > context " + std::to_string(n_ctx));
        for (int32_t id : e.tokens)
            if (id < 0 || id >= c.n_vocab)
                throw RequestError("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                                   std::to_string(c.n_vocab - 1) + ")");
        if (e.sampling) {
            validate(*e.sampling, c.n_vocab);
            if (e.sampling->logit_bias.size() > static_cast<size_t>(kMaxLogitBiasEntries))
                throw SamplingParamError("logit_bias", std::to_string(e.sampling->logit_bias.size()) +
                                                           " entries are more than the maximum " +
                                                           std::to_string(kMaxLogitBiasEntries));
            if (e.top_logprobs > kMaxTopLogprobs)
                throw SamplingParamError("top_logprobs", std::to_string(e.top_logprobs) + " is above the maximum " +
                                                             std::to_string(kMaxTopLogprobs));
        }
        total += n;
        blocks += kv.blocks_needed(e.seq, n);
    }
    if (total > max_batch_tokens)
        throw RequestError("step: " + std::to_string(total) + " tokens exceed the batch limit of " +
                           std::to_string(max_batch_tokens));
    if (blocks > kv.free_blocks())
        throw KvCacheFullError("kv cache full: the step needs " + std::to_string(blocks) + " more blocks, " +
                               std::to_string(kv.free_blocks()) + " of " + std::to_string(kv.total_blocks()) +
                               " are free");
}

}  // namespace loom::engine
