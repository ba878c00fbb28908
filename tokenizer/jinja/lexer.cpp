// Lexer: data and tag tokens with Jinja's whitespace control, trim_blocks and lstrip_blocks.
#include "tokenizer/jinja/lexer.h"

#include <algorithm>
#include <cctype>
#include <cstdint>

#include "tokenizer/jinja/text.h"
#include "tokenizer/utf8.h"

namespace loom::tokenizer::jinja {

LocationMap::LocationMap(std::string source) : source_(std::move(source)) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < source_.size(); ++i)
        if (source_[i] == '\n') line_starts_.push_back(i + 1);
}

SourceLocation LocationMap::at(size_t offset) const {
    offset = std::min(offset, source_.size());
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset) - 1;
    const size_t line_start = *it;
    const auto column = text::length(std::string_view(source_).substr(line_start, offset - line_start));
    return {static_cast<int>(it - line_starts_.begin()) + 1, static_cast<int>(column) + 1};
}

std::string normalize_source(std::string_view source) {
    std::string out;
    out.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
        if (source[i] == '\r') {
            out += '\n';
            if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
        } else {
            out += source[i];
        }
    }
    if (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
}

namespace {

class Lexer {
public:
    Lexer(const LocationMap& map, const Options& options) : map_(map), src_(map.source()), options_(options) {}

    std::vector<Token> run() {
        size_t pos = 0;
        bool line_starting = true;  // the text before the next tag starts a line
        while (pos < src_.size()) {
            const size_t start = find_tag(pos);
            if (start == std::string::npos) {
                emit(Token::Type::Data, std::string(src_.substr(pos)), pos);
                break;
            }
            const char kind = src_[start + 1];
            const char sign =
                start + 2 < src_.size() && (src_[start + 2] == '-' || src_[start + 2] == '+') ? src_[start + 2] : 0;
            std::string_view data = src_.substr(pos, start - pos);
            if (sign == '-') {
                data = rstrip(data);
            } else if (sign != '+' && options_.lstrip_blocks && kind != '{') {
                const size_t line_pos = data.rfind('\n') + 1;  // npos + 1 == 0
                if ((line_pos > 0 || line_starting) && line_pos < data.size() && all_space(data.substr(line_pos)))
                    data = data.substr(0, line_pos);
            }
            if (!data.empty()) emit(Token::Type::Data, std::string(data), pos);
            size_t p = start + 2 + (sign ? 1 : 0);
            if (kind == '#')
                p = comment_end(start, p);
            else
                p = tag(kind, start, p);
            line_starting = src_[p - 1] == '\n';
            pos = p;
        }
        emit(Token::Type::End, "", src_.size());
        return std::move(tokens_);
    }

private:
    [[noreturn]] void fail(size_t offset, const std::string& message) const {
        throw SyntaxError(map_.at(offset), message);
    }

    void emit(Token::Type type, std::string text, size_t offset) { tokens_.push_back({type, std::move(text), offset}); }

    size_t find_tag(size_t from) const {
        for (size_t i = from; i + 1 < src_.size(); ++i)
            if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
        return std::string::npos;
    }

    static bool all_space(std::string_view s) {
        for (size_t i = 0; i < s.size();) {
            const auto d = decode_utf8(s, i);
            if (!text::is_space(d.cp)) return false;
            i += d.length;
        }
        return true;
    }

    static std::string_view rstrip(std::string_view s) {
        const auto pos = text::offsets(s);
        size_t e = pos.size() - 1;
        while (e > 0 && text::is_space(decode_utf8(s, pos[e - 1]).cp)) --e;
        return s.substr(0, pos[e]);
    }

    size_t skip_space(size_t p) const {
        while (p < src_.size()) {
            const auto d = decode_utf8(src_, p);
            if (!text::is_space(d.cp)) break;
            p += d.length;
        }
        return p;
    }

    bool at(size_t p, std::string_view s) const { return src_.substr(p, s.size()) == s; }

