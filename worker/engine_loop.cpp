// EngineLoop: the thread that owns the Engine (admission, cancellation, steps, draining, poisoning)
// and RequestStream, the queue of events between it and one HTTP session.
#include "worker/engine_loop.h"

#include <spdlog/spdlog.h>

#include <map>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include "engine/errors.h"
#include "engine/text_stream.h"

namespace loom::worker {

using Clock = std::chrono::steady_clock;

namespace {

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

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

struct EngineLoop::State {
    struct Active {
        uint64_t engine_id = 0;
        std::shared_ptr<RequestStream> stream;
        engine::TextStream text;
        bool internal = false;
        int prompt_tokens = 0;
        int completion_tokens = 0;
        bool sampled = false;  // a token (a stop token too) came: the prompt went through the model
        Clock::time_point submitted{}, last_token{};
        std::string pending_text{};                    // final text not yet delivered
        std::vector<engine::SampledToken> pending{};  // the tokens behind it
    };

    explicit State(engine::Backend& backend) : engine(backend) {}

    engine::Engine engine;
    std::map<uint64_t, Active> active;               // by loop id: the order requests entered the Engine
    std::unordered_map<uint64_t, uint64_t> by_engine;  // Engine id -> loop id
    std::vector<std::pair<std::shared_ptr<RequestStream>, StreamEvent>> outbox;  // delivered after each step
    std::vector<uint64_t> finished;                  // loop ids finished since the last snapshot
};

// ---- EngineLoop ----------------------------------------------------------------------------------

EngineLoop::EngineLoop(engine::Backend& backend, const tokenizer::Tokenizer& tokenizer, LoopLimits limits,
                       Metrics& metrics)
    : backend_(backend),
      tokenizer_(tokenizer),
      limits_(limits),
      metrics_(metrics),
      limits_of_backend_(engine::RequestLimits::of(backend)),
      max_seqs_(backend.kv_capacity().max_seqs),
      state_(std::make_unique<State>(backend)) {
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
    for (const auto& s : request.stop_strings)
        if (s.empty()) throw engine::RequestError("stop: stop strings must not be empty");
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
                if (e.finish_reason == "error") throw std::runtime_error("warm-up step failed: " + e.error);
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
    const std::shared_ptr<spdlog::logger> logger = log();  // looked up once: the registry takes a lock

    // Ends a live request's stream (the Engine must already be done with it).
    const auto finish = [&](uint64_t id, std::string reason, std::string error = {}) {
        State::Active& a = st.active.at(id);
        StreamEvent e;
        e.text = std::move(a.pending_text);
        if (reason == "stop" || reason == "length") e.text += a.text.finish();  // held-back text is final now
        e.tokens = std::move(a.pending);
        e.finished = true;
        e.finish_reason = std::move(reason);
        e.error = std::move(error);
        e.prompt_tokens = a.prompt_tokens;
        e.completion_tokens = a.completion_tokens;
        if (e.finish_reason == "error")
            logger->warn("{} {} failed after {} completion tokens: {}", kind(a.internal), id, a.completion_tokens, e.error);
        else
            logger->debug("{} {} finished ({}): {} prompt + {} completion tokens in {:.3f} s", kind(a.internal), id,
                         e.finish_reason, a.prompt_tokens, a.completion_tokens, seconds_between(a.submitted, Clock::now()));
        if (!a.internal) {
            if (e.finish_reason == "cancelled") metrics_.count_cancelled();
            if (e.finish_reason == "stop" || e.finish_reason == "length")
                metrics_.observe_e2e_latency(seconds_between(a.submitted, Clock::now()));
        }
        st.outbox.emplace_back(a.stream, std::move(e));
        st.finished.push_back(id);
        st.by_engine.erase(a.engine_id);
        st.active.erase(id);
    };
    // A submission that never reached the Engine.
    const auto refuse = [&](Submitted& s, std::string reason, std::string error = {}) {
        StreamEvent e;
        e.finished = true;
        e.finish_reason = std::move(reason);
        e.error = std::move(error);
        e.prompt_tokens = static_cast<int>(s.request.prompt.size());
        if (e.finish_reason == "error") logger->warn("{} {} refused: {}", kind(s.internal), s.id, e.error);
        else logger->debug("{} {} ended before the engine took it ({})", kind(s.internal), s.id, e.finish_reason);
        if (!s.internal && e.finish_reason == "cancelled") metrics_.count_cancelled();
        st.outbox.emplace_back(s.stream, std::move(e));
        st.finished.push_back(s.id);
    };
    // Loop ids of the live requests the Engine holds without a slot: the newest engine.waiting() of
    // them, since the Engine admits strictly in the order requests were added.
    const auto without_slot = [&] {
        std::vector<uint64_t> ids;
        auto it = st.active.rbegin();
        for (int n = st.engine.waiting(); n > 0 && it != st.active.rend(); --n, ++it) ids.push_back(it->first);
        return ids;
    };
    const auto with_slot = [&] {
        std::vector<uint64_t> ids;
        const size_t n = st.active.size() - std::min(st.active.size(), static_cast<size_t>(st.engine.waiting()));
        for (auto it = st.active.begin(); ids.size() < n; ++it) ids.push_back(it->first);
        return ids;
    };
    const auto cancel_in_engine = [&](uint64_t id, std::string reason, std::string error = {}) {
        st.engine.cancel(st.active.at(id).engine_id);  // false when the Engine already ended it
        finish(id, std::move(reason), std::move(error));
    };

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
            for (auto& s : incoming) refuse(s, "cancelled");
            while (!st.active.empty()) cancel_in_engine(st.active.begin()->first, "cancelled");
        } else {
            for (auto& s : incoming) {
                if (draining) {
                    refuse(s, "cancelled");
                    continue;
                }
                try {
                    engine::TextStream text(tokenizer_, s.request.stop_strings);
                    const int prompt_tokens = static_cast<int>(s.request.prompt.size());
                    // A resumed request's earlier tokens were streamed by the worker that failed:
                    // their text is history, held-back text and stop strings carry over.
                    const int resumed = s.request.options.resume_tokens;
                    if (resumed > 0 && resumed < prompt_tokens)  // else Engine::add refuses it below
                        text.resume(std::span<const int32_t>(s.request.prompt).last(static_cast<size_t>(resumed)));
                    const uint64_t engine_id = st.engine.add(std::move(s.request.prompt), s.request.options);
                    st.active.emplace(s.id, State::Active{.engine_id = engine_id,
                                                          .stream = s.stream,
                                                          .text = std::move(text),
                                                          .internal = s.internal,
                                                          .prompt_tokens = prompt_tokens,
                                                          .submitted = s.submitted});
                    st.by_engine.emplace(engine_id, s.id);
                    logger->debug("{} {} added: {} prompt tokens, at most {} new", kind(s.internal), s.id, prompt_tokens,
                                 s.request.options.max_tokens);
                } catch (const std::exception& e) {  // submit() validated it; the Engine may still know better
                    if (!s.internal) metrics_.count_error("request");
                    refuse(s, "error", e.what());
                }
            }
            for (uint64_t id : cancels)
                if (st.active.contains(id)) cancel_in_engine(id, "cancelled");
            if (draining) {
                for (uint64_t id : without_slot()) cancel_in_engine(id, "cancelled");
                if (Clock::now() >= deadline)
                    while (!st.active.empty()) cancel_in_engine(st.active.begin()->first, "cancelled");
            }
            if (!st.engine.idle()) {
                try {
                    const auto step_start = Clock::now();
                    const std::vector<engine::TokenEvent> events = st.engine.step();
                    logger->trace("step: {} events in {:.2f} ms; {} running, {} waiting", events.size(),
                                 1e3 * seconds_between(step_start, Clock::now()), st.engine.running(),
                                 st.engine.waiting());
                    for (const engine::TokenEvent& e : events) {
                        const auto found = st.by_engine.find(e.request);
                        if (found == st.by_engine.end()) continue;
                        const uint64_t id = found->second;
                        State::Active& a = st.active.at(id);
                        const bool internal = a.internal;
                        try {
                            if (e.has_token) {
                                const auto now = Clock::now();
                                if (!a.internal) {
                                    if (!a.sampled) {
                                        metrics_.add_prompt_tokens(a.prompt_tokens);
                                        metrics_.observe_time_to_first_token(seconds_between(a.submitted, now));
                                    } else {
                                        metrics_.observe_inter_token_latency(seconds_between(a.last_token, now));
                                    }
                                }
                                a.sampled = true;
                                a.last_token = now;
                            }
                            // A stop token ends the request and is not a completion token (nor text).
                            if (e.has_token && e.finish != engine::FinishReason::stop_token) {
                                ++a.completion_tokens;
                                if (!a.internal) metrics_.add_generation_tokens(1);
                                a.pending.push_back(e.token);
                                engine::TextStream::Piece piece = a.text.feed(e.token.token);
                                a.pending_text += piece.text;
                                if (piece.stopped) {
                                    cancel_in_engine(id, "stop");
                                    continue;
                                }
                            }
                            switch (e.finish) {
                                case engine::FinishReason::none:
                                    if (!a.pending_text.empty()) {
                                        StreamEvent out;
                                        out.text = std::exchange(a.pending_text, {});
                                        out.tokens = std::exchange(a.pending, {});
                                        st.outbox.emplace_back(a.stream, std::move(out));
                                    }
                                    break;
                                case engine::FinishReason::stop_token: finish(id, "stop"); break;
                                case engine::FinishReason::max_tokens:
                                case engine::FinishReason::context_full: finish(id, "length"); break;
                                case engine::FinishReason::cancelled: finish(id, "cancelled"); break;
                                case engine::FinishReason::error:
                                    if (!a.internal) metrics_.count_error("engine");
                                    finish(id, "error", e.error);
                                    break;
                            }
                        } catch (const std::exception& ex) {  // e.g. a sampled id the tokenizer refuses
                            if (!internal) metrics_.count_error("engine");
                            if (st.active.contains(id)) cancel_in_engine(id, "error", ex.what());
                        }
                    }
                    // A step that ran nothing and admitted nothing with every slot and block free
                    // would repeat forever: fail what waits rather than spin (Engine::add already
                    // refuses prompts the empty cache cannot hold, so this is a safeguard).
                    if (events.empty() && st.engine.running() == 0 && st.engine.waiting() > 0)
                        for (uint64_t id : without_slot()) {
                            if (!st.active.at(id).internal) metrics_.count_error("engine");
                            cancel_in_engine(id, "error", "the backend admitted no request with every slot free");
                        }
                } catch (const engine::RequestError& ex) {
                    // The step refused its batch before computing anything: the requests in it fail.
                    for (uint64_t id : with_slot()) {
                        if (!st.active.at(id).internal) metrics_.count_error("request");
                        cancel_in_engine(id, "error", ex.what());
                    }
                } catch (const engine::SamplingParamError& ex) {
                    for (uint64_t id : with_slot()) {
                        if (!st.active.at(id).internal) metrics_.count_error("request");
                        cancel_in_engine(id, "error", ex.what());
                    }
                } catch (const std::exception& ex) {
                    fatal = ex.what();
                }
            }
        }

