// Engine: admission, batch assembly under the token budget, and the bookkeeping of each step's tokens.
#include "engine/engine.h"

#include <algorithm>

#include "engine/errors.h"

namespace loom::engine {

std::string_view to_string(FinishReason reason) {
    switch (reason) {
        case FinishReason::none: return "";
        case FinishReason::stop_token: return "eos";
        case FinishReason::stop_string: return "stop_string";
        case FinishReason::max_tokens: return "max_tokens";
        case FinishReason::context_full: return "context_full";
        case FinishReason::cancelled: return "cancelled";
        case FinishReason::error: return "error";
    }
    return "";
}

Engine::Engine(Backend& backend, LayerObserver* observer) : backend_(backend), kv_(backend), observer_(observer) {}

RequestLimits RequestLimits::of(const Backend& backend) {
    const KvCapacity kv = backend.kv_capacity();
    return {backend.config().n_vocab, backend.n_ctx(), kv.block_tokens, kv.blocks};
}

void check_prompt_size(size_t n_prompt, int n_ctx) {
    if (n_prompt == 0) throw RequestError("prompt", "no tokens");
    if (n_prompt >= static_cast<size_t>(n_ctx))
        throw ContextLengthError("prompt", "the prompt has " + std::to_string(n_prompt) +
                                               " tokens; the context holds " + std::to_string(n_ctx) +
                                               " (one more is needed to generate)");
}

void check_request(const RequestLimits& limits, std::span<const int32_t> prompt, const RequestOptions& options) {
    check_prompt_size(prompt.size(), limits.n_ctx);
    for (int32_t id : prompt)
        if (id < 0 || id >= limits.n_vocab)
            throw RequestError("prompt", "token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                                             std::to_string(limits.n_vocab - 1) + ")");
    if (options.resume_tokens < 0 || static_cast<size_t>(options.resume_tokens) >= prompt.size())
        throw RequestError("resume_tokens", std::to_string(options.resume_tokens) + " is outside 0.." +
                                                std::to_string(prompt.size() - 1) +
                                                " (the resumed tokens follow at least one prompt token)");
    if (options.max_tokens < 1) throw RequestError("max_tokens", std::to_string(options.max_tokens) + " is below 1");
    check_sampling(options.sampling, options.top_logprobs, limits.n_vocab);
    const int64_t blocks = (static_cast<int64_t>(prompt.size()) + limits.kv_block_tokens) / limits.kv_block_tokens;
    if (blocks > limits.kv_blocks_total)
        throw KvCacheFullError("prompt", std::to_string(prompt.size()) + " tokens need " + std::to_string(blocks) +
                                             " KV blocks, the cache has " + std::to_string(limits.kv_blocks_total));
}

uint64_t Engine::add(std::vector<int32_t> prompt, const RequestOptions& options) {
    check_request(RequestLimits::of(backend_), prompt, options);
    Request r;
    r.id = next_id_++;
    r.options = options;
    r.prompt_tokens = static_cast<int>(prompt.size());
    r.replay_from = r.prompt_tokens - options.resume_tokens;
    r.tokens = std::move(prompt);
    waiting_.push_back(std::move(r));
    return waiting_.back().id;
}

bool Engine::cancel(uint64_t request) {
    const auto queued =
        std::find_if(waiting_.begin(), waiting_.end(), [&](const Request& r) { return r.id == request; });
    if (queued != waiting_.end()) {
        waiting_.erase(queued);
        return true;
    }
    const auto it = running_.find(request);
    if (it == running_.end()) return false;
    kv_.close(it->second.seq);
    running_.erase(it);
    return true;
}

void Engine::finish(Request& r, FinishReason reason, std::vector<TokenEvent>& events, std::string error) {
    if (events.empty() || events.back().request != r.id || events.back().finish != FinishReason::none) {
        TokenEvent e;
        e.request = r.id;
        events.push_back(e);
    }
    events.back().finish = reason;
    events.back().error = std::move(error);
    kv_.close(r.seq);
}

// Admission: a request enters when a slot is free and the KV cache holds its prompt and first
// token next to what running requests will need for their next token.
void Engine::admit() {
    const KvBlockPool& kv = kv_.blocks();
    while (!waiting_.empty() && kv.open_seqs() < kv.max_seqs()) {
        const Request& next = waiting_.front();
        const int need = (next.prompt_tokens + kv.block_tokens()) / kv.block_tokens();
        if (need + static_cast<int>(running_.size()) > kv.free_blocks()) break;
        Request r = std::move(waiting_.front());
        waiting_.pop_front();
        r.seq = kv_.open();
        running_.emplace(r.id, std::move(r));
    }
}

// Decode growth: when the cache cannot give every decoding request the block its next token may
// need, the youngest decoding requests end with an error and their blocks go to the rest.
void Engine::make_room(std::vector<TokenEvent>& events) {
    const KvBlockPool& kv = kv_.blocks();
    for (;;) {
        int need = 0;
        Request* youngest = nullptr;
        for (auto& [id, r] : running_)
            if (r.fed >= r.prompt_tokens) {
                need += kv.blocks_needed(r.seq, 1);
                youngest = &r;
            }
        if (!youngest || need <= kv.free_blocks()) break;
        finish(*youngest, FinishReason::error, events,
               "kv cache full: no free block for the next token (" + std::to_string(kv.total_blocks()) + " blocks of " +
                   std::to_string(kv.block_tokens()) + " tokens in all)");
        running_.erase(youngest->id);
    }
}

// The batch: every decoding request's last token and every resumed request's next replayed token,
// then prompt chunks in admission order.
void Engine::plan_batch(std::vector<BatchEntry>& batch, std::vector<Request*>& owner) {
    const KvBlockPool& kv = kv_.blocks();
    int budget = backend_.max_batch_tokens();
    int free_blocks = kv.free_blocks();
    for (auto& [id, r] : running_) {
        if (r.fed < r.replay_from || budget == 0) continue;
        const int blocks = kv.blocks_needed(r.seq, 1);
        if (r.fed < r.prompt_tokens && blocks > free_blocks) continue;  // replaying: waits like a prompt chunk
        free_blocks -= blocks;
        --budget;
        BatchEntry e;
        e.seq = r.seq;
        e.tokens = std::span<const int32_t>(r.tokens).subspan(static_cast<size_t>(r.fed), 1);
        batch.push_back(e);
        owner.push_back(&r);
    }
    // Prompts go in chunks with fixed boundaries (multiples of `chunk` positions), so a prompt is
    // cut the same way whatever else runs, and its numbers do not depend on the company it keeps.
    // A chunk that does not fit this step's budget or free blocks waits for the next step.
    const int chunk = std::max(1, backend_.max_batch_tokens() - kv.max_seqs());
    for (auto& [id, r] : running_) {
        if (r.fed >= r.replay_from) continue;
        const int n = std::min(r.replay_from - r.fed, chunk - r.fed % chunk);
        if (n > budget || kv.blocks_needed(r.seq, n) > free_blocks) continue;
        free_blocks -= kv.blocks_needed(r.seq, n);
        budget -= n;
        BatchEntry e;
        e.seq = r.seq;
        e.tokens = std::span<const int32_t>(r.tokens).subspan(static_cast<size_t>(r.fed), static_cast<size_t>(n));
        batch.push_back(e);
        owner.push_back(&r);
    }
    for (size_t i = 0; i < batch.size(); ++i) {
        Request& r = *owner[i];
        if (r.fed + static_cast<int>(batch[i].tokens.size()) < r.prompt_tokens) continue;  // more prompt to come
        batch[i].sampling = &r.options.sampling;
        batch[i].history = r.tokens;
        batch[i].sample_step = static_cast<uint64_t>(r.options.resume_tokens + r.generated);
        batch[i].top_logprobs = r.options.top_logprobs;
    }
    if (observer_ && batch.size() > 1) {  // the observer follows one sequence at a time
        batch.resize(1);
        owner.resize(1);
    }
}

// One entry's output: the fed tokens advance, a sampled token becomes an event, and the request
// ends on a stop token, max_tokens, a full context or a sampling error. True when it ended.
bool Engine::take_output(Request& r, const BatchEntry& entry, const BatchOutput& out, std::vector<TokenEvent>& events) {
    r.fed += static_cast<int>(entry.tokens.size());
    if (!entry.sampling) return false;
    if (!out.sampled) {
        finish(r, FinishReason::error, events, out.error);
        return true;
    }
    TokenEvent e;
    e.request = r.id;
    e.has_token = true;
    e.token = out.token;
    events.push_back(e);
    const auto& stop = r.options.stop_ids;
    if (std::find(stop.begin(), stop.end(), out.token.token) != stop.end()) {
        finish(r, FinishReason::stop_token, events);
        return true;
    }
    r.tokens.push_back(out.token.token);
    ++r.generated;
    if (r.generated >= r.options.max_tokens) {
        finish(r, FinishReason::max_tokens, events);
        return true;
    }
    if (static_cast<int>(r.tokens.size()) >= backend_.n_ctx()) {
        finish(r, FinishReason::context_full, events);
        return true;
    }
    return false;
}

std::vector<TokenEvent> Engine::step() {
    std::vector<TokenEvent> events;
    admit();
    if (running_.empty()) return events;
    make_room(events);
    std::vector<BatchEntry> batch;
    std::vector<Request*> owner;
    plan_batch(batch, owner);
    if (batch.empty()) return events;
    const std::vector<BatchOutput> outputs = kv_.step(batch, observer_);
    std::vector<uint64_t> done;
    for (size_t i = 0; i < batch.size(); ++i)
        if (take_output(*owner[i], batch[i], outputs[i], events)) done.push_back(owner[i]->id);
    for (uint64_t id : done) running_.erase(id);
    return events;
}

}  // namespace loom::engine
