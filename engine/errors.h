// Typed errors of the engine layer; messages name the tensor, key or request field at fault.
#pragma once

#include <stdexcept>
#include <string>

namespace loom::engine {

// The model file does not describe a model loom can run (unknown architecture, missing or
// mis-shaped tensor, unsupported tensor type).
class ModelError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A generation request that cannot be served (prompt longer than the context, bad parameter).
class RequestError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

}  // namespace loom::engine
