// The byte-level alphabet of GPT-2 style BPE: each byte maps to one printable code point so that
// any byte string becomes token text ("Ġ" stands for the space byte), and back.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace loom::tokenizer {

// The code point standing for byte b.
char32_t byte_to_code_point(uint8_t b);

// The byte a code point stands for, or nothing for code points outside the alphabet.
std::optional<uint8_t> code_point_to_byte(char32_t cp);

// UTF-8 of the alphabet's code point for every byte of `bytes`.
std::string byte_level_encode(std::string_view bytes);

// The bytes a token text stands for; nothing if any of its characters is outside the alphabet
// (added tokens such as "<｜fim▁hole｜>" hold raw text).
std::optional<std::string> byte_level_decode(std::string_view text);

}  // namespace loom::tokenizer
