// The request engine the worker drives: a queue of generation requests, admission into sequence
// slots and KV blocks (its KvManager owns them), and one planned step at a time mixing decode tokens
// with chunks of prompts (continuous batching) for the backend to execute. Not thread-safe: one
// thread owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "engine/backend.h"
#include "engine/kv_manager.h"
#include "engine/sampler.h"

namespace loom::engine {

struct RequestOptions {
    SamplingParams sampling;
    int max_tokens = 128;           // >= 1
    int top_logprobs = -1;          // < 0: none; else 0 .. kMaxTopLogprobs
    std::vector<int32_t> stop_ids;  // tokens that end the request (end_of_generation_ids, unless ignore_eos)
    // Failover: the last resume_tokens prompt tokens were generated earlier by this same request
    // (0 <= resume_tokens < prompt length). Its first sample is step resume_tokens, as it would have
    // been without the interruption (the penalties already see the whole prompt), and max_tokens
    // counts only the tokens generated from here. The resumed tokens are fed one per step, as the
    // first run decoded them, so a backend whose prefill and decode differ in their last bits (CUDA)
    // rebuilds the same KV cache and continues with the same tokens.
    int resume_tokens = 0;
};

// Why a request ended, in the engine's words; the API layer maps them to its own (worker/openai_api).
// The Engine's events carry stop_token, max_tokens, context_full and error; stop_string and
// cancelled come from the request's output (RequestOutput) and its owner.
enum class FinishReason { none, stop_token, stop_string, max_tokens, context_full, cancelled, error };
// "", "eos", "stop_string", "max_tokens", "context_full", "cancelled", "error"
std::string_view to_string(FinishReason reason);

// What one step did for one request: a sampled token and/or the request's end.
struct TokenEvent {
    uint64_t request = 0;
    bool has_token = false;
    SampledToken token{};  // when has_token; a stop token comes with finish == stop_token
    FinishReason finish = FinishReason::none;
    std::string error;  // finish == error: why (sampling failed, KV cache full)
};

// The fixed facts of a backend a request is checked against (safe to read from any thread).
struct RequestLimits {
    int n_vocab = 0;
    int n_ctx = 0;
    int kv_block_tokens = 0;
    int kv_blocks_total = 0;
    static RequestLimits of(const Backend& backend);
};

// The checks Engine::add makes before queueing: RequestError / SamplingParamError / KvCacheFullError
// naming the field (prompt empty, ids outside the vocabulary, no room for one generated token,
// max_tokens < 1, resume_tokens outside 0 .. prompt length - 1, top_logprobs or logit_bias over their limits, sampling
// parameters out of range, a prompt larger than the whole KV cache). Callers on other threads use it to refuse early.
void check_request(const RequestLimits& limits, std::span<const int32_t> prompt, const RequestOptions& options);
// The prompt's size alone (the first of check_request's checks, for callers that check before they
// tokenize all else): RequestError("prompt") when empty, ContextLengthError when it leaves no room
// for a generated token in a context of n_ctx.
void check_prompt_size(size_t n_prompt, int n_ctx);

class Engine {
public:
    // observer (--dump-layers): sees every step's layer outputs; steps then carry one request.
    explicit Engine(Backend& backend, LayerObserver* observer = nullptr);
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    Backend& backend() { return backend_; }
    KvManager& kv() { return kv_; }
    const KvBlockPool& kv_blocks() const { return kv_.blocks(); }

    // Queues a request; RequestError / SamplingParamError (nothing queued) when the prompt is empty,
    // holds an id outside the vocabulary, leaves no room for one generated token in the context,
    // or an option is out of range. Returns its id (never 0).
    uint64_t add(std::vector<int32_t> prompt, const RequestOptions& options);

    // Ends a queued or running request now, returning its KV blocks; false when it is unknown or
    // already finished. The request produces no further events.
    bool cancel(uint64_t request);

    // Admits queued requests while slots and KV blocks allow (oldest first), then runs one backend
    // step over every running request: one decode token each, and prompt chunks (boundaries at
    // multiples of max_batch_tokens - max_seqs positions) filling the rest of the token budget.
    // Returns the step's events (empty when there was nothing to run).
    std::vector<TokenEvent> step();

    int running() const { return static_cast<int>(running_.size()); }
    int waiting() const { return static_cast<int>(waiting_.size()); }
    bool idle() const { return running_.empty() && waiting_.empty(); }

private:
    struct Request {
        uint64_t id = 0;
        RequestOptions options;
        std::vector<int32_t> tokens;  // prompt, then generated tokens
        int prompt_tokens = 0;
        int replay_from = 0;  // prompt_tokens - resume_tokens: from here on, one token per step
        int fed = 0;          // tokens already in the KV cache
        int generated = 0;    // since add(): resume_tokens is not counted
        int seq = -1;
    };
    void finish(Request& r, FinishReason reason, std::vector<TokenEvent>& events, std::string error = {});
    void admit();
    void make_room(std::vector<TokenEvent>& events);
    void plan_batch(std::vector<BatchEntry>& batch, std::vector<Request*>& owner);
    bool take_output(Request& r, const BatchEntry& entry, const BatchOutput& out, std::vector<TokenEvent>& events);

    Backend& backend_;
    KvManager kv_;
    LayerObserver* observer_;
    uint64_t next_id_ = 1;
    std::deque<Request> waiting_;
    std::map<uint64_t, Request> running_;  // by id: admission order
};

}  // namespace loom::engine
