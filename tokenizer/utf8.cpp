// UTF-8 per RFC 3629: shortest forms only, no surrogates, nothing above U+10FFFF.
#include "tokenizer/utf8.h"

namespace loom::tokenizer {

namespace {
// Bytes of a sequence from its lead byte; 0 for a continuation byte or an impossible lead.
size_t sequence_length(unsigned char lead) {
    if (lead < 0x80) return 1;
    if (lead >= 0xC2 && lead <= 0xDF) return 2;
    if (lead >= 0xE0 && lead <= 0xEF) return 3;
    if (lead >= 0xF0 && lead <= 0xF4) return 4;
    return 0;
}

// The allowed range of the second byte depends on the lead (excludes overlongs and surrogates).
bool second_byte_ok(unsigned char lead, unsigned char b) {
    if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
    if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
    if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
    if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
    return b >= 0x80 && b <= 0xBF;
}
}  // namespace

DecodedCodepoint decode_utf8(std::string_view s, size_t pos) {
    const auto lead = static_cast<unsigned char>(s[pos]);
    const size_t n = sequence_length(lead);
    if (n == 1) return {lead, 1, true};
    if (n == 0 || pos + n > s.size()) return {kReplacementChar, 1, false};
    if (!second_byte_ok(lead, static_cast<unsigned char>(s[pos + 1]))) return {kReplacementChar, 1, false};
    char32_t cp = lead & (0xFF >> (n + 1));
    for (size_t i = 1; i < n; ++i) {
        const auto b = static_cast<unsigned char>(s[pos + i]);
        if ((b & 0xC0) != 0x80) return {kReplacementChar, 1, false};
        cp = (cp << 6) | (b & 0x3F);
    }
    return {cp, n, true};
}

void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = kReplacementChar;
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp <= 0x10FFFF) {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        append_utf8(out, kReplacementChar);
    }
}

std::string encode_utf8(char32_t cp) {
    std::string s;
    append_utf8(s, cp);
    return s;
}

bool is_valid_utf8(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const auto d = decode_utf8(s, i);
        if (!d.valid) return false;
        i += d.length;
    }
    return true;
}

size_t complete_utf8_prefix(std::string_view s) {
    // Only the last 3 bytes can belong to an unfinished sequence.
    const size_t start = s.size() > 3 ? s.size() - 3 : 0;
    for (size_t i = start; i < s.size(); ++i) {
        const auto lead = static_cast<unsigned char>(s[i]);
        const size_t n = sequence_length(lead);
        if (n <= 1 || i + n <= s.size()) continue;
        // A multi-byte lead whose sequence runs past the end: hold it back if what is there so far
        // could still become valid; otherwise it is garbage that waiting will not fix.
        bool viable = i + 1 >= s.size() || second_byte_ok(lead, static_cast<unsigned char>(s[i + 1]));
        for (size_t k = i + 2; k < s.size() && viable; ++k) viable = (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80;
        if (viable) return i;
    }
    return s.size();
}

std::string sanitize_utf8(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        const auto d = decode_utf8(s, i);
        if (d.valid)
            out.append(s.substr(i, d.length));
        else
            append_utf8(out, kReplacementChar);
        i += d.length;
    }
    return out;
}

}  // namespace loom::tokenizer