    size_t comment_end(size_t start, size_t p) const {
        if (p == src_.size()) return p;  // Jinja silently drops a "{#" that ends the template
        for (; p < src_.size(); ++p) {
            if (at(p, "+#}")) return p + 3;
            if (at(p, "-#}")) return skip_space(p + 3);
            if (at(p, "#}")) return trim_newline(p + 2);
        }
        fail(start, "missing end of comment tag");
    }

    size_t trim_newline(size_t p) const {
        return options_.trim_blocks && p < src_.size() && src_[p] == '\n' ? p + 1 : p;
    }

    // Lexes the inside of {{ ... }} or {% ... %}; returns the offset after the closing tag.
    size_t tag(char kind, size_t start, size_t p) {
        const bool block = kind == '%';
        emit(block ? Token::Type::BlockBegin : Token::Type::VariableBegin, "", start);
        std::vector<char> open;  // brackets: a closing tag inside them is an operator
        while (true) {
            if (p >= src_.size())
                fail(start, std::string("unexpected end of template: missing '") + (block ? "%}" : "}}") + "'");
            if (open.empty()) {
                const Token::Type end = block ? Token::Type::BlockEnd : Token::Type::VariableEnd;
                size_t after = 0;
                if (block && at(p, "+%}"))
                    after = p + 3;  // keeps the newline
                else if (at(p, block ? "-%}" : "-}}"))
                    after = skip_space(p + 3);  // strips all whitespace
                else if (at(p, block ? "%}" : "}}"))
                    after = block ? trim_newline(p + 2) : p + 2;
                if (after) {
                    emit(end, "", p);
                    return after;
                }
            }
            const unsigned char c = static_cast<unsigned char>(src_[p]);
            if (text::is_space(decode_utf8(src_, p).cp)) {
                p += decode_utf8(src_, p).length;
            } else if (c >= '0' && c <= '9') {
                p = number(p);
            } else if (c == '_' || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c >= 0x80) {
                size_t e = p;
                while (e < src_.size()) {
                    const unsigned char d = static_cast<unsigned char>(src_[e]);
                    if (d == '_' || ((d | 0x20) >= 'a' && (d | 0x20) <= 'z') || (d >= '0' && d <= '9') || d >= 0x80)
                        ++e;
                    else
                        break;
                }
                emit(Token::Type::Name, std::string(src_.substr(p, e - p)), p);
                p = e;
            } else if (c == '\'' || c == '"') {
                p = string_literal(p);
            } else {
                p = op(p, open);
            }
        }
    }

    size_t digits(size_t p) const {
        while (p < src_.size() &&
               (std::isdigit(static_cast<unsigned char>(src_[p])) ||
                (src_[p] == '_' && p + 1 < src_.size() && std::isdigit(static_cast<unsigned char>(src_[p + 1])))))
            ++p;
        return p;
    }

    size_t number(size_t p) {
        auto is_digit = [&](size_t i) { return i < src_.size() && std::isdigit(static_cast<unsigned char>(src_[i])); };
        if (src_[p] == '0' && p + 2 < src_.size() && (src_[p + 1] == 'x' || src_[p + 1] == 'o' || src_[p + 1] == 'b')) {
            const char base = src_[p + 1];
            auto in_base = [&](char c) {
                return base == 'x' ? std::isxdigit(static_cast<unsigned char>(c)) != 0
                                   : (c >= '0' && c <= (base == 'o' ? '7' : '1'));
            };
            size_t e = p + 2;
            while (e < src_.size() &&
                   (in_base(src_[e]) || (src_[e] == '_' && e + 1 < src_.size() && in_base(src_[e + 1]))))
                ++e;
            if (e > p + 2) {
                std::string spelled;
                for (size_t i = p; i < e; ++i)
                    if (src_[i] != '_') spelled += src_[i];
                emit(Token::Type::Integer, spelled, p);
                return e;
            }
        }
        size_t e = digits(p);
        bool is_float = false;
        if (p == 0 || src_[p - 1] != '.') {
            if (e < src_.size() && src_[e] == '.' && is_digit(e + 1)) {
                e = digits(e + 1);
                is_float = true;
            }
            if (e < src_.size() && src_[e] == 'e') {
                size_t x = e + 1;
                if (x < src_.size() && (src_[x] == '+' || src_[x] == '-')) ++x;
                if (is_digit(x)) {
                    e = digits(x);
                    is_float = true;
                }
            }
        }
        std::string spelled;
        for (size_t i = p; i < e; ++i)
            if (src_[i] != '_') spelled += src_[i];
        emit(is_float ? Token::Type::Float : Token::Type::Integer, spelled, p);
        return e;
    }

