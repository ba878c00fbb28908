// Lexer: splits template text into data and tag tokens, applying whitespace control
// ({%- -%}, {{- -}}, {#- -#}), trim_blocks and lstrip_blocks exactly as Jinja's lexer does.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/jinja/jinja.h"

namespace loom::tokenizer::jinja {

struct Token {
    enum class Type {
        Data,
        VariableBegin,
        VariableEnd,
        BlockBegin,
        BlockEnd,
        Name,
        String,
        Integer,
        Float,
        Operator,
        End
    };
    Type type;
    std::string text;   // Data: the text; String: the decoded value; Name, numbers, operators: the spelling
    size_t offset = 0;  // byte offset in the normalized source
};

// Maps byte offsets of the normalized source to line and column.
class LocationMap {
public:
    explicit LocationMap(std::string source);
    SourceLocation at(size_t offset) const;
    const std::string& source() const { return source_; }

private:
    std::string source_;
    std::vector<size_t> line_starts_;
};

// Jinja normalizes "\r\n" and "\r" to "\n" and drops one trailing newline (keep_trailing_newline=False).
std::string normalize_source(std::string_view source);

// Throws SyntaxError.
std::vector<Token> tokenize(const LocationMap& source, const Options& options);

}  // namespace loom::tokenizer::jinja
