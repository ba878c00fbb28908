// Finding special token texts in input text, so that "<|im_start|>" becomes its id instead of being
// tokenized as characters.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/vocab.h"

namespace loom::tokenizer {

class SpecialTokenMatcher {
public:
    struct Match {
        size_t begin;
        size_t length;
        TokenId id;
    };

    // Every user-defined token, and every control token if include_control, with non-empty text
    // (the lowest id of a repeated text).
    SpecialTokenMatcher(const Vocabulary& vocab, bool include_control);

    // The leftmost match at or after `from`, the longest text among those starting there.
    std::optional<Match> find(std::string_view text, size_t from) const;

private:
    std::vector<std::pair<std::string, TokenId>> entries_;  // longest first
    std::array<std::vector<uint32_t>, 256> by_first_byte_;  // indices into entries_, longest first
};

}  // namespace loom::tokenizer
