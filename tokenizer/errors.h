// Typed errors of the tokenizer layer; each message names what is wrong and with which value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace loom::tokenizer {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// tokenizer.ggml.model names a tokenizer loom does not implement (e.g. "bert", "t5", "rwkv").
class UnsupportedModelError : public Error {
public:
    explicit UnsupportedModelError(std::string model)
        : Error("unsupported tokenizer model '" + model + "' (tokenizer.ggml.model; loom supports 'gpt2' and 'llama')"),
          model_(std::move(model)) {}
    const std::string& model() const { return model_; }

private:
    std::string model_;
};

// The tokenizer metadata is missing or inconsistent. `key` names the metadata key at fault.
class VocabularyError : public Error {
public:
    VocabularyError(std::string key, const std::string& what)
        : Error("invalid tokenizer metadata " + key + ": " + what), key_(std::move(key)) {}
    const std::string& key() const { return key_; }

private:
    std::string key_;
};

// A token id outside [0, vocab_size).
class InvalidTokenIdError : public Error {
public:
    InvalidTokenIdError(int64_t id, size_t vocab_size)
        : Error("token id " + std::to_string(id) + " is out of range (the vocabulary has " +
                std::to_string(vocab_size) + " tokens)"),
          id_(id),
          vocab_size_(vocab_size) {}
    int64_t id() const { return id_; }
    size_t vocab_size() const { return vocab_size_; }

private:
    int64_t id_;
    size_t vocab_size_;
};

}  // namespace loom::tokenizer
