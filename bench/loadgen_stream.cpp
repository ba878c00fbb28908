// BENCHMARK TOOL ONLY (sse_loadgen): the fake stream's chunks, byte for byte in the shape loom-worker
// sends (nlohmann's sorted keys, no spaces), plus "loadgen_sent_ns".
#include "bench/loadgen_stream.h"

namespace loom::bench {

namespace {

// The fixed token sequence: ids 100.. with these texts, over and over.
constexpr const char* kWords[] = {" Once",   " upon", " a",     " time", ",", " there", " was",   " a",
                                  " little", " girl", " named", " Lily", ".", " She",   " liked", " to"};
constexpr int kWordCount = sizeof kWords / sizeof kWords[0];
constexpr int kFirstTokenId = 100;

std::string ids_json(const std::vector<int>& ids) {
    std::string s = "[";
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
    return s + "]";
}

}  // namespace

LoadgenStream::LoadgenStream(boost::asio::io_context& timers, StreamPlan plan, std::function<void(int)> running_delta)
    : timer_(timers), plan_(std::move(plan)), running_delta_(std::move(running_delta)) {}

LoadgenStream::~LoadgenStream() {
    if (started_ && !ended_) running_delta_(-1);
}

// A whole chunk: keys in the worker's (sorted) order, the first one carrying prompt_token_ids.
std::string LoadgenStream::chunk(const std::string& choice, int64_t stamp, bool with_prompt) {
    std::string s = "data: {\"choices\":[" + choice + "],\"created\":" + std::to_string(plan_.created) + ",\"id\":\"" +
                    plan_.id + "\",\"loadgen_sent_ns\":" + std::to_string(stamp) + ",\"model\":" + plan_.model_json +
                    ",\"object\":\"" + (plan_.chat ? "chat.completion.chunk" : "text_completion") + "\"";
    if (plan_.token_ids && with_prompt && !prompt_sent_) {
        s += ",\"prompt_token_ids\":" + ids_json(plan_.prompt_ids);
        prompt_sent_ = true;
    }
    if (plan_.usage) s += ",\"usage\":null";
    return s + "}\n\n";
}

std::string LoadgenStream::token_choice(int64_t k) const {
    const int w = static_cast<int>(k % kWordCount);
    std::string c = plan_.chat ? "{\"delta\":{\"content\":\"" + std::string(kWords[w]) + "\"}," : std::string("{");
    c += "\"finish_reason\":null,\"index\":0,\"logprobs\":null";
    if (!plan_.chat) c += ",\"text\":\"" + std::string(kWords[w]) + "\"";
    if (plan_.token_ids) c += ",\"token_ids\":[" + std::to_string(kFirstTokenId + w) + "]";
    return c + "}";
}

std::string LoadgenStream::finish_choice() const {
    return plan_.chat ? R"({"delta":{},"finish_reason":"length","index":0,"logprobs":null})"
                      : R"({"finish_reason":"length","index":0,"logprobs":null,"text":""})";
}

// One token chunk; after the last, the finish chunk, the usage chunk when asked for, and [DONE].
void LoadgenStream::tick() {
    const int64_t stamp = monotonic_ns();
    out_ += chunk(token_choice(sent_), stamp, true);
    if (++sent_ < plan_.chunks) return;
    out_ += chunk(finish_choice(), stamp, true);
    if (plan_.usage) {
        const auto prompt = static_cast<int64_t>(plan_.prompt_ids.size());
        std::string u = chunk("", stamp, false);
        u.replace(u.rfind("null"), 4,
                  "{\"completion_tokens\":" + std::to_string(sent_) + ",\"prompt_tokens\":" + std::to_string(prompt) +
                      ",\"total_tokens\":" + std::to_string(prompt + sent_) + "}");
        out_ += u;
    }
    out_ += "data: [DONE]\n\n";
    done_ = true;
}

void LoadgenStream::schedule() {
    next_due_ += std::chrono::nanoseconds(static_cast<int64_t>(plan_.interval_ms * 1e6));
    timer_.expires_at(next_due_);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
        if (ec) return;
        std::lock_guard lock(self->mu_);
        if (self->ended_) return;
        self->tick();
        if (!self->done_) self->schedule();
        if (self->notify_) self->notify_();
    });
}

void LoadgenStream::start(std::function<void()> notify) {
    std::lock_guard lock(mu_);
    notify_ = std::move(notify);
    started_ = true;
    running_delta_(+1);
    if (plan_.chat)
        out_ += chunk(R"({"delta":{"content":"","role":"assistant"},"finish_reason":null,"index":0,"logprobs":null})",
                      monotonic_ns(), true);
    if (plan_.interval_ms <= 0) return notify_();  // poll() makes the chunks
    // The first token goes out at once (no prefill to wait for); the next ones on a fixed schedule.
    tick();
    next_due_ = std::chrono::steady_clock::now();
    if (!done_) schedule();
    notify_();
}

http::ResponseProducer::Progress LoadgenStream::poll() {
    std::lock_guard lock(mu_);
    if (plan_.interval_ms <= 0 && !done_) tick();
    Progress p;
    p.data = std::move(out_);
    out_.clear();
    p.done = done_;
    if (done_ && !ended_) {
        ended_ = true;
        running_delta_(-1);
    }
    return p;
}

void LoadgenStream::abandoned() {
    std::lock_guard lock(mu_);
    if (!ended_) running_delta_(-1);
    ended_ = true;
    timer_.cancel();
}

}  // namespace loom::bench
