// Leftmost-longest matching of special token texts, bucketed by first byte so that plain text costs
// one table probe per byte.
#include "tokenizer/special_tokens.h"

#include <algorithm>

namespace loom::tokenizer {

SpecialTokenMatcher::SpecialTokenMatcher(const Vocabulary& vocab, bool include_control) {
    for (size_t i = 0; i < vocab.size(); ++i) {
        const TokenType t = vocab.types[i];
        if ((t == TokenType::UserDefined || (include_control && t == TokenType::Control)) && !vocab.tokens[i].empty())
            entries_.emplace_back(vocab.tokens[i], TokenId(i));
    }
    std::stable_sort(entries_.begin(), entries_.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    for (size_t i = 0; i < entries_.size(); ++i)
        by_first_byte_[static_cast<unsigned char>(entries_[i].first[0])].push_back(uint32_t(i));
}

std::optional<SpecialTokenMatcher::Match> SpecialTokenMatcher::find(std::string_view text, size_t from) const {
    if (entries_.empty()) return std::nullopt;
    for (size_t pos = from; pos < text.size(); ++pos) {
        const auto& bucket = by_first_byte_[static_cast<unsigned char>(text[pos])];
        for (const uint32_t index : bucket) {
            const auto& [token, id] = entries_[index];
            if (text.substr(pos, token.size()) == token) return Match{pos, token.size(), id};
        }
    }
    return std::nullopt;
}

}  // namespace loom::tokenizer
