// EngineLoop: the thread that owns the Engine (admission, cancellation, steps, draining, poisoning)
// and RequestStream, the queue of events between it and one HTTP session.
#include "worker/engine_loop.h"

#include <spdlog/spdlog.h>

#include <map>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include "engine/errors.h"
#include "engine/request_output.h"

namespace loom::worker {

using Clock = std::chrono::steady_clock;

namespace {

double seconds_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

// The "engine" component of --log: requests entering and leaving the Engine, steps, failures.
std::shared_ptr<spdlog::logger> log() {
    if (auto l = spdlog::get("engine")) return l;
    return spdlog::default_logger();
}

const char* kind(bool internal) { return internal ? "warm-up request" : "request"; }

}  // namespace

// ---- RequestStream -------------------------------------------------------------------------------

std::vector<StreamEvent> RequestStream::take() {
    std::lock_guard lock(mutex_);
    return std::exchange(queued_, {});
}

std::vector<StreamEvent> RequestStream::wait(std::chrono::milliseconds max) {
    std::unique_lock lock(mutex_);
    ready_.wait_for(lock, max, [&] { return !queued_.empty(); });
    return std::exchange(queued_, {});
}

void RequestStream::on_ready(std::function<void()> notify) {
    std::function<void()> now;
    {
        std::lock_guard lock(mutex_);
        notify_ = std::move(notify);
        if (!queued_.empty()) now = notify_;
    }
    if (now) now();
}

bool RequestStream::finished() const {
    std::lock_guard lock(mutex_);
    return finished_;
}

void RequestStream::push(std::vector<StreamEvent> events) {
    std::function<void()> notify;
    {
        std::lock_guard lock(mutex_);
        for (auto& e : events) {
            finished_ = finished_ || e.finished;
            queued_.push_back(std::move(e));
        }
        notify = notify_;
    }
    ready_.notify_all();
    // Outside the lock: the consumer may call take() from inside notify.
    if (notify) notify();
}

// ---- the loop thread's own state -----------------------------------------------------------------

// What only the loop thread touches: the Engine, the live requests and their output, and the
// events a step produced (delivered after the snapshot is published).
struct EngineLoop::State {
    using FinishReason = engine::FinishReason;
    struct Active {
        uint64_t engine_id = 0;
        std::shared_ptr<RequestStream> stream;
        engine::RequestOutput out;
        bool internal = false;
        int prompt_tokens = 0;
    };

    State(engine::Backend& backend, const tokenizer::Tokenizer& tok, Metrics& m)
        : engine(backend), tokenizer(tok), metrics(m), logger(log()) {}

    engine::Engine engine;
    const tokenizer::Tokenizer& tokenizer;
    Metrics& metrics;
    const std::shared_ptr<spdlog::logger> logger;      // looked up once: the registry takes a lock
    std::map<uint64_t, Active> active;                 // by loop id: the order requests entered the Engine
    std::unordered_map<uint64_t, uint64_t> by_engine;  // Engine id -> loop id
    std::vector<std::pair<std::shared_ptr<RequestStream>, StreamEvent>> outbox;  // delivered after each step
    std::vector<uint64_t> finished;  // loop ids finished since the last snapshot

    void admit(std::deque<Submitted>& incoming, bool draining);
    void cancel(const std::vector<uint64_t>& ids, bool draining, Clock::time_point deadline);
    std::string step();  // the message of a failure that is not about a request, else empty
    void deliver(uint64_t id, const engine::TokenEvent& e);
    void end_all(FinishReason reason, const std::string& error, std::deque<Submitted>& incoming);

