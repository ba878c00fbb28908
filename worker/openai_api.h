// The OpenAI-compatible request and response formats: /v1/completions and /v1/chat/completions
// bodies checked field by field into a GenerationRequest, and the JSON / SSE chunks sent back in
// OpenAI's shapes (usage, logprobs), plus the bodies of /tokenize, /detokenize and /v1/models.
#pragma once

#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "worker/engine_loop.h"

namespace loom::gguf {
class File;
}

namespace loom::worker {

// A request the API refuses: the HTTP status, OpenAI's error type, the offending parameter ("" when
// the whole body is at fault) and OpenAI's error code where it has one ("model_not_found", ...).
class ApiError : public std::runtime_error {
public:
    ApiError(int status, std::string param, const std::string& message, std::string type = "invalid_request_error",
             std::string code = {})
        : std::runtime_error(message),
          status_(status),
          param_(std::move(param)),
          type_(std::move(type)),
          code_(std::move(code)) {}
    int status() const { return status_; }
    const std::string& param() const { return param_; }
    const std::string& type() const { return type_; }
    const std::string& code() const { return code_; }

private:
    int status_;
    std::string param_;
    std::string type_;
    std::string code_;
};

enum class Endpoint { completions, chat };

// A checked generation request and how its answer is shaped.
struct ApiRequest {
    Endpoint endpoint = Endpoint::completions;
    GenerationRequest generation;  // sampling.seed: the request's, or a fresh random one when it gave none
    bool stream = false;
    bool include_usage = false;     // stream_options.include_usage: a last chunk with usage
    bool logprobs = false;          // per-token log-probabilities in the answer
    int top_logprobs = 0;           // alternatives per token when logprobs
    bool chat_logprobs = false;     // completions only (loom's extension): logprobs in the chat shape
    bool return_token_ids = false;  // vLLM's extension: prompt_token_ids and each choice's token_ids
};

// What the API knows about the served model. Thread-safe after construction.
class OpenAiApi {
public:
    // model_name: the id clients send as "model" (the file's stem). The file's path is never shown
    // to clients nor accepted from them.
    OpenAiApi(const gguf::File& file, const tokenizer::Tokenizer& tokenizer, std::string model_name, int n_ctx);

    const std::string& model_name() const { return model_name_; }
    int n_ctx() const { return n_ctx_; }
    const tokenizer::Tokenizer& tokenizer() const { return tokenizer_; }

    // Parses and checks a request body. ApiError: 400 (bad JSON or a number beyond a double, a wrong
    // type, a value out of range, n > 1, stream_options without stream, a prompt or max_tokens that
    // does not fit the context: code context_length_exceeded, missing prompt/messages), 404 (an
    // unknown model: code model_not_found). Without "seed" a fresh random seed is drawn. Parameters: model, prompt |
    // messages, max_tokens (chat also max_completion_tokens), temperature, top_p, top_k, min_p, presence_penalty,
    // frequency_penalty, repetition_penalty, seed, stop, logit_bias, logprobs (+ top_logprobs for chat), n, stream,
    // stream_options, ignore_eos and return_token_ids (vLLM's extensions), resume_tokens (loom's:
    // 0 .. prompt tokens - 1), chat_logprobs (loom's, completions: logprobs shaped as chat's), echo/suffix (refused
    // when used), user; other fields are ignored, as vLLM does.
    ApiRequest parse(Endpoint endpoint, std::string_view body) const;

    // POST /tokenize {"prompt": str, "add_special_tokens": bool} or {"messages": [...],
    // "add_generation_prompt": bool} -> {"tokens", "count", "max_model_len"}.
    nlohmann::json tokenize(std::string_view body) const;
    // POST /detokenize {"tokens": [int]} -> {"prompt": text}.
    nlohmann::json detokenize(std::string_view body) const;
    // GET /v1/models.
    nlohmann::json models(int64_t created) const;
    // GET /v1/models/{id}: the model object, or ApiError 404 model_not_found.
    nlohmann::json model(const std::string& id, int64_t created) const;

    // The chat template rendered for `messages` (checked: a non-empty array of {role, content},
    // content a string or text parts) and tokenized; ApiError with param "messages".
    std::vector<int32_t> chat_prompt(const nlohmann::json& messages, bool add_generation_prompt) const;

    // A token's text in logprobs entries (invalid UTF-8 replaced by U+FFFD).
    std::string token_text(int32_t id) const;

private:
    nlohmann::json parse_body(std::string_view body) const;
    void check_model(const nlohmann::json& body) const;
    void check_room(bool chat, int n_prompt, const nlohmann::json& body, ApiRequest& r) const;
    std::vector<int32_t> completion_prompt(const nlohmann::json& prompt) const;

    const tokenizer::Tokenizer& tokenizer_;
    std::string model_name_;
    int n_ctx_;
    std::vector<int32_t> stop_ids_;
    tokenizer::ChatTemplate template_;
    std::string bos_text_, eos_text_;
    mutable std::mutex template_mutex_;  // renders one at a time (the Jinja evaluator is not documented thread-safe)
};

// Builds one request's answer from its stream events: SSE chunks, or one whole JSON object.
class ResponseWriter {
public:
    // id: "cmpl-…" / "chatcmpl-…", the id in every chunk; POST /cancel accepts it.
    ResponseWriter(const OpenAiApi& api, const ApiRequest& request, std::string id, int64_t created);

    const std::string& id() const { return id_; }

    // Streaming: what to send before any event (chat: the assistant role chunk; completions: nothing).
    std::string stream_start();
    // Streaming: the SSE lines for one event. The finished event adds the chunk with finish_reason
    // (an error event instead sends {"error": {...}}), the usage chunk when asked, and data: [DONE].
    std::string stream_event(const StreamEvent& event);

    // Whole answers: collects events; after the finished one, whole() is the JSON and failed()
    // says whether it ended in an engine error (then whole() is the {"error"} body).
    void add(const StreamEvent& event);
    bool failed() const { return failed_; }
    nlohmann::json whole() const;

private:
    nlohmann::json choice_logprobs(const std::vector<engine::SampledToken>& tokens);
    nlohmann::json chunk(nlohmann::json choice);
    nlohmann::json usage() const;
    static std::string sse(const nlohmann::json& j);

    const OpenAiApi& api_;
    Endpoint endpoint_;
    bool chat_shape_;  // logprobs as chat's {"content": [...]}: the chat endpoint, or chat_logprobs
    bool logprobs_;
    int top_logprobs_;
    bool include_usage_;
    bool return_token_ids_;
    std::vector<int32_t> prompt_ids_;  // return_token_ids: sent once, in the first chunk (or the whole answer)
    bool prompt_ids_sent_ = false;
    std::vector<int32_t> token_ids_;  // whole answers with return_token_ids: every generated id
    std::string id_;
    int64_t created_;
    std::string text_;                // whole answers: the text so far
    nlohmann::json logprob_entries_;  // whole answers: the choice's logprobs (null when not asked)
    size_t text_offset_ = 0;          // completions logprobs: where the next token starts in the text
    std::string finish_reason_;
    std::string error_;
    bool failed_ = false;
    int prompt_tokens_ = 0, completion_tokens_ = 0;
};

// OpenAI's error object {"error": {"message", "type", "param", "code"}}.
nlohmann::json error_body(const std::string& message, const std::string& type, const std::string& param = {},
                          const std::string& code = {});

// The prefix of a request id on this endpoint: "chatcmpl-" or "cmpl-".
const char* id_prefix(Endpoint endpoint);

}  // namespace loom::worker
