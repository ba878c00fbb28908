// Public interface of loom's Jinja-subset interpreter (enough for Hugging Face chat templates):
// parse a template once, render it with variables many times. Errors name line and column.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace loom::tokenizer::jinja {

struct SourceLocation {
    int line = 1;    // 1-based
    int column = 1;  // 1-based, in code points
};

// Base of every template error; what() is "LINE:COLUMN: MESSAGE".
class Error : public std::runtime_error {
public:
    Error(SourceLocation where, std::string message);
    SourceLocation location() const { return where_; }
    const std::string& message() const { return message_; }

private:
    SourceLocation where_;
    std::string message_;
};

// The template text is malformed (lexing or parsing).
class SyntaxError : public Error {
    using Error::Error;
};
// A filter or test name that the interpreter does not know.
class UnknownFilterError : public Error {
    using Error::Error;
};
// Rendering failed: a type error, use of an undefined value, a bad argument, a depth limit.
class RenderError : public Error {
    using Error::Error;
};
// The template called raise_exception(message); message() is exactly the template's message.
class RaisedException : public Error {
    using Error::Error;
};

struct Options {
    bool trim_blocks = true;    // drop the first newline after a block tag
    bool lstrip_blocks = true;  // drop spaces and tabs before a block tag at the start of a line
};

// Variables visible to a render, in addition to the built-in globals (range, namespace, dict).
using Variables = std::vector<std::pair<std::string, Value>>;

struct Program;

class Template {
public:
    // Throws SyntaxError or UnknownFilterError.
    explicit Template(std::string_view source, Options options = {});
    ~Template();
    Template(Template&&) noexcept;
    Template& operator=(Template&&) noexcept;

    // Throws RenderError or RaisedException.
    std::string render(const Variables& variables) const;

private:
    std::unique_ptr<Program> program_;
};

}  // namespace loom::tokenizer::jinja
