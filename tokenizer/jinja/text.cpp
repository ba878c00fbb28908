// Python str operations on UTF-8 text, by code point.
#include "tokenizer/jinja/text.h"

#include <algorithm>

#include "tokenizer/jinja/value.h"
#include "tokenizer/utf8.h"

namespace loom::tokenizer::jinja::text {

bool is_space(char32_t cp) {
    switch (cp) {
        case 0x09:
        case 0x0A:
        case 0x0B:
        case 0x0C:
        case 0x0D:
        case 0x1C:
        case 0x1D:
        case 0x1E:
        case 0x1F:
        case 0x20:
        case 0x85:
        case 0xA0:
        case 0x1680:
        case 0x2028:
        case 0x2029:
        case 0x202F:
        case 0x205F:
        case 0x3000: return true;
        default: return cp >= 0x2000 && cp <= 0x200A;
    }
}

namespace {

// Pairs (lower, upper) that map one to one; ranges are stepped where the blocks alternate.
bool latin_ext_a_pair(char32_t cp) {
    // U+0100..U+017F alternate upper/lower, except the dotless i (U+0130/U+0131), the kra (U+0138),
    // U+0149 and the long s (U+017F), and the range U+0139..U+0148 / U+0179..U+017E which start odd.
    return cp >= 0x100 && cp <= 0x17E && cp != 0x130 && cp != 0x131 && cp != 0x138 && cp != 0x149;
}
bool odd_start(char32_t cp) { return (cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E); }

}  // namespace

char32_t to_upper(char32_t cp) {
    if (cp >= 'a' && cp <= 'z') return cp - 32;
    if (cp < 0x80) return cp;
    if ((cp >= 0xE0 && cp <= 0xFE && cp != 0xF7)) return cp - 32;
    if (cp == 0xFF) return 0x178;
    if (latin_ext_a_pair(cp)) {
        const bool is_lower = odd_start(cp) ? (cp % 2 == 0) : (cp % 2 == 1);
        return is_lower ? cp - 1 : cp;
    }
    if (cp >= 0x3B1 && cp <= 0x3C9 && cp != 0x3C2) return cp - 32;
    if (cp == 0x3C2) return 0x3A3;
    if (cp >= 0x430 && cp <= 0x44F) return cp - 32;
    if (cp >= 0x450 && cp <= 0x45F) return cp - 80;
    return cp;
}

char32_t to_lower(char32_t cp) {
    if (cp >= 'A' && cp <= 'Z') return cp + 32;
    if (cp < 0x80) return cp;
    if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) return cp + 32;
    if (cp == 0x178) return 0xFF;
    if (latin_ext_a_pair(cp)) {
        const bool is_upper = odd_start(cp) ? (cp % 2 == 1) : (cp % 2 == 0);
        return is_upper ? cp + 1 : cp;
    }
    if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) return cp + 32;
    if (cp >= 0x410 && cp <= 0x42F) return cp + 32;
    if (cp >= 0x400 && cp <= 0x40F) return cp + 80;
    return cp;
}

bool is_cased(char32_t cp) { return to_upper(cp) != cp || to_lower(cp) != cp || cp == 0xDF || cp == 0x3C2; }

std::vector<char32_t> decode(std::string_view s) {
    std::vector<char32_t> out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        const auto d = decode_utf8(s, i);
        out.push_back(d.cp);
        i += d.length;
    }
    return out;
}

std::string encode(const std::vector<char32_t>& cps) {
    std::string out;
    out.reserve(cps.size());
    for (char32_t cp : cps) append_utf8(out, cp);
    return out;
}

size_t length(std::string_view s) {
    size_t n = 0;
    for (size_t i = 0; i < s.size(); i += decode_utf8(s, i).length) ++n;
    return n;
}

std::vector<size_t> offsets(std::string_view s) {
    std::vector<size_t> out;
    for (size_t i = 0; i < s.size(); i += decode_utf8(s, i).length) out.push_back(i);
    out.push_back(s.size());
    return out;
}

namespace {
template <class F>
std::string map_code_points(std::string_view s, F f) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        const auto d = decode_utf8(s, i);
        if (d.valid)
            append_utf8(out, f(d.cp));
        else
            out.append(s.substr(i, d.length));  // keep bytes we cannot decode as they are
        i += d.length;
    }
    return out;
}
}  // namespace

std::string upper(std::string_view s) { return map_code_points(s, to_upper); }
std::string lower(std::string_view s) { return map_code_points(s, to_lower); }

std::string capitalize(std::string_view s) {
    bool first = true;
    return map_code_points(s, [&](char32_t cp) {
        const char32_t r = first ? to_upper(cp) : to_lower(cp);
        first = false;
        return r;
    });
}

std::string title(std::string_view s) {
    bool previous_cased = false;
    return map_code_points(s, [&](char32_t cp) {
        const char32_t r = previous_cased ? to_lower(cp) : to_upper(cp);
        previous_cased = is_cased(cp);
        return r;
    });
}

