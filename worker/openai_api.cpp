// OpenAI request checking (one helper per JSON type, each error naming its parameter) and response
// building (text_completion / chat.completion objects and their stream chunks).
#include "worker/openai_api.h"

#include <cmath>
#include <cstdio>
#include <limits>

#include "engine/backend.h"
#include "engine/generator.h"
#include "gguf/reader.h"
#include "tokenizer/jinja/jinja.h"
#include "tokenizer/utf8.h"
#include "http/secure_random.h"

namespace loom::worker {

using http::random_u64;

using nlohmann::json;

namespace {

constexpr int kMaxStopStrings = 16;
constexpr int kDefaultCompletionTokens = 16;  // OpenAI's default for /v1/completions

std::string type_name(const json& v) {
    if (v.is_boolean()) return "a boolean";
    if (v.is_number()) return "a number";
    if (v.is_string()) return "a string";
    if (v.is_array()) return "an array";
    if (v.is_object()) return "an object";
    return "null";
}

ApiError bad(const std::string& param, const std::string& message) { return ApiError(400, param, message); }

// A field that is absent or null means "the default".
const json* field(const json& body, const char* name) {
    const auto it = body.find(name);
    if (it == body.end() || it->is_null()) return nullptr;
    return &*it;
}

double number_in(const json& body, const char* name, double fallback, double lo, double hi, bool lo_open = false) {
    const json* v = field(body, name);
    if (!v) return fallback;
    if (!v->is_number() || v->is_boolean())
        throw bad(name, std::string(name) + " must be a number, not " + type_name(*v));
    const double x = v->get<double>();
    if (!std::isfinite(x) || x > hi || (lo_open ? x <= lo : x < lo)) {
        char range[96];
        std::snprintf(range, sizeof range, "%s%g, %g]", lo_open ? "(" : "[", lo, hi);
        throw bad(name, std::string(name) + " must be in " + range + ", not " + v->dump());
    }
    return x;
}

// An integer (an integral float such as 5.0 is taken too, as JSON does not tell them apart).
int64_t integer(const json& v, const std::string& name) {
    if (v.is_number_integer()) {
        if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
            throw bad(name, name + " is out of range: " + v.dump());
        return v.get<int64_t>();
    }
    if (v.is_number_float()) {
        const double x = v.get<double>();
        if (std::isfinite(x) && std::floor(x) == x && std::abs(x) < 9.0e15) return static_cast<int64_t>(x);
    }
    throw bad(name, name + " must be an integer, not " + (v.is_number() ? v.dump() : type_name(v)));
}

int64_t integer_in(const json& body, const char* name, int64_t fallback, int64_t lo, int64_t hi) {
    const json* v = field(body, name);
    if (!v) return fallback;
    const int64_t x = integer(*v, name);
    if (x < lo || x > hi)
        throw bad(name, std::string(name) + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                            "], not " + std::to_string(x));
    return x;
}

bool boolean(const json& body, const char* name, bool fallback) {
    const json* v = field(body, name);
    if (!v) return fallback;
    if (!v->is_boolean()) throw bad(name, std::string(name) + " must be a boolean, not " + type_name(*v));
    return v->get<bool>();
}

std::vector<std::string> stop_strings(const json& body) {
    const json* v = field(body, "stop");
    if (!v) return {};
    std::vector<std::string> out;
    if (v->is_string()) {
        out.push_back(v->get<std::string>());
    } else if (v->is_array()) {
        if (v->size() > kMaxStopStrings)
            throw bad("stop", "stop holds at most " + std::to_string(kMaxStopStrings) + " strings, not " +
                                  std::to_string(v->size()));
        for (const auto& s : *v) {
            if (!s.is_string()) throw bad("stop", "stop must hold strings, not " + type_name(s));
            out.push_back(s.get<std::string>());
        }
    } else {
        throw bad("stop", "stop must be a string or an array of strings, not " + type_name(*v));
    }
    for (const auto& s : out)
        if (s.empty()) throw bad("stop", "stop strings must not be empty");
    return out;
}

std::vector<std::pair<int32_t, float>> logit_bias(const json& body, int32_t n_vocab) {
    const json* v = field(body, "logit_bias");
    if (!v) return {};
    if (!v->is_object()) throw bad("logit_bias", "logit_bias must be an object {token id: bias}, not " + type_name(*v));
    if (v->size() > static_cast<size_t>(engine::kMaxLogitBiasEntries))
        throw bad("logit_bias", "logit_bias holds at most " + std::to_string(engine::kMaxLogitBiasEntries) +
                                    " entries, not " + std::to_string(v->size()));
    std::vector<std::pair<int32_t, float>> out;
    for (const auto& [key, bias] : v->items()) {
        size_t used = 0;
        long long id = -1;
        try {
            id = std::stoll(key, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used != key.size() || key.empty())
            throw bad("logit_bias", "logit_bias keys must be token ids, not \"" + key + "\"");
        if (id < 0 || id >= n_vocab)
            throw bad("logit_bias", "logit_bias token " + key + " is outside the vocabulary (0.." +
                                        std::to_string(n_vocab - 1) + ")");
        if (!bias.is_number() || bias.is_boolean())
            throw bad("logit_bias", "logit_bias[\"" + key + "\"] must be a number, not " + type_name(bias));
        const double b = bias.get<double>();
        if (!(b >= -100 && b <= 100))
            throw bad("logit_bias", "logit_bias[\"" + key + "\"] must be in [-100, 100], not " + bias.dump());
        out.emplace_back(static_cast<int32_t>(id), static_cast<float>(b));
    }
    return out;
}

// The loop's reasons in OpenAI's words; a cancelled request ends with vLLM's "abort".
// The engine's finish reasons in OpenAI's (and vLLM's) words: "stop", "length", "abort".
std::string finish_word(engine::FinishReason reason) {
    switch (reason) {
        case engine::FinishReason::max_tokens:
        case engine::FinishReason::context_full: return "length";
        case engine::FinishReason::cancelled: return "abort";
        case engine::FinishReason::error: return "error";
        case engine::FinishReason::none:
        case engine::FinishReason::stop_token:
        case engine::FinishReason::stop_string: return "stop";
    }
    return "stop";
}

ApiError too_long(const std::string& param, const std::string& message) {
    return ApiError(400, param, message, "invalid_request_error", "context_length_exceeded");
}

}  // namespace

json error_body(const std::string& message, const std::string& type, const std::string& param,
                const std::string& code) {
    const auto or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
    return {{"error", {{"message", message}, {"type", type}, {"param", or_null(param)}, {"code", or_null(code)}}}};
}

const char* id_prefix(Endpoint endpoint) { return endpoint == Endpoint::chat ? "chatcmpl-" : "cmpl-"; }

OpenAiApi::OpenAiApi(const gguf::File& file, const tokenizer::Tokenizer& tok, std::string model_name, int n_ctx)
    : tokenizer_(tok),
      model_name_(std::move(model_name)),
      n_ctx_(n_ctx),
      stop_ids_(engine::end_of_generation_ids(tok)),
      template_(tokenizer::ChatTemplate::from_gguf(file)) {
    const auto special = tokenizer::special_token_strings(file);
    bos_text_ = special.bos;
    eos_text_ = special.eos;
}

json OpenAiApi::parse_body(std::string_view body) const {
    json j;
    try {
        j = json::parse(body);
    } catch (const json::exception& e) {  // a syntax error, or a number beyond a double (1e400)
        throw bad("", std::string("the body is not valid JSON: ") + e.what());
    }
    if (!j.is_object()) throw bad("", "the body must be a JSON object, not " + type_name(j));
    return j;
}

void OpenAiApi::check_model(const json& body) const {
    const json* m = field(body, "model");
    if (!m) return;  // one model is served: leaving it out means that one
    if (!m->is_string()) throw bad("model", "model must be a string, not " + type_name(*m));
    const auto name = m->get<std::string>();
    if (name != model_name_)
        throw ApiError(404, "model",
                       "the model '" + name + "' does not exist; this worker serves '" + model_name_ + "'",
                       "invalid_request_error", "model_not_found");
}

std::vector<int32_t> OpenAiApi::completion_prompt(const json& prompt) const {
    const auto vocab = static_cast<int64_t>(tokenizer_.vocab_size());
    const auto ids_from = [&](const json& arr) {
        std::vector<int32_t> ids;
        for (const auto& t : arr) {
            const int64_t id = integer(t, "prompt");
            if (id < 0 || id >= vocab)
                throw bad("prompt", "prompt token " + std::to_string(id) + " is outside the vocabulary (0.." +
                                        std::to_string(vocab - 1) + ")");
            ids.push_back(static_cast<int32_t>(id));
        }
        return ids;
    };
    const auto encode = [&](const std::string& text) {
        return tokenizer_.encode(text, {.add_special = true, .parse_special = true});
    };
    if (prompt.is_string()) return encode(prompt.get<std::string>());
    if (prompt.is_array() && !prompt.empty()) {
        if (prompt[0].is_number()) return ids_from(prompt);
        if (prompt.size() > 1)
            throw bad("prompt", "prompt holds " + std::to_string(prompt.size()) +
                                    " prompts; loom answers one prompt per request");
        if (prompt[0].is_string()) return encode(prompt[0].get<std::string>());
        if (prompt[0].is_array()) return ids_from(prompt[0]);
    }
    throw bad("prompt", "prompt must be a string, an array of token ids, or an array with one of those, not " +
                            (prompt.is_array() && prompt.empty() ? std::string("an empty array") : type_name(prompt)));
}

std::vector<int32_t> OpenAiApi::chat_prompt(const json& messages, bool add_generation_prompt) const {
    if (!messages.is_array()) throw bad("messages", "messages must be an array, not " + type_name(messages));
    if (messages.empty()) throw bad("messages", "messages must not be empty");
    tokenizer::ChatTemplateInputs in;
    for (size_t i = 0; i < messages.size(); ++i) {
        const json& m = messages[i];
        const std::string where = "messages[" + std::to_string(i) + "]";
        if (!m.is_object()) throw bad("messages", where + " must be an object, not " + type_name(m));
        const json* role = field(m, "role");
        if (!role || !role->is_string())
            throw bad("messages", where + ".role must be a string, not " + (role ? type_name(*role) : "missing"));
        nlohmann::ordered_json msg = {{"role", role->get<std::string>()}};
        const json* content = field(m, "content");
        if (!content) {
            msg["content"] = "";
        } else if (content->is_string()) {
            msg["content"] = content->get<std::string>();
        } else if (content->is_array()) {  // content parts: only text parts can be served
            std::string text;
            for (const auto& part : *content) {
                if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
                    !part["text"].is_string())
                    throw bad("messages", where + ".content parts must be {\"type\": \"text\", \"text\": string}");
                text += part["text"].get<std::string>();
            }
            msg["content"] = text;
        } else {
            throw bad("messages",
                      where + ".content must be a string or an array of text parts, not " + type_name(*content));
        }
        if (const json* name = field(m, "name"); name && name->is_string()) msg["name"] = *name;
        in.messages.push_back(std::move(msg));
    }
    in.add_generation_prompt = add_generation_prompt;
    in.bos_token = bos_text_;
    in.eos_token = eos_text_;
    std::string rendered;
    try {
        std::lock_guard lock(template_mutex_);
        rendered = template_.render(in);
    } catch (const tokenizer::jinja::Error& e) {
        throw bad("messages", std::string("the model's chat template refused the messages: ") + e.what());
    }
    // The template writes BOS itself where the model wants it.
    return tokenizer_.encode(rendered, {.add_special = false, .parse_special = true});
}

ApiRequest OpenAiApi::parse(Endpoint endpoint, std::string_view body_text) const {
    const json body = parse_body(body_text);
    check_model(body);
    const bool chat = endpoint == Endpoint::chat;
    ApiRequest r;
    r.endpoint = endpoint;

    if (const int64_t n = integer_in(body, "n", 1, 1, 128); n > 1)
        throw bad("n", "n = " + std::to_string(n) +
                           " is not supported: loom returns one choice per request "
                           "(send n requests instead)");
    if (const int64_t best_of = integer_in(body, "best_of", 1, 1, 128); best_of > 1)
        throw bad("best_of", "best_of > 1 is not supported");
    if (!chat) {
        if (boolean(body, "echo", false)) throw bad("echo", "echo is not supported");
        if (const json* s = field(body, "suffix"))
            throw bad("suffix", s->is_string() ? "suffix is not supported" : "suffix must be a string");
    } else {
        if (const json* tools = field(body, "tools"); tools && !(tools->is_array() && tools->empty()))
            throw bad("tools", "tools are not supported");
        if (const json* fmt = field(body, "response_format")) {
            if (!fmt->is_object() || fmt->value("type", "") != "text")
                throw bad("response_format", "only response_format {\"type\": \"text\"} is supported");
        }
    }
    if (const json* user = field(body, "user"); user && !user->is_string())
        throw bad("user", "user must be a string, not " + type_name(*user));

    r.stream = boolean(body, "stream", false);
    r.return_token_ids = boolean(body, "return_token_ids", false);
    if (const json* so = field(body, "stream_options")) {
        if (!so->is_object()) throw bad("stream_options", "stream_options must be an object, not " + type_name(*so));
        if (!r.stream) throw bad("stream_options", "stream_options is only allowed with stream: true");
        r.include_usage = boolean(*so, "include_usage", false);
    }

    auto& s = r.generation.options.sampling;
    s.temperature = static_cast<float>(number_in(body, "temperature", 1.0, 0.0, 2.0));
    s.top_p = static_cast<float>(number_in(body, "top_p", 1.0, 0.0, 1.0, true));
    const int64_t top_k = integer_in(body, "top_k", 0, -1, std::numeric_limits<int32_t>::max());
    s.top_k = static_cast<int32_t>(std::max<int64_t>(top_k, 0));  // -1 (vLLM's "off") = 0
    s.min_p = static_cast<float>(number_in(body, "min_p", 0.0, 0.0, 1.0));
    s.presence_penalty = static_cast<float>(number_in(body, "presence_penalty", 0.0, -2.0, 2.0));
    s.frequency_penalty = static_cast<float>(number_in(body, "frequency_penalty", 0.0, -2.0, 2.0));
    s.repetition_penalty = static_cast<float>(number_in(body, "repetition_penalty", 1.0, 0.0, 10.0, true));
    // Unseeded requests differ from each other (as OpenAI's do); the seed drawn is reported so that
    // a run can be repeated. It fits an int64, as a seed sent back must.
    const json* seed = field(body, "seed");
    s.seed = seed ? static_cast<uint64_t>(integer(*seed, "seed")) : random_u64() >> 1;
    s.logit_bias = logit_bias(body, static_cast<int32_t>(tokenizer_.vocab_size()));
    r.generation.stop_strings = stop_strings(body);

    if (chat) {
        const json* lp = field(body, "logprobs");
        if (lp && !lp->is_boolean()) throw bad("logprobs", "logprobs must be a boolean, not " + type_name(*lp));
        r.logprobs = lp && lp->get<bool>();
        const json* top = field(body, "top_logprobs");
        if (top && !r.logprobs) throw bad("top_logprobs", "top_logprobs needs logprobs: true");
        r.top_logprobs = static_cast<int>(integer_in(body, "top_logprobs", 0, 0, engine::kMaxTopLogprobs));
    } else {
        const json* lp = field(body, "logprobs");
        if (lp && lp->is_boolean())
            throw bad("logprobs", "logprobs must be an integer (alternatives per token), not a boolean");
        r.logprobs = lp != nullptr;
        r.top_logprobs = static_cast<int>(integer_in(body, "logprobs", 0, 0, engine::kMaxTopLogprobs));
        // The orchestrator continues a chat stream with a completions request (its prompt is token
        // ids); the client still expects chat's logprobs, which carry bytes completions' lack.
        r.chat_logprobs = boolean(body, "chat_logprobs", false);
    }
    r.generation.options.top_logprobs = r.logprobs ? r.top_logprobs : -1;

    // The prompt last: it is the expensive part.
    const char* prompt_param = chat ? "messages" : "prompt";
    const json* prompt = field(body, prompt_param);
    if (!prompt) throw bad(prompt_param, std::string(prompt_param) + " is required");
    r.generation.prompt =
        chat ? chat_prompt(*prompt, boolean(body, "add_generation_prompt", true)) : completion_prompt(*prompt);
    const int n_prompt = static_cast<int>(r.generation.prompt.size());
    try {
        engine::check_prompt_size(r.generation.prompt.size(), n_ctx_);  // the engine's check, the API's field name
    } catch (const engine::ContextLengthError& e) {
        throw too_long(prompt_param, e.detail());
    } catch (const engine::RequestError& e) {
        throw bad(prompt_param, e.detail());
    }
    check_room(chat, n_prompt, body, r);
    // loom's failover extension: the prompt ends with tokens this request generated on a worker
    // that failed (see RequestOptions::resume_tokens).
    r.generation.options.resume_tokens = static_cast<int>(integer_in(body, "resume_tokens", 0, 0, n_prompt - 1));

    if (!boolean(body, "ignore_eos", false)) r.generation.options.stop_ids = stop_ids_;
    try {
        engine::validate(s, static_cast<int32_t>(tokenizer_.vocab_size()));
    } catch (const engine::SamplingParamError& e) {
        throw bad(e.field(), e.what());
    }
    return r;
}

// max_tokens (chat: or max_completion_tokens) must fit beside the prompt, as OpenAI and vLLM demand;
// only the defaults are cut to the room left.
void OpenAiApi::check_room(bool chat, int n_prompt, const json& body, ApiRequest& r) const {
    constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
    const int64_t room = n_ctx_ - n_prompt;
    const char* param = nullptr;
    int64_t max_tokens = chat ? room : std::min<int64_t>(kDefaultCompletionTokens, room);
    if (field(body, "max_tokens")) {
        param = "max_tokens";
        max_tokens = integer_in(body, param, max_tokens, 1, kMax);
    }
    if (chat && field(body, "max_completion_tokens")) {  // the newer name wins, as in vLLM
        param = "max_completion_tokens";
        max_tokens = integer_in(body, param, max_tokens, 1, kMax);
    }
    if (param && max_tokens > room)
        throw too_long(param, std::string(param) + " = " + std::to_string(max_tokens) +
                                  " does not fit: the prompt has " + std::to_string(n_prompt) +
                                  " tokens and the context holds " + std::to_string(n_ctx_) + ", so at most " +
                                  std::to_string(room) + " can be generated");
    r.generation.options.max_tokens = static_cast<int>(max_tokens);
}

json OpenAiApi::tokenize(std::string_view body_text) const {
    const json body = parse_body(body_text);
    check_model(body);
    std::vector<int32_t> ids;
    const json* messages = field(body, "messages");
    const json* prompt = field(body, "prompt");
    if (messages && prompt) throw bad("prompt", "give either prompt or messages, not both");
    if (messages) {
        ids = chat_prompt(*messages, boolean(body, "add_generation_prompt", true));
    } else if (prompt) {
        if (!prompt->is_string()) throw bad("prompt", "prompt must be a string, not " + type_name(*prompt));
        ids = tokenizer_.encode(prompt->get<std::string>(),
                                {.add_special = boolean(body, "add_special_tokens", true), .parse_special = true});
    } else {
        throw bad("prompt", "prompt (or messages) is required");
    }
    return {{"tokens", ids}, {"count", ids.size()}, {"max_model_len", n_ctx_}};
}

json OpenAiApi::detokenize(std::string_view body_text) const {
    const json body = parse_body(body_text);
    check_model(body);
    const json* tokens = field(body, "tokens");
    if (!tokens) throw bad("tokens", "tokens is required");
    if (!tokens->is_array()) throw bad("tokens", "tokens must be an array of token ids, not " + type_name(*tokens));
    std::vector<int32_t> ids;
    const auto vocab = static_cast<int64_t>(tokenizer_.vocab_size());
    for (const auto& t : *tokens) {
        const int64_t id = integer(t, "tokens");
        if (id < 0 || id >= vocab)
            throw bad("tokens", "token " + std::to_string(id) + " is outside the vocabulary (0.." +
                                    std::to_string(vocab - 1) + ")");
        ids.push_back(static_cast<int32_t>(id));
    }
    return {{"prompt", tokenizer_.decode(ids)}};
}

json OpenAiApi::models(int64_t created) const {
    return {{"object", "list"}, {"data", json::array({model(model_name_, created)})}};
}

json OpenAiApi::model(const std::string& id, int64_t created) const {
    check_model({{"model", id}});
    return {{"id", model_name_},  {"object", "model"},   {"created", created},
            {"owned_by", "loom"}, {"root", model_name_}, {"max_model_len", n_ctx_}};
}

std::string OpenAiApi::token_text(int32_t id) const { return tokenizer::sanitize_utf8(tokenizer_.token_bytes(id)); }

ResponseWriter::ResponseWriter(const OpenAiApi& api, const ApiRequest& request, std::string id, int64_t created)
    : api_(api),
      endpoint_(request.endpoint),
      chat_shape_(request.endpoint == Endpoint::chat || request.chat_logprobs),
      logprobs_(request.logprobs),
      top_logprobs_(request.top_logprobs),
      include_usage_(request.include_usage),
      return_token_ids_(request.return_token_ids),
      prompt_ids_(request.return_token_ids ? request.generation.prompt : std::vector<int32_t>{}),
      id_(std::move(id)),
      created_(created) {
    if (logprobs_)
        logprob_entries_ = chat_shape_ ? json{{"content", json::array()}}
                                       : json{{"tokens", json::array()},
                                              {"token_logprobs", json::array()},
                                              {"top_logprobs", top_logprobs_ > 0 ? json::array() : json(nullptr)},
                                              {"text_offset", json::array()}};
}

std::string ResponseWriter::sse(const json& j) {
    return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

json ResponseWriter::chunk(json choice) {
    const bool chat = endpoint_ == Endpoint::chat;
    json out = {{"id", id_},
                {"object", chat ? "chat.completion.chunk" : "text_completion"},
                {"created", created_},
                {"model", api_.model_name()},
                {"choices", json::array({std::move(choice)})}};
    if (include_usage_) out["usage"] = nullptr;  // as OpenAI: null on every chunk but the usage chunk
    if (return_token_ids_ && !prompt_ids_sent_) {
        out["prompt_token_ids"] = prompt_ids_;
        prompt_ids_sent_ = true;
    }
    return out;
}

namespace {
json token_ids_of(const std::vector<engine::SampledToken>& tokens) {
    json ids = json::array();
    for (const auto& t : tokens) ids.push_back(t.token);
    return ids;
}
}  // namespace

json ResponseWriter::usage() const {
    return {{"prompt_tokens", prompt_tokens_},
            {"completion_tokens", completion_tokens_},
            {"total_tokens", prompt_tokens_ + completion_tokens_}};
}

// The logprobs of these tokens in the endpoint's shape: chat {"content": [...]}, completions the
// four parallel arrays (top_logprobs null when no alternatives were asked for, not a list of empty
// objects). Offsets count bytes of the tokens' text from the start of the completion.
json ResponseWriter::choice_logprobs(const std::vector<engine::SampledToken>& tokens) {
    if (chat_shape_) {
        json content = json::array();
        const auto entry = [&](int32_t id, float lp) {
            const std::string& raw = api_.tokenizer().token_bytes(id);
            json bytes = json::array();
            for (unsigned char c : raw) bytes.push_back(int(c));
            return json{{"token", api_.token_text(id)}, {"logprob", lp}, {"bytes", std::move(bytes)}};
        };
        for (const auto& t : tokens) {
            json e = entry(t.token, t.logprob);
            json top = json::array();
            for (int i = 0; i < top_logprobs_ && i < static_cast<int>(t.top_logprobs.size()); ++i)
                top.push_back(entry(t.top_logprobs[i].token, t.top_logprobs[i].logprob));
            e["top_logprobs"] = std::move(top);
            content.push_back(std::move(e));
        }
        return {{"content", std::move(content)}};
    }
    json out = {{"tokens", json::array()},
                {"token_logprobs", json::array()},
                {"top_logprobs", top_logprobs_ > 0 ? json::array() : json(nullptr)},
                {"text_offset", json::array()}};
    for (const auto& t : tokens) {
        const std::string text = api_.token_text(t.token);
        out["tokens"].push_back(text);
        out["token_logprobs"].push_back(t.logprob);
        if (top_logprobs_ > 0) {
            json top = json::object();
            for (int i = 0; i < top_logprobs_ && i < static_cast<int>(t.top_logprobs.size()); ++i)
                top[api_.token_text(t.top_logprobs[i].token)] = t.top_logprobs[i].logprob;
            out["top_logprobs"].push_back(std::move(top));
        }
        out["text_offset"].push_back(text_offset_);
        text_offset_ += api_.tokenizer().token_bytes(t.token).size();
    }
    return out;
}

std::string ResponseWriter::stream_start() {
    if (endpoint_ != Endpoint::chat) return {};
    return sse(chunk({{"index", 0},
                      {"delta", {{"role", "assistant"}, {"content", ""}}},
                      {"logprobs", nullptr},
                      {"finish_reason", nullptr}}));
}

std::string ResponseWriter::stream_event(const StreamEvent& e) {
    const bool chat = endpoint_ == Endpoint::chat;
    std::string out;
    if (!e.text.empty() || ((logprobs_ || return_token_ids_) && !e.tokens.empty())) {
        json choice = {{"index", 0}};
        if (chat)
            choice["delta"] = {{"content", e.text}};
        else
            choice["text"] = e.text;
        choice["logprobs"] = logprobs_ && !e.tokens.empty() ? choice_logprobs(e.tokens) : json(nullptr);
        if (return_token_ids_) choice["token_ids"] = token_ids_of(e.tokens);
        choice["finish_reason"] = nullptr;
        out += sse(chunk(std::move(choice)));
    }
    if (!e.finished) return out;
    prompt_tokens_ = e.prompt_tokens;
    completion_tokens_ = e.completion_tokens;
    if (e.finish == engine::FinishReason::error) {
        out += sse(error_body("generation failed: " + e.error, "server_error"));
    } else {
        json choice = {{"index", 0}};
        if (chat)
            choice["delta"] = json::object();
        else
            choice["text"] = "";
        choice["logprobs"] = nullptr;
        choice["finish_reason"] = finish_word(e.finish);
        out += sse(chunk(std::move(choice)));
    }
    if (include_usage_) {
        json u = chunk(json::object());
        u["choices"] = json::array();
        u["usage"] = usage();
        out += sse(u);
    }
    out += "data: [DONE]\n\n";
    return out;
}

void ResponseWriter::add(const StreamEvent& e) {
    text_ += e.text;
    if (return_token_ids_)
        for (const auto& t : e.tokens) token_ids_.push_back(t.token);
    if (logprobs_ && !e.tokens.empty()) {
        json part = choice_logprobs(e.tokens);
        for (auto& [key, values] : part.items())
            if (!values.is_null())
                for (auto& v : values) logprob_entries_[key].push_back(std::move(v));
    }
    if (!e.finished) return;
    finish_reason_ = finish_word(e.finish);
    prompt_tokens_ = e.prompt_tokens;
    completion_tokens_ = e.completion_tokens;
    if (e.finish == engine::FinishReason::error) {
        failed_ = true;
        error_ = e.error;
    }
}

json ResponseWriter::whole() const {
    if (failed_) return error_body("generation failed: " + error_, "server_error");
    const bool chat = endpoint_ == Endpoint::chat;
    json choice = {{"index", 0}};
    if (chat)
        choice["message"] = {{"role", "assistant"}, {"content", text_}};
    else
        choice["text"] = text_;
    choice["logprobs"] = logprob_entries_;
    choice["finish_reason"] = finish_reason_;
    if (return_token_ids_) choice["token_ids"] = token_ids_;
    json out = {{"id", id_},
                {"object", chat ? "chat.completion" : "text_completion"},
                {"created", created_},
                {"model", api_.model_name()},
                {"choices", json::array({std::move(choice)})},
                {"usage", usage()}};
    if (return_token_ids_) out["prompt_token_ids"] = prompt_ids_;
    return out;
}

}  // namespace loom::worker