    void close(uint64_t id);
    void finish(uint64_t id, FinishReason reason, std::string error = {}) {
        active.at(id).out.end(reason, std::move(error));
        close(id);
    }
    void cancel_in_engine(uint64_t id, FinishReason reason, std::string error = {}) {
        engine.cancel(active.at(id).engine_id);  // false when the Engine already ended it
        finish(id, reason, std::move(error));
    }
    void refuse(Submitted& s, FinishReason reason, std::string error = {});
    void fail_with_slot(const char* kind, const std::string& why);
    std::vector<uint64_t> without_slot() const;
};

// Ends a live request's stream (the Engine must already be done with it).
void EngineLoop::State::close(uint64_t id) {
    Active& a = active.at(id);
    StreamEvent e;
    e.text = a.out.take_text();
    e.tokens = a.out.take_tokens();
    e.finished = true;
    e.finish = a.out.finish();
    e.error = a.out.error();
    e.prompt_tokens = a.prompt_tokens;
    e.completion_tokens = a.out.completion_tokens();
    if (e.finish == FinishReason::error)
        logger->warn("{} {} failed after {} completion tokens: {}", kind(a.internal), id, e.completion_tokens, e.error);
    else
        logger->debug("{} {} finished ({}): {} prompt + {} completion tokens in {:.3f} s", kind(a.internal), id,
                      engine::to_string(e.finish), a.prompt_tokens, e.completion_tokens, a.out.since_start_s());
    if (!a.internal) {
        if (e.finish == FinishReason::cancelled) metrics.count_cancelled();
        if (e.finish != FinishReason::cancelled && e.finish != FinishReason::error)
            metrics.observe_e2e_latency(a.out.since_start_s());
    }
    outbox.emplace_back(a.stream, std::move(e));
    finished.push_back(id);
    by_engine.erase(a.engine_id);
    active.erase(id);
}

// A submission that never reached the Engine.
void EngineLoop::State::refuse(Submitted& s, FinishReason reason, std::string error) {
    StreamEvent e;
    e.finished = true;
    e.finish = reason;
    e.error = std::move(error);
    e.prompt_tokens = static_cast<int>(s.request.prompt.size());
    if (reason == FinishReason::error)
        logger->warn("{} {} refused: {}", kind(s.internal), s.id, e.error);
    else
        logger->debug("{} {} ended before the engine took it ({})", kind(s.internal), s.id, engine::to_string(reason));
    if (!s.internal && reason == FinishReason::cancelled) metrics.count_cancelled();
    outbox.emplace_back(s.stream, std::move(e));
    finished.push_back(s.id);
}

// Loop ids of the live requests the Engine holds without a slot: the newest engine.waiting() of
// them, since the Engine admits strictly in the order requests were added.
std::vector<uint64_t> EngineLoop::State::without_slot() const {
    std::vector<uint64_t> ids;
    auto it = active.rbegin();
    for (int n = engine.waiting(); n > 0 && it != active.rend(); --n, ++it) ids.push_back(it->first);
    return ids;
}

// A step refused its batch before computing anything: the requests holding a slot fail with it.
void EngineLoop::State::fail_with_slot(const char* metric_kind, const std::string& why) {
    const size_t n = active.size() - std::min(active.size(), static_cast<size_t>(engine.waiting()));
    std::vector<uint64_t> ids;
    for (auto it = active.begin(); ids.size() < n; ++it) ids.push_back(it->first);
    for (uint64_t id : ids) {
        if (!active.at(id).internal) metrics.count_error(metric_kind);
        cancel_in_engine(id, FinishReason::error, why);
    }
}

// Submissions into the Engine (or refused: draining, or the Engine knows better than submit()).
void EngineLoop::State::admit(std::deque<Submitted>& incoming, bool draining) {
    for (auto& s : incoming) {
        if (draining) {
            refuse(s, FinishReason::cancelled);
            continue;
        }
        try {
            const int prompt_tokens = static_cast<int>(s.request.prompt.size());
            // A resumed request's earlier tokens were streamed by the worker that failed: their
            // text is history, held-back text and stop strings carry over.
            const int resumed = s.request.options.resume_tokens;
            std::span<const int32_t> history;
            if (resumed > 0 && resumed < prompt_tokens)  // else Engine::add refuses it below
                history = std::span<const int32_t>(s.request.prompt).last(static_cast<size_t>(resumed));
            engine::RequestOutput out(tokenizer, s.request.stop_strings, s.submitted, history);
            const uint64_t engine_id = engine.add(std::move(s.request.prompt), s.request.options);
            active.emplace(s.id, Active{.engine_id = engine_id,
                                        .stream = s.stream,
                                        .out = std::move(out),
                                        .internal = s.internal,
                                        .prompt_tokens = prompt_tokens});
            by_engine.emplace(engine_id, s.id);
            logger->debug("{} {} added: {} prompt tokens, at most {} new", kind(s.internal), s.id, prompt_tokens,
                          s.request.options.max_tokens);
        } catch (const std::exception& e) {  // submit() validated it; the Engine may still know better
            if (!s.internal) metrics.count_error("request");
            refuse(s, FinishReason::error, e.what());
        }
    }
}

// Cancellations asked for, and what draining ends (requests without a slot; all at the deadline).
void EngineLoop::State::cancel(const std::vector<uint64_t>& ids, bool draining, Clock::time_point deadline) {
    for (uint64_t id : ids)
        if (active.contains(id)) cancel_in_engine(id, FinishReason::cancelled);
    if (!draining) return;
    for (uint64_t id : without_slot()) cancel_in_engine(id, FinishReason::cancelled);
    if (Clock::now() >= deadline)
        while (!active.empty()) cancel_in_engine(active.begin()->first, FinishReason::cancelled);
}

// One Engine step and its events. Request errors fail the requests concerned; anything else is
// returned as the loop's fatal failure.
std::string EngineLoop::State::step() {
    try {
        const auto step_start = Clock::now();
        const std::vector<engine::TokenEvent> events = engine.step();
        logger->trace("step: {} events in {:.2f} ms; {} running, {} waiting", events.size(),
                      1e3 * seconds_between(step_start, Clock::now()), engine.running(), engine.waiting());
        for (const engine::TokenEvent& e : events) {
            const auto found = by_engine.find(e.request);
            if (found == by_engine.end()) continue;
            const uint64_t id = found->second;
            const bool internal = active.at(id).internal;
            try {
                deliver(id, e);
            } catch (const std::exception& ex) {  // e.g. a sampled id the tokenizer refuses
                if (!internal) metrics.count_error("engine");
                if (active.contains(id)) cancel_in_engine(id, FinishReason::error, ex.what());
            }
        }
        // A step that ran nothing and admitted nothing with every slot and block free would repeat
        // forever: fail what waits rather than spin (Engine::add already refuses prompts the empty
        // cache cannot hold, so this is a safeguard).
        if (events.empty() && engine.running() == 0 && engine.waiting() > 0)
            for (uint64_t id : without_slot()) {
                if (!active.at(id).internal) metrics.count_error("engine");
                cancel_in_engine(id, FinishReason::error, "the backend admitted no request with every slot free");
            }
    } catch (const engine::RequestError& ex) {  // sampling parameters too
        fail_with_slot("request", ex.what());
    } catch (const std::exception& ex) {
        return ex.what();
    }
    return {};
}

// One of the Engine's events for live request `id`: metrics, text, and the request's end.
void EngineLoop::State::deliver(uint64_t id, const engine::TokenEvent& e) {
    Active& a = active.at(id);
    const engine::RequestOutput::Fed fed = a.out.feed(e);
    if (!a.internal) {
        if (fed.first) {
            metrics.add_prompt_tokens(a.prompt_tokens);
            metrics.observe_time_to_first_token(a.out.ttft_s());
        } else if (fed.sampled) {
            metrics.observe_inter_token_latency(fed.gap_s);
        }
        if (fed.completion) metrics.add_generation_tokens(1);
    }
    if (!a.out.finished()) {
        if (!a.out.has_text()) return;  // tokens wait with the text they belong to
        StreamEvent out;
        out.text = a.out.take_text();
        out.tokens = a.out.take_tokens();
        outbox.emplace_back(a.stream, std::move(out));
        return;
    }
    if (a.out.finish() == FinishReason::stop_string) engine.cancel(a.engine_id);  // false when the token also ended it
    if (a.out.finish() == FinishReason::error && !a.internal) metrics.count_error("engine");
    close(id);
}

// Every stream ends: what waits in `incoming` and every live request (stop, or a poisoned loop).
void EngineLoop::State::end_all(FinishReason reason, const std::string& error, std::deque<Submitted>& incoming) {
    for (auto& s : incoming) refuse(s, reason, error);
    while (!active.empty()) {
        const uint64_t id = active.begin()->first;
        if (reason == FinishReason::cancelled) {
            cancel_in_engine(id, reason);
        } else {  // the backend is not touched again: the Engine keeps what it holds
            finish(id, reason, error);
        }
    }
}

// ---- EngineLoop ----------------------------------------------------------------------------------

EngineLoop::EngineLoop(engine::Backend& backend, const tokenizer::Tokenizer& tokenizer, LoopLimits limits,
                       Metrics& metrics)
    : tokenizer_(tokenizer),
      limits_(limits),
      metrics_(metrics),
      limits_of_backend_(engine::RequestLimits::of(backend)),
      max_seqs_(backend.kv_capacity().max_seqs),
      state_(std::make_unique<State>(backend, tokenizer, metrics)) {
    snapshot_.max_seqs = max_seqs_;
    snapshot_.kv_blocks_total = limits_of_backend_.kv_blocks_total;
    snapshot_.kv_blocks_free = limits_of_backend_.kv_blocks_total;
    thread_ = std::thread(&EngineLoop::run, this);
}

EngineLoop::~EngineLoop() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
}

