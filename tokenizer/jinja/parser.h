// Parser: turns the token stream into statements and expressions with Jinja's grammar and precedence.
#pragma once

#include <string_view>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/jinja.h"
#include "tokenizer/jinja/lexer.h"

namespace loom::tokenizer::jinja {

// A parsed template: the statements and the source they came from (for error locations).
struct Program {
    LocationMap source;
    Body body;
};

// Deepest nesting of blocks or expression subtrees accepted; deeper input is a SyntaxError, so
// neither parsing nor rendering can exhaust the stack.
constexpr int kMaxNesting = 128;

// Throws SyntaxError or UnknownFilterError.
std::unique_ptr<Program> parse(std::string_view source, const Options& options);

}  // namespace loom::tokenizer::jinja
