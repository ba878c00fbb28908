// RequestOutput: events to text, stop strings, usage, timings and the finish reason.
#include "engine/request_output.h"

#include <utility>

namespace loom::engine {

namespace {

double seconds(RequestOutput::Clock::time_point a, RequestOutput::Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

}  // namespace

RequestOutput::RequestOutput(const tokenizer::Tokenizer& tokenizer, std::vector<std::string> stop_strings,
                             Clock::time_point start, std::span<const int32_t> resumed)
    : stream_(tokenizer, std::move(stop_strings)), start_(start) {
    if (!resumed.empty()) stream_.resume(resumed);
}

RequestOutput::Fed RequestOutput::feed(const TokenEvent& e, Clock::time_point now) {
    Fed fed;
    if (e.has_token) {
        fed.sampled = true;
        fed.first = !sampled_;
        if (sampled_) fed.gap_s = seconds(last_, now);
        if (!sampled_) first_ = now;
        sampled_ = true;
        last_ = now;
    }
    // A stop token ends the request and is not a completion token (nor text).
    if (e.has_token && e.finish != FinishReason::stop_token) {
        fed.completion = true;
        ++completion_tokens_;
        tokens_.push_back(e.token);
        TextStream::Piece piece = stream_.feed(e.token.token);
        text_ += piece.text;
        if (piece.stopped) {
            end(FinishReason::stop_string);
            return fed;
        }
    }
    if (e.finish != FinishReason::none) end(e.finish, e.error);
    return fed;
}

void RequestOutput::end(FinishReason reason, std::string error) {
    if (finished()) return;
    finish_ = reason;
    error_ = std::move(error);
    if (reason != FinishReason::cancelled && reason != FinishReason::error) text_ += stream_.finish();
}

std::string RequestOutput::take_text() { return std::exchange(text_, {}); }
std::vector<SampledToken> RequestOutput::take_tokens() { return std::exchange(tokens_, {}); }

double RequestOutput::ttft_s() const { return sampled_ ? seconds(start_, first_) : 0; }
double RequestOutput::decode_s() const { return sampled_ ? seconds(first_, last_) : 0; }
double RequestOutput::since_start_s(Clock::time_point now) const { return seconds(start_, now); }

}  // namespace loom::engine