// Engine::add's checks, made here on the caller's thread so the Engine stays with the loop thread.
void EngineLoop::validate(const GenerationRequest& request) const {
    engine::check_request(limits_of_backend_, request.prompt, request.options);
    engine::check_stop_strings(request.stop_strings);
}

std::shared_ptr<RequestStream> EngineLoop::submit(GenerationRequest request) {
    validate(request);
    return enqueue(std::move(request), false);
}

std::shared_ptr<RequestStream> EngineLoop::enqueue(GenerationRequest request, bool internal) {
    const char* refused = nullptr;
    std::shared_ptr<RequestStream> stream;
    {
        std::lock_guard lock(mutex_);
        if (poisoned_)
            refused = "poisoned";
        else if (draining_ || stop_)
            refused = "draining";
        // Every live request holds a slot or waits for one: with max_queue 0 a request is taken
        // only while a slot is free (counting incoming ones as waiting refused everything then).
        else if (!internal && static_cast<int>(live_.size()) >= max_seqs_ + limits_.max_queue)
            refused = "queue_full";
        else {
            Submitted s;
            s.id = next_id_++;
            s.request = std::move(request);
            s.stream = stream = std::make_shared<RequestStream>(s.id);
            s.submitted = Clock::now();
            s.internal = internal;
            live_.insert(s.id);
            incoming_.push_back(std::move(s));
        }
    }
    if (refused) {
        metrics_.count_rejected(refused);
        return nullptr;
    }
    wake_.notify_one();
    return stream;
}

