// The GPT-2 byte <-> code point table: printable Latin-1 bytes stand for themselves; the 68 others
// (controls, space, DEL, NBSP, soft hyphen) take U+0100 onwards in byte order.
#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/utf8.h"

namespace loom::tokenizer {

namespace {

bool stands_for_itself(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct Alphabet {
    std::array<char32_t, 256> code_point{};
    std::array<int16_t, 512> byte{};  // every code point of the alphabet is below U+0200

    Alphabet() {
        byte.fill(-1);
        char32_t next = 0x100;
        for (unsigned b = 0; b < 256; ++b) {
            code_point[b] = stands_for_itself(b) ? char32_t(b) : next++;
            byte[code_point[b]] = static_cast<int16_t>(b);
        }
    }
};

const Alphabet& alphabet() {
    static const Alphabet a;
    return a;
}

}  // namespace

char32_t byte_to_code_point(uint8_t b) { return alphabet().code_point[b]; }

std::optional<uint8_t> code_point_to_byte(char32_t cp) {
    if (cp >= alphabet().byte.size() || alphabet().byte[cp] < 0) return std::nullopt;
    return static_cast<uint8_t>(alphabet().byte[cp]);
}

std::string byte_level_encode(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size() * 2);
    for (const char c : bytes) append_utf8(out, byte_to_code_point(static_cast<uint8_t>(c)));
    return out;
}

std::optional<std::string> byte_level_decode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        const auto d = decode_utf8(text, i);
        const auto b = d.valid ? code_point_to_byte(d.cp) : std::nullopt;
        if (!b) return std::nullopt;
        out += static_cast<char>(*b);
        i += d.length;
    }
    return out;
}

}  // namespace loom::tokenizer