    // Python's unicode-escape decoding of a string literal's body.
    size_t string_literal(size_t p) {
        const char quote = src_[p];
        std::string value;
        size_t i = p + 1;
        auto hex = [&](size_t at, int n) -> int64_t {
            int64_t v = 0;
            for (int k = 0; k < n; ++k) {
                if (at + k >= src_.size() || !std::isxdigit(static_cast<unsigned char>(src_[at + k]))) return -1;
                const char h = static_cast<char>(std::tolower(static_cast<unsigned char>(src_[at + k])));
                v = v * 16 + (h <= '9' ? h - '0' : h - 'a' + 10);
            }
            return v;
        };
        while (true) {
            if (i >= src_.size()) fail(p, "unterminated string literal");
            const char c = src_[i];
            if (c == quote) break;
            if (c != '\\') {
                value += c;
                ++i;
                continue;
            }
            if (i + 1 >= src_.size()) fail(p, "unterminated string literal");
            const char e = src_[i + 1];
            i += 2;
            switch (e) {
                case '\n': break;
                case '\\': value += '\\'; break;
                case '\'': value += '\''; break;
                case '"': value += '"'; break;
                case 'a': value += '\a'; break;
                case 'b': value += '\b'; break;
                case 'f': value += '\f'; break;
                case 'n': value += '\n'; break;
                case 'r': value += '\r'; break;
                case 't': value += '\t'; break;
                case 'v': value += '\v'; break;
                case 'x':
                case 'u':
                case 'U': {
                    const int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                    const int64_t cp = hex(i, n);
                    if (cp < 0 || cp > 0x10FFFF)
                        fail(i - 2, "invalid \\" + std::string(1, e) + " escape in string literal");
                    append_utf8(value, static_cast<char32_t>(cp));
                    i += n;
                    break;
                }
                default:
                    if (e >= '0' && e <= '7') {
                        int v = e - '0';
                        for (int k = 0; k < 2 && i < src_.size() && src_[i] >= '0' && src_[i] <= '7'; ++k, ++i)
                            v = v * 8 + (src_[i] - '0');
                        append_utf8(value, static_cast<char32_t>(v));
                    } else {
                        value += '\\';  // unknown escapes stay as written
                        value += e;
                    }
            }
        }
        emit(Token::Type::String, std::move(value), p);
        return i + 1;
    }

    size_t op(size_t p, std::vector<char>& open) {
        static constexpr std::string_view kTwo[] = {"//", "**", "==", "!=", ">=", "<="};
        for (auto two : kTwo)
            if (at(p, two)) {
                emit(Token::Type::Operator, std::string(two), p);
                return p + 2;
            }
        const char c = src_[p];
        if (std::string_view("+-/*%~[](){}<>=.:|,;").find(c) == std::string_view::npos)
            fail(p, std::string("unexpected character '") + c + "'");
        if (c == '(' || c == '[' || c == '{') open.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
        if (c == ')' || c == ']' || c == '}') {
            if (open.empty()) fail(p, std::string("unexpected '") + c + "'");
            if (open.back() != c) fail(p, std::string("unexpected '") + c + "', expected '" + open.back() + "'");
            open.pop_back();
        }
        emit(Token::Type::Operator, std::string(1, c), p);
        return p + 1;
    }

    const LocationMap& map_;
    std::string_view src_;
    const Options& options_;
    std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(const LocationMap& source, const Options& options) { return Lexer(source, options).run(); }

}  // namespace loom::tokenizer::jinja
