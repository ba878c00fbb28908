// The worker's engine loop: one thread owns the Engine and steps it while requests exist (continuous
// batching), turning its token events into per-request text streams that HTTP sessions consume.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/backend.h"
#include "engine/engine.h"
#include "tokenizer/tokenizer.h"
#include "worker/metrics.h"

namespace loom::worker {

struct GenerationRequest {
    std::vector<int32_t> prompt;
    engine::RequestOptions options;         // sampling, max_tokens, top_logprobs, stop_ids, resume_tokens
    std::vector<std::string> stop_strings;  // matched on the text; the match is not emitted
};

struct StreamEvent {                           // delivered in order; the last one has finished == true
    std::string text;                          // new text: complete UTF-8, never part of a possible stop string
    std::vector<engine::SampledToken> tokens;  // the tokens sampled since the previous event (logprobs filled
                                               // when asked); text held back waits, so its tokens wait with it
    bool finished = false;
    engine::FinishReason finish = engine::FinishReason::none;  // set on the finished event
    std::string error;                                         // finish == error: why
    int prompt_tokens = 0, completion_tokens = 0;              // usage, set on the finished event
};

// One request's events. Producer: the loop thread; consumer: an HTTP session (any thread).
class RequestStream {
public:
    explicit RequestStream(uint64_t id) : id_(id) {}
    RequestStream(const RequestStream&) = delete;
    RequestStream& operator=(const RequestStream&) = delete;

    uint64_t id() const { return id_; }
    std::vector<StreamEvent> take();                               // non-blocking, moves out what is queued
    std::vector<StreamEvent> wait(std::chrono::milliseconds max);  // blocks until something is queued or max
    // notify is called from the loop thread after events are queued, and once from the calling
    // thread here when events are already queued. It may be called when take() then finds nothing
    // (a race with an earlier take); it must be quick and must not throw (e.g. post to an executor).
    void on_ready(std::function<void()> notify);
    bool finished() const;  // the finished event was queued (it may not have been taken yet)

private:
    friend class EngineLoop;
    void push(std::vector<StreamEvent> events);

    const uint64_t id_;
    mutable std::mutex mutex_;
    std::condition_variable ready_;
    std::vector<StreamEvent> queued_;
    std::function<void()> notify_;
    bool finished_ = false;
};

struct LoopLimits {
    int max_queue = 64;  // requests that may wait for a sequence slot; submit() refuses more
};

class EngineLoop {
public:
    // Starts the loop thread. backend, tokenizer and metrics must outlive the loop; nothing else may
    // use the backend while the loop lives.
    EngineLoop(engine::Backend& backend, const tokenizer::Tokenizer& tokenizer, LoopLimits limits, Metrics& metrics);
    ~EngineLoop();  // cancels everything (streams finish "cancelled"), joins
    EngineLoop(const EngineLoop&) = delete;
    EngineLoop& operator=(const EngineLoop&) = delete;

    // Validates on the calling thread, with Engine::add's checks and messages (engine::RequestError
    // or engine::SamplingParamError naming the field: "prompt", "max_tokens", "resume_tokens", "top_logprobs",
    // "logit_bias", the sampling field, "stop" for an empty stop string), then queues. Returns nullptr
    // (and counts loom_requests_rejected_total{reason}) when max_seqs + max_queue requests are live
    // ("queue_full": answer 429 with Retry-After), when drain() has begun ("draining") or the loop is
    // poisoned ("poisoned"): check draining() / poisoned() to answer 503 for those.
    std::shared_ptr<RequestStream> submit(GenerationRequest request);

    // Thread-safe, idempotent: true when the request was live (queued or running). Its KV blocks
    // return before the next step; its stream gets a finished event with finish cancelled.
    bool cancel(uint64_t id);

    LoopStatus status() const;  // thread-safe snapshot (as of the end of the last step)

    // Runs one real step (a 1-token prompt, max_tokens 1, not counted in the metrics) and waits for
    // it; std::runtime_error naming the cause when it fails.
    void warm_up();

    // Stops admitting: submit() refuses from now on, queued requests that hold no sequence slot yet
    // finish "cancelled" at once, running ones go on until they finish or the deadline passes
    // (then they finish "cancelled"). Returns when no request is left (or the loop is poisoned).
    void drain(std::chrono::milliseconds deadline);
    bool draining() const;

    // A backend step threw something other than an engine request error (a CUDA fault, say): every
    // stream finished "error", the loop stopped, and the worker should exit non-zero.
    bool poisoned() const;
    std::string poison_message() const;

private:
    struct State;  // what only the loop thread touches (the Engine, live requests, their text)
    struct Submitted {
        uint64_t id = 0;
        GenerationRequest request;
        std::shared_ptr<RequestStream> stream;
        std::chrono::steady_clock::time_point submitted;
        bool internal = false;  // warm-up: not counted in the metrics
    };

    std::shared_ptr<RequestStream> enqueue(GenerationRequest request, bool internal);
    void validate(const GenerationRequest& request) const;
    void run();
    void poison(const std::string& fatal);  // the loop thread, after a step failed beyond a request
    void publish(bool poisoned);            // the loop thread: snapshot, then the step's events

    const tokenizer::Tokenizer& tokenizer_;
    const LoopLimits limits_;
    Metrics& metrics_;
    // Fixed at construction, read by submit() on any thread without touching the backend.
    const engine::RequestLimits limits_of_backend_;
    const int max_seqs_;

    mutable std::mutex mutex_;         // guards everything below
    std::condition_variable wake_;     // the loop sleeps on it while idle
    std::condition_variable settled_;  // drain() and warm_up() wait on it
    uint64_t next_id_ = 1;
    std::deque<Submitted> incoming_;
    std::vector<uint64_t> cancels_;
    std::set<uint64_t> live_;  // ids submitted and not yet finished
    int engine_waiting_ = 0;   // requests the Engine holds without a slot (an upper bound mid-step)
    LoopStatus snapshot_;
    bool stop_ = false;
    bool draining_ = false;
    bool delivering_ = false;  // the loop is pushing a step's events to their streams
    std::chrono::steady_clock::time_point drain_deadline_{};
    bool poisoned_ = false;
    std::string poison_message_;

    std::unique_ptr<State> state_;
    std::thread thread_;
};

}  // namespace loom::worker