        if (!fatal.empty()) {
            // A backend failure that is not about a request (a CUDA fault): the device state is
            // unknown, so nothing runs on it again. Every stream ends with the cause.
            metrics_.count_error("fatal");
            const std::string why = "backend failure: " + fatal;
            logger->error("{}; no more steps run on this backend, {} live requests end with it", why, st.active.size());
            std::deque<Submitted> late;
            {
                std::lock_guard lock(mutex_);
                poisoned_ = true;
                poison_message_ = fatal;
                late.swap(incoming_);
            }
            for (auto& s : late) refuse(s, "error", why);
            for (const auto& [id, a] : st.active) {
                StreamEvent e;
                e.text = a.pending_text;
                e.tokens = a.pending;
                e.finished = true;
                e.finish_reason = "error";
                e.error = why;
                e.prompt_tokens = a.prompt_tokens;
                e.completion_tokens = a.completion_tokens;
                st.outbox.emplace_back(a.stream, std::move(e));
            }
            st.active.clear();
            st.by_engine.clear();
        }

        {
            std::lock_guard lock(mutex_);
            engine_waiting_ = st.engine.waiting();
            snapshot_.running = st.engine.running();
            snapshot_.kv_blocks_free = st.engine.kv_blocks().free_blocks();
            for (uint64_t id : st.finished) live_.erase(id);
            if (!fatal.empty()) live_.clear();
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
        if (stop || !fatal.empty()) return;
    }
}

}  // namespace loom::worker