bool EngineLoop::cancel(uint64_t id) {
    {
        std::lock_guard lock(mutex_);
        if (!live_.contains(id)) return false;
        cancels_.push_back(id);
    }
    wake_.notify_one();
    return true;
}

LoopStatus EngineLoop::status() const {
    std::lock_guard lock(mutex_);
    LoopStatus s = snapshot_;
    s.waiting = engine_waiting_ + static_cast<int>(incoming_.size());
    return s;
}

void EngineLoop::warm_up() {
    GenerationRequest r;
    const auto bos = tokenizer_.special_ids().bos;
    r.prompt = {bos && *bos >= 0 && *bos < limits_of_backend_.n_vocab ? *bos : 0};
    r.options.max_tokens = 1;
    r.options.sampling.temperature = 0;
    const auto stream = enqueue(std::move(r), true);
    if (!stream)
        throw std::runtime_error(poisoned() ? "warm-up: the engine loop is poisoned: " + poison_message()
                                            : std::string("warm-up: the engine loop is draining"));
    for (;;)
        for (const StreamEvent& e : stream->wait(std::chrono::milliseconds(1000)))
            if (e.finished) {
                if (e.finish == engine::FinishReason::error)
                    throw std::runtime_error("warm-up step failed: " + e.error);
                return;
            }
}

