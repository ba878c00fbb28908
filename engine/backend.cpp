// The plan checks every backend makes before it computes: nothing a plan says may reach outside
// the backend's memory.
#include "engine/backend.h"

#include "engine/errors.h"

namespace loom::engine {

void check_sampling(const SamplingParams& params, int top_logprobs, int n_vocab) {
    if (top_logprobs > kMaxTopLogprobs)
        throw SamplingParamError(
            "top_logprobs", std::to_string(top_logprobs) + " is above the maximum " + std::to_string(kMaxTopLogprobs));
    if (params.logit_bias.size() > static_cast<size_t>(kMaxLogitBiasEntries))
        throw SamplingParamError("logit_bias", std::to_string(params.logit_bias.size()) +
                                                   " entries are more than the maximum " +
                                                   std::to_string(kMaxLogitBiasEntries));
    validate(params, n_vocab);
}

void check_token_ids(std::span<const int32_t> tokens, int n_vocab) {
    for (int32_t id : tokens)
        if (id < 0 || id >= n_vocab)
            throw RequestError("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                               std::to_string(n_vocab - 1) + ")");
}

namespace {

void check_entry(const PlanEntry& e, const KvCapacity& kv, int n_vocab, int n_ctx) {
    const std::string who = "plan: sequence " + std::to_string(e.seq);
    if (e.seq < 0 || e.seq >= kv.max_seqs)
        throw RequestError(who + " is outside 0.." + std::to_string(kv.max_seqs - 1));
    if (e.tokens.empty()) throw RequestError(who + " has no tokens");
    const int64_t end = int64_t{e.pos0} + static_cast<int64_t>(e.tokens.size());
    if (e.pos0 < 0 || end > n_ctx)
        throw RequestError(who + " runs positions " + std::to_string(e.pos0) + ".." + std::to_string(end - 1) +
                           " outside the context of " + std::to_string(n_ctx));
    if (static_cast<int64_t>(e.blocks.size()) * kv.block_tokens < end)
        throw RequestError(who + ": its " + std::to_string(e.blocks.size()) + " KV blocks do not cover " +
                           std::to_string(end) + " positions");
    for (int32_t b : e.blocks)
        if (b < 0 || b >= kv.blocks) throw RequestError(who + ": KV block " + std::to_string(b) + " does not exist");
    check_token_ids(e.tokens, n_vocab);
}

}  // namespace

void check_plan(const StepPlan& plan, const KvCapacity& kv, int n_vocab, int n_ctx, int max_batch_tokens) {
    if (plan.entries.empty()) throw RequestError("plan: no entries");
    if (plan.observer && plan.entries.size() != 1)
        throw RequestError("plan: a layer observer needs one sequence, not " + std::to_string(plan.entries.size()));
    int64_t total = 0;
    for (const PlanEntry& e : plan.entries) {
        check_entry(e, kv, n_vocab, n_ctx);
        total += static_cast<int64_t>(e.tokens.size());
    }
    if (!plan.logits.empty()) {
        const PlanEntry& e = plan.entries.front();
        if (plan.entries.size() != 1 || e.sampling) throw RequestError("plan: a logits pass runs one entry, unsampled");
        const size_t need = (plan.all_logits ? e.tokens.size() : 1) * static_cast<size_t>(n_vocab);
        if (plan.logits.size() < need)
            throw RequestError("forward: logits buffer holds " + std::to_string(plan.logits.size()) +
                               " floats, needs " + std::to_string(need));
    } else if (total > max_batch_tokens) {
        throw RequestError("step: " + std::to_string(total) + " tokens exceed the batch limit of " +
                           std::to_string(max_batch_tokens));
    }
}

}  // namespace loom::engine
