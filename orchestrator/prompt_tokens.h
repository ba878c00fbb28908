// PromptTokenizers: each served model's tokenizer and chat template (from its GGUF's metadata), and
// the first token ids of a request's prompt as the worker will lay them out, for prefix routing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <shared_mutex>
#include <string>
#include <vector>

namespace loom::orchestrator {

struct PromptIds {
    enum class Status { ok, no_tokenizer, no_prompt };
    Status status = Status::no_tokenizer;
    std::string model;         // the model whose tokenizer made them
    std::vector<int32_t> ids;  // at most kMaxTokens, the start of the prompt
    int64_t count = 0;         // the prompt's tokens: exact unless its text was cut (then at least that)
};

class PromptTokenizers {
public:
    // Only the start of a prompt matters for routing, and tokenizing costs time on the request path:
    // at most this many bytes of text are tokenized, at most this many ids are kept. Where the text
    // was cut, the last 16 ids are dropped too (the token spanning the cut may differ in the whole).
    static constexpr size_t kMaxTextBytes = 2 * 1024;
    static constexpr size_t kMaxTokens = 1024;

    PromptTokenizers();
    ~PromptTokenizers();

    // Loads the tokenizer, chat template and special tokens of `gguf` (metadata only; tensors are
    // never read) for workers serving `model` (the worker's name for it: the file's stem). Replaces
    // an earlier one. Throws gguf::FormatError, tokenizer::Error or std::system_error. Thread-safe.
    void add(const std::string& model, const std::filesystem::path& gguf);
    bool has(const std::string& model) const;

    // The prompt's first ids: completions' `prompt` (text encoded with BOS as the worker does, or
    // ids), chat's `messages` rendered by the model's chat template. `model` "" means the one model
    // with a tokenizer, if there is exactly one. no_prompt: the body has no prompt the worker would
    // accept (it will answer 400). Thread-safe.
    PromptIds tokenize(const std::string& model, const nlohmann::json& body, bool chat) const;

private:
    struct Model;
    std::shared_ptr<const Model> find(const std::string& model, std::string& name) const;

    mutable std::shared_mutex mu_;
    std::map<std::string, std::shared_ptr<const Model>> models_;
};

}  // namespace loom::orchestrator
