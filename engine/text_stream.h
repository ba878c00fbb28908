// One request's generated text: streaming detokenization (complete UTF-8 only) and stop strings
// matched on the text, holding back what could still become the start of a match.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace loom::engine {

// RequestError ("stop: ...") when a stop string is empty.
void check_stop_strings(std::span<const std::string> stop_strings);

class TextStream {
public:
    struct Piece {
        std::string text;      // text that became final with this token (possibly empty)
        bool stopped = false;  // a stop string matched: text ends where the match begins
    };

    // RequestError ("stop: ...") when a stop string is empty. The tokenizer must outlive the stream.
    TextStream(const tokenizer::Tokenizer& tokenizer, std::vector<std::string> stop_strings);

    // Failover: replays tokens this request generated before an interruption, as feed() would have
    // taken them, and drops the text: it was sent then. What feed() would still have held back (a
    // possible start of a stop string, an unfinished UTF-8 sequence) stays held, so a stop string
    // spanning the old and the new text still matches; one already inside the replayed text stops
    // the stream (the next feed() returns an empty stopped piece). Call before the first feed().
    void resume(std::span<const int32_t> tokens);
    // Adds a generated token. Once a piece came back stopped, feed no more tokens: further calls
    // return an empty stopped piece. Throws tokenizer::InvalidTokenIdError for an id outside the vocabulary.
    Piece feed(int32_t token);
    // At the end of a generation: the text still held back (a partial stop-string match, an
    // unfinished UTF-8 sequence as U+FFFD). Empty after a stop-string match or a second call.
    std::string finish();

    bool stopped() const { return stopped_; }

private:
    tokenizer::StreamingDetokenizer detok_;
    std::vector<std::string> stops_;
    std::string text_;    // everything decoded so far
    size_t emitted_ = 0;  // how much of text_ was handed out
    bool stopped_ = false;
    bool finished_ = false;
};

}  // namespace loom::engine
