// One request's output as it streams, for generate() and the worker's EngineLoop alike: the
// Engine's token events turned into text (complete UTF-8, stop strings held back and cut), the
// tokens that go with that text, usage, timings, and why the request ended.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/text_stream.h"
#include "tokenizer/tokenizer.h"

namespace loom::engine {

class RequestOutput {
public:
    using Clock = std::chrono::steady_clock;

    // RequestError ("stop: ...") for an empty stop string. `resumed`: tokens this request generated
    // before a failover; their text was sent then (see TextStream::resume). start: when the request
    // arrived (time to first token counts from it).
    RequestOutput(const tokenizer::Tokenizer& tokenizer, std::vector<std::string> stop_strings, Clock::time_point start,
                  std::span<const int32_t> resumed = {});

    // What one event added.
    struct Fed {
        bool sampled = false;     // the event carried a sampled token (a stop token too)
        bool first = false;       // ... the request's first
        double gap_s = 0;         // seconds since the previous sampled token (not first)
        bool completion = false;  // a completion token was added (a stop token is none)
    };
    // Takes one of the Engine's events for this request. Afterwards finished() says whether the
    // request ended; finish() == stop_string means a stop string matched, and the caller must cancel
    // the request in the Engine. Throws tokenizer::InvalidTokenIdError for an id outside the vocabulary.
    Fed feed(const TokenEvent& e, Clock::time_point now = Clock::now());
    // Ends the request for a reason from outside its events (cancelled, error). A natural end
    // (stop token or string, max_tokens, context_full) releases the text still held back.
    void end(FinishReason reason, std::string error = {});

    bool finished() const { return finish_ != FinishReason::none; }
    FinishReason finish() const { return finish_; }
    const std::string& error() const { return error_; }
    int completion_tokens() const { return completion_tokens_; }

    // The text that became final since the last take, and the tokens sampled since then.
    bool has_text() const { return !text_.empty(); }
    std::string take_text();
    std::vector<SampledToken> take_tokens();

    double ttft_s() const;    // arrival to the first sampled token (0 before it)
    double decode_s() const;  // first to last sampled token
    double since_start_s(Clock::time_point now = Clock::now()) const;

private:
    TextStream stream_;
    Clock::time_point start_, first_{}, last_{};
    bool sampled_ = false;
    std::string text_;
    std::vector<SampledToken> tokens_;
    int completion_tokens_ = 0;
    FinishReason finish_ = FinishReason::none;
    std::string error_;
};

}  // namespace loom::engine
