// Typed errors of the GGUF layer; each message names what is wrong and where.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "gguf/tensor_type.h"

namespace loom::gguf {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The file breaks the GGUF format. `field` names the structure (e.g. "tensor_infos[3].n_dims"),
// `offset` is the byte offset in the file where the offending item starts.
class FormatError : public Error {
public:
    FormatError(std::string field, uint64_t offset, const std::string& what)
        : Error("invalid GGUF: " + field + " at byte " + std::to_string(offset) + ": " + what),
          field_(std::move(field)),
          offset_(offset) {}
    const std::string& field() const { return field_; }
    uint64_t offset() const { return offset_; }

private:
    std::string field_;
    uint64_t offset_;
};

// A known tensor type that loom cannot compute with (IQ*, TQ*, ...).
class UnsupportedTypeError : public Error {
public:
    UnsupportedTypeError(TensorType type, const std::string& tensor)
        : Error("unsupported tensor type " + std::string(tensor_type_name(type)) +
                (tensor.empty() ? std::string() : " in " + tensor)),
          type_(type) {}
    TensorType type() const { return type_; }

private:
    TensorType type_;
};

// A metadata key is missing or holds another type than asked for.
class KeyError : public Error {
public:
    using Error::Error;
};

}  // namespace loom::gguf
