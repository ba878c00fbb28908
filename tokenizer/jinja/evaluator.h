// Evaluator: renders a parsed template with Jinja's scoping (loop bodies get their own scope,
// `if` does not, namespaces carry values out of loops) and Python's operator semantics.
#pragma once

#include <string>

#include "tokenizer/jinja/jinja.h"
#include "tokenizer/jinja/parser.h"

namespace loom::tokenizer::jinja {

// Deepest evaluation nesting (expressions, macro calls) before a RenderError; bounds stack use.
constexpr int kMaxRenderDepth = 512;

// Throws RenderError or RaisedException.
std::string render_program(const Program& program, const Variables& variables);

}  // namespace loom::tokenizer::jinja
