// TextStream: detokenize token by token, find stop strings across token boundaries, hand out only
// text that no later token can turn into part of a match.
#include "engine/text_stream.h"

#include <algorithm>
#include <string_view>

#include "engine/errors.h"

namespace loom::engine {

namespace {

// Length of the longest suffix of `text` that is a proper prefix of some stop string: text that
// must be held back because the next token could complete a stop string.
size_t held_back(std::string_view text, const std::vector<std::string>& stops) {
    size_t hold = 0;
    for (const auto& s : stops)
        for (size_t n = std::min(s.size() - 1, text.size()); n > hold; --n)
            if (text.substr(text.size() - n) == std::string_view(s).substr(0, n)) {
                hold = n;
                break;
            }
    return hold;
}

}  // namespace

TextStream::TextStream(const tokenizer::Tokenizer& tokenizer, std::vector<std::string> stop_strings)
    : detok_(tokenizer, {.skip_control = true, .continuation = true}), stops_(std::move(stop_strings)) {
    check_stop_strings(stops_);
}

void check_stop_strings(std::span<const std::string> stop_strings) {
    for (const auto& s : stop_strings)
        if (s.empty()) throw RequestError("stop", "stop strings must not be empty");
}

TextStream::Piece TextStream::feed(int32_t token) {
    Piece piece;
    if (stopped_ || finished_) {
        piece.stopped = stopped_;
        return piece;
    }
    text_ += detok_.feed(token);
    size_t stop_at = std::string::npos;
    for (const auto& s : stops_) {
        // A new match can only start where the last emit could not yet rule one out.
        const size_t from = emitted_ >= s.size() ? emitted_ - s.size() + 1 : 0;
        stop_at = std::min(stop_at, text_.find(s, from));
    }
    size_t end = text_.size() - held_back(text_, stops_);
    if (stop_at != std::string::npos) {
        stopped_ = true;
        piece.stopped = true;
        end = stop_at;
        text_.resize(stop_at);
    }
    if (end > emitted_) {
        piece.text = text_.substr(emitted_, end - emitted_);
        emitted_ = end;
    }
    return piece;
}

void TextStream::resume(std::span<const int32_t> tokens) {
    for (int32_t token : tokens) feed(token);
}

std::string TextStream::finish() {
    if (stopped_ || finished_) return {};
    finished_ = true;
    text_ += detok_.flush();
    std::string rest = text_.substr(std::min(emitted_, text_.size()));
    emitted_ = text_.size();
    return rest;
}

}  // namespace loom::engine
