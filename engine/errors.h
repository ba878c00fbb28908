// Typed errors of the engine layer; messages name the tensor, key or request field at fault.
#pragma once

#include <string>

#include "core/errors.h"

namespace loom::engine {

using loom::DeviceError;
using loom::EngineError;

// The model file does not describe a model loom can run (unknown architecture, missing or
// mis-shaped tensor, unsupported tensor type).
class ModelError : public EngineError {
public:
    using EngineError::EngineError;
};

// A generation request that cannot be served (prompt longer than the context, bad parameter).
// field() names the request field at fault ("prompt", "max_tokens", "top_p", ...; empty when the
// fault is no single field's), detail() is the message without it.
class RequestError : public EngineError {
public:
    explicit RequestError(const std::string& what) : EngineError(what), detail_(what) {}
    RequestError(std::string field, std::string detail)
        : EngineError(field + ": " + detail), field_(std::move(field)), detail_(std::move(detail)) {}
    const std::string& field() const { return field_; }
    const std::string& detail() const { return detail_; }

protected:
    RequestError(std::string field, std::string detail, const std::string& what)
        : EngineError(what), field_(std::move(field)), detail_(std::move(detail)) {}

private:
    std::string field_, detail_;
};

// The prompt leaves no room in the context for a generated token (OpenAI's context_length_exceeded).
class ContextLengthError : public RequestError {
public:
    using RequestError::RequestError;
};

}  // namespace loom::engine
