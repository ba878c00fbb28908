// Template and error types of the public Jinja interface.
#include "tokenizer/jinja/evaluator.h"
#include "tokenizer/jinja/jinja.h"
#include "tokenizer/jinja/parser.h"

namespace loom::tokenizer::jinja {

Error::Error(SourceLocation where, std::string message)
    : std::runtime_error(std::to_string(where.line) + ":" + std::to_string(where.column) + ": " + message),
      where_(where),
      message_(std::move(message)) {}

Template::Template(std::string_view source, Options options) : program_(parse(source, options)) {}
Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const Variables& variables) const { return render_program(*program_, variables); }

}  // namespace loom::tokenizer::jinja