std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
    const auto cps = decode(s);
    std::vector<char32_t> set;
    if (chars) set = decode(*chars);
    auto strippable = [&](char32_t cp) {
        return chars ? std::find(set.begin(), set.end(), cp) != set.end() : is_space(cp);
    };
    const auto pos = offsets(s);
    size_t b = 0, e = cps.size();
    if (left)
        while (b < e && strippable(cps[b])) ++b;
    if (right)
        while (e > b && strippable(cps[e - 1])) --e;
    return std::string(s.substr(pos[b], pos[e] - pos[b]));
}

std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit,
                               bool from_right) {
    std::vector<std::string> parts;
    if (sep) {
        if (sep->empty()) throw OperationError{OperationError::Kind::Value, "empty separator"};
        if (!from_right) {
            size_t start = 0;
            while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
                const size_t at = s.find(*sep, start);
                if (at == std::string_view::npos) break;
                parts.emplace_back(s.substr(start, at - start));
                start = at + sep->size();
            }
            parts.emplace_back(s.substr(start));
        } else {
            size_t end = s.size();
            while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
                if (end < sep->size()) break;
                const size_t at = s.rfind(*sep, end - sep->size());
                if (at == std::string_view::npos) break;
                parts.emplace_back(s.substr(at + sep->size(), end - at - sep->size()));
                end = at;
            }
            parts.emplace_back(s.substr(0, end));
            std::reverse(parts.begin(), parts.end());
        }
        return parts;
    }
    // Whitespace runs separate fields; leading/trailing whitespace yields no empty field.
    const auto cps = decode(s);
    const auto pos = offsets(s);
    const int64_t n = static_cast<int64_t>(cps.size());
    if (!from_right) {
        int64_t i = 0;
        while (true) {
            while (i < n && is_space(cps[i])) ++i;
            if (i >= n) break;
            if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit) {
                int64_t e = n;
                while (e > i && is_space(cps[e - 1])) --e;
                parts.emplace_back(s.substr(pos[i], pos[e] - pos[i]));
                break;
            }
            int64_t j = i;
            while (j < n && !is_space(cps[j])) ++j;
            parts.emplace_back(s.substr(pos[i], pos[j] - pos[i]));
            i = j;
        }
    } else {
        int64_t i = n;
        while (true) {
            while (i > 0 && is_space(cps[i - 1])) --i;
            if (i <= 0) break;
            if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit) {
                int64_t b = 0;
                while (b < i && is_space(cps[b])) ++b;
                parts.emplace_back(s.substr(pos[b], pos[i] - pos[b]));
                break;
            }
            int64_t j = i;
            while (j > 0 && !is_space(cps[j - 1])) --j;
            parts.emplace_back(s.substr(pos[j], pos[i] - pos[j]));
            i = j;
        }
        std::reverse(parts.begin(), parts.end());
    }
    return parts;
}

std::vector<std::string> splitlines(std::string_view s) {
    const auto cps = decode(s);
    const auto pos = offsets(s);
    std::vector<std::string> lines;
    size_t start = 0;
    for (size_t i = 0; i < cps.size(); ++i) {
        const char32_t c = cps[i];
        const bool boundary = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E ||
                              c == 0x85 || c == 0x2028 || c == 0x2029;
        if (!boundary) continue;
        lines.emplace_back(s.substr(pos[start], pos[i] - pos[start]));
        if (c == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') ++i;
        start = i + 1;
    }
    if (start < cps.size()) lines.emplace_back(s.substr(pos[start]));
    return lines;
}

std::string replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count) {
    std::string out;
    int64_t done = 0;
    if (old.empty()) {
        // Python inserts the replacement before every code point and at the end.
        const auto pos = offsets(s);
        for (size_t i = 0; i + 1 < pos.size(); ++i) {
            if (count < 0 || done < count) {
                out.append(repl);
                ++done;
            }
            out.append(s.substr(pos[i], pos[i + 1] - pos[i]));
        }
        if (count < 0 || done < count) out.append(repl);
        return out;
    }
    size_t start = 0;
    while (count < 0 || done < count) {
        const size_t at = s.find(old, start);
        if (at == std::string_view::npos) break;
        out.append(s.substr(start, at - start));
        out.append(repl);
        start = at + old.size();
        ++done;
    }
    out.append(s.substr(start));
    return out;
}

std::vector<int64_t> slice_indices(int64_t length, std::optional<int64_t> start, std::optional<int64_t> stop,
                                   std::optional<int64_t> step) {
    const int64_t st = step.value_or(1);
    if (st == 0) throw OperationError{OperationError::Kind::Value, "slice step cannot be zero"};
    auto clamp = [&](std::optional<int64_t> v, int64_t dflt, int64_t lo, int64_t hi) {
        if (!v) return dflt;
        int64_t x = *v;
        if (x < 0) x += length;
        return std::clamp(x, lo, hi);
    };
    std::vector<int64_t> out;
    if (st > 0) {
        const int64_t b = clamp(start, 0, 0, length), e = clamp(stop, length, 0, length);
        for (int64_t i = b; i < e; i += st) out.push_back(i);
    } else {
        const int64_t b = clamp(start, length - 1, -1, length - 1), e = clamp(stop, -1, -1, length - 1);
        for (int64_t i = b; i > e; i += st) out.push_back(i);
    }
    return out;
}

}  // namespace loom::tokenizer::jinja::text
