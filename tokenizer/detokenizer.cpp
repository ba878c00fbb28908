// StreamingDetokenizer: token bytes accumulate until they end on a UTF-8 boundary; what can no
// longer become valid is replaced by U+FFFD exactly as whole-sequence decoding replaces it.
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace loom::tokenizer {

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer, const DecodeOptions& options)
    : tokenizer_(&tokenizer), options_(options) {}

std::string StreamingDetokenizer::feed(TokenId id) {
    const Tokenizer::Impl& im = *tokenizer_->impl_;
    im.check_id(id);
    im.append_decoded(id, options_, seen_text_, pending_);
    // Everything up to a possibly unfinished final sequence is decided: sanitizing it now gives
    // what sanitizing the whole output would give for these bytes.
    const size_t ready = complete_utf8_prefix(pending_);
    std::string out = sanitize_utf8(std::string_view(pending_).substr(0, ready));
    pending_.erase(0, ready);
    return out;
}

std::string StreamingDetokenizer::flush() {
    std::string out = sanitize_utf8(pending_);
    reset();
    return out;
}

void StreamingDetokenizer::reset() {
    pending_.clear();
    seen_text_ = false;
}

}  // namespace loom::tokenizer