void EngineLoop::drain(std::chrono::milliseconds deadline) {
    std::unique_lock lock(mutex_);
    if (!draining_) {
        draining_ = true;
        drain_deadline_ = Clock::now() + deadline;
    }
    wake_.notify_all();
    settled_.wait(lock, [&] { return live_.empty() && !delivering_; });
}

bool EngineLoop::draining() const {
    std::lock_guard lock(mutex_);
    return draining_;
}

bool EngineLoop::poisoned() const {
    std::lock_guard lock(mutex_);
    return poisoned_;
}

std::string EngineLoop::poison_message() const {
    std::lock_guard lock(mutex_);
    return poison_message_;
}

// The loop: wait for work, take submissions and cancellations, run one step, publish a snapshot,
// then deliver the step's events. Only this thread touches the Engine (and so the backend).
void EngineLoop::run() {
    State& st = *state_;
    for (;;) {
        std::deque<Submitted> incoming;
        std::vector<uint64_t> cancels;
        bool stop = false, draining = false;
        Clock::time_point deadline;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [&] { return stop_ || !incoming_.empty() || !cancels_.empty() || !st.engine.idle(); });
            incoming.swap(incoming_);
            cancels.swap(cancels_);
            stop = stop_;
            draining = draining_;
            deadline = drain_deadline_;
            engine_waiting_ += static_cast<int>(incoming.size());  // an upper bound until the step is done
        }

        std::string fatal;
        if (stop) {
            st.end_all(engine::FinishReason::cancelled, {}, incoming);
        } else {
            st.admit(incoming, draining);
            st.cancel(cancels, draining, deadline);
            if (!st.engine.idle()) fatal = st.step();
        }
        if (!fatal.empty()) poison(fatal);
        publish(!fatal.empty());
        if (stop || !fatal.empty()) return;
    }
}

// A backend failure that is not about a request (a CUDA fault): the device state is unknown, so
// nothing runs on it again. Every stream ends with the cause.
void EngineLoop::poison(const std::string& fatal) {
    State& st = *state_;
    metrics_.count_error("fatal");
    const std::string why = "backend failure: " + fatal;
    st.logger->error("{}; no more steps run on this backend, {} live requests end with it", why, st.active.size());
    std::deque<Submitted> late;
    {
        std::lock_guard lock(mutex_);
        poisoned_ = true;
        poison_message_ = fatal;
        late.swap(incoming_);
    }
    st.end_all(engine::FinishReason::error, why, late);
}

// Publishes the snapshot, then hands the step's events to their streams.
void EngineLoop::publish(bool poisoned) {
    State& st = *state_;
    {
        std::lock_guard lock(mutex_);
        engine_waiting_ = st.engine.waiting();
        snapshot_.running = st.engine.running();
        snapshot_.kv_blocks_free = st.engine.kv_blocks().free_blocks();
        for (uint64_t id : st.finished) live_.erase(id);
        if (poisoned) live_.clear();
        delivering_ = true;
    }
    st.finished.clear();
    for (auto& [stream, event] : st.outbox) stream->push({std::move(event)});
    st.outbox.clear();
    {
        std::lock_guard lock(mutex_);
        delivering_ = false;
    }
    settled_.notify_all();
}

}  // namespace loom::worker
