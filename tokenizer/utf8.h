// UTF-8 decoding, encoding and validation used by the tokenizers, detokenizers and templates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace loom::tokenizer {

constexpr char32_t kReplacementChar = 0xFFFD;

struct DecodedCodepoint {
    char32_t cp;    // kReplacementChar when the sequence is invalid
    size_t length;  // bytes consumed (>= 1, so a loop always advances)
    bool valid;
};

// Decodes the code point starting at s[pos] (pos < s.size()). Rejects overlong forms,
// surrogates, code points above U+10FFFF and truncated sequences (consuming one byte then).
DecodedCodepoint decode_utf8(std::string_view s, size_t pos);

void append_utf8(std::string& out, char32_t cp);
std::string encode_utf8(char32_t cp);

bool is_valid_utf8(std::string_view s);

// Length of the longest prefix of s that does not end inside an incomplete (but so far valid)
// multi-byte sequence: what a streaming decoder may emit now.
size_t complete_utf8_prefix(std::string_view s);

// Replaces every invalid byte sequence with U+FFFD.
std::string sanitize_utf8(std::string_view s);

}  // namespace loom::tokenizer
