// KvManager: batch checks, block placement, and the StepPlans handed to the backend.
#include "engine/kv_manager.h"

#include <set>

#include "engine/errors.h"

namespace loom::engine {

namespace {

KvBlockPool pool_for(const Backend& backend) {
    const KvCapacity kv = backend.kv_capacity();
    return KvBlockPool(kv.blocks, kv.block_tokens, kv.max_seqs);
}

}  // namespace

KvManager::KvManager(Backend& backend) : backend_(backend), pool_(pool_for(backend)) {}

int KvManager::open() { return pool_.open(); }

void KvManager::close(int seq) {
    pool_.close(seq);
    if (seq == forward_seq_) forward_seq_ = -1;
}

void KvManager::check_batch(std::span<const BatchEntry> batch, const LayerObserver* observer) const {
    const int n_vocab = backend_.config().n_vocab, n_ctx = backend_.n_ctx();
    if (batch.empty()) throw RequestError("step: empty batch");
    if (observer && batch.size() != 1)
        throw RequestError("step: a layer observer needs a batch of one sequence, not " + std::to_string(batch.size()));
    std::set<int> seen;
    int64_t total = 0, blocks = 0;
    for (const BatchEntry& e : batch) {
        const std::string who = "step: sequence " + std::to_string(e.seq);
        if (!pool_.is_open(e.seq)) throw RequestError(who + " is not open");
        if (!seen.insert(e.seq).second) throw RequestError(who + " appears twice in one batch");
        if (e.tokens.empty()) throw RequestError(who + " has no tokens");
        const int n = static_cast<int>(e.tokens.size());
        if (pool_.length(e.seq) + n > n_ctx)
            throw RequestError("context full: sequence " + std::to_string(e.seq) + " holds " +
                               std::to_string(pool_.length(e.seq)) + " positions + " + std::to_string(n) +
                               " new tokens > context " + std::to_string(n_ctx));
        check_token_ids(e.tokens, n_vocab);
        if (e.sampling) check_sampling(*e.sampling, e.top_logprobs, n_vocab);
        total += n;
        blocks += pool_.blocks_needed(e.seq, n);
    }
    if (total > backend_.max_batch_tokens())
        throw RequestError("step: " + std::to_string(total) + " tokens exceed the batch limit of " +
                           std::to_string(backend_.max_batch_tokens()));
    if (blocks > pool_.free_blocks())
        throw KvCacheFullError("kv cache full: the step needs " + std::to_string(blocks) + " more blocks, " +
                               std::to_string(pool_.free_blocks()) + " of " + std::to_string(pool_.total_blocks()) +
                               " are free");
}

PlanEntry KvManager::place(int seq, std::span<const int32_t> tokens) {
    PlanEntry p;
    p.seq = seq;
    p.pos0 = pool_.length(seq);
    p.tokens = tokens;
    pool_.append(seq, static_cast<int>(tokens.size()));
    p.blocks = pool_.blocks(seq);  // stays valid: no other entry of the plan grows this sequence
    return p;
}

std::vector<BatchOutput> KvManager::step(std::span<const BatchEntry> batch, LayerObserver* observer) {
    check_batch(batch, observer);
    StepPlan plan;
    plan.observer = observer;
    for (const BatchEntry& e : batch) {
        PlanEntry p = place(e.seq, e.tokens);
        p.sampling = e.sampling;
        p.history = e.history;
        p.sample_step = e.sample_step;
        p.top_logprobs = e.top_logprobs;
        plan.entries.push_back(p);
    }
    return backend_.execute(plan);
}

void KvManager::forward(std::span<const int32_t> tokens, std::span<float> logits, bool all_logits,
                        LayerObserver* observer) {
    const ModelConfig& c = backend_.config();
    const int T = static_cast<int>(tokens.size()), past = n_past(), n_ctx = backend_.n_ctx();
    if (T == 0) throw RequestError("forward: no tokens");
    if (past + T > n_ctx)
        throw RequestError("context full: " + std::to_string(past) + " positions used + " + std::to_string(T) +
                           " new tokens > context " + std::to_string(n_ctx));
    check_token_ids(tokens, c.n_vocab);
    const size_t need = static_cast<size_t>(all_logits ? T : 1) * c.n_vocab;
    if (logits.size() < need)
        throw RequestError("forward: logits buffer holds " + std::to_string(logits.size()) + " floats, needs " +
                           std::to_string(need));
    if (forward_seq_ < 0) forward_seq_ = pool_.open();
    if (pool_.blocks_needed(forward_seq_, T) > pool_.free_blocks())
        throw KvCacheFullError("kv cache full: forward needs more blocks than the " +
                               std::to_string(pool_.free_blocks()) + " free");
    StepPlan plan;
    plan.observer = observer;
    plan.logits = logits;
    plan.all_logits = all_logits;
    plan.entries.push_back(place(forward_seq_, tokens));
    backend_.execute(plan);
}

int KvManager::n_past() const { return forward_seq_ < 0 ? 0 : pool_.length(forward_seq_); }

void KvManager::reset() {
    if (forward_seq_ >= 0) close(forward_seq_);
}

}  // namespace loom::engine
