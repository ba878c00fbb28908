// Turning a request's prompt into its first token ids with the model's own tokenizer, the way the
// worker does (worker/openai_api.cpp: completion_prompt, chat_prompt), but only its start.
#include "orchestrator/prompt_tokens.h"

#include <algorithm>
#include <mutex>
#include <optional>
#include <utility>

#include "gguf/reader.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace loom::orchestrator {

using nlohmann::json;

struct PromptTokenizers::Model {
    explicit Model(const gguf::File& file)
        : tokenizer(tokenizer::Tokenizer::from_gguf(file)),
          chat_template(tokenizer::ChatTemplate::from_gguf(file)),
          special(tokenizer::special_token_strings(file)) {}
    tokenizer::Tokenizer tokenizer;
    tokenizer::ChatTemplate chat_template;
    tokenizer::SpecialTokenStrings special;
    mutable std::mutex template_mu;  // rendering is not thread-safe (the worker locks it too)
};

PromptTokenizers::PromptTokenizers() = default;
PromptTokenizers::~PromptTokenizers() = default;

void PromptTokenizers::add(const std::string& model, const std::filesystem::path& gguf) {
    const gguf::File file = gguf::File::open(gguf);
    auto m = std::make_shared<const Model>(file);
    std::unique_lock lock(mu_);
    models_[model] = std::move(m);
}

bool PromptTokenizers::has(const std::string& model) const {
    std::shared_lock lock(mu_);
    return models_.contains(model);
}

std::shared_ptr<const PromptTokenizers::Model> PromptTokenizers::find(const std::string& model,
                                                                      std::string& name) const {
    std::shared_lock lock(mu_);
    if (model.empty() && models_.size() == 1) {
        name = models_.begin()->first;
        return models_.begin()->second;
    }
    name = model;
    const auto it = models_.find(model);
    return it == models_.end() ? nullptr : it->second;
}

namespace {

// body[name], or null when absent (without copying either).
const json& field(const json& body, const char* name) {
    static const json null;
    const auto it = body.find(name);
    return it == body.end() ? null : *it;
}

// The start of `text` that is tokenized; `cut` says whether it is all of it.
std::string_view head(std::string_view text, bool& cut) {
    cut = text.size() > PromptTokenizers::kMaxTextBytes;
    return text.substr(0, PromptTokenizers::kMaxTextBytes);
}

// Ids given as ids: the first kMaxTokens of an array of integers; nullopt if anything else is in it.
std::optional<std::vector<int32_t>> given_ids(const json& arr, int64_t& count) {
    std::vector<int32_t> ids;
    for (const json& t : arr) {
        if (!t.is_number_integer()) return std::nullopt;
        if (ids.size() < PromptTokenizers::kMaxTokens) ids.push_back(t.get<int32_t>());
    }
    count = static_cast<int64_t>(arr.size());
    return ids;
}

// A message's content as the worker reads it: a string, text parts joined, or "" when absent.
std::optional<std::string> content_of(const json& m) {
    if (!m.contains("content") || m["content"].is_null()) return std::string();
    const json& c = m["content"];
    if (c.is_string()) return c.get<std::string>();
    if (!c.is_array()) return std::nullopt;
    std::string text;
    for (const json& part : c) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
            !part["text"].is_string())
            return std::nullopt;
        text += part["text"].get<std::string>();
    }
    return text;
}

// What a message adds to the rendered text besides its content (role, framing), for the cap: a
// conversation of many empty messages is not rendered whole either.
constexpr size_t kMessageBytes = 32;

// The messages the template renders: those whose content starts within the first kMaxTextBytes,
// the last of them cut there (what follows cannot change the rendered text's start).
std::optional<nlohmann::ordered_json> template_messages(const json& messages) {
    if (!messages.is_array() || messages.empty()) return std::nullopt;
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    size_t bytes = 0;
    for (const json& m : messages) {
        if (bytes >= PromptTokenizers::kMaxTextBytes) break;
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) return std::nullopt;
        std::optional<std::string> content = content_of(m);
        if (!content) return std::nullopt;
        if (content->size() > PromptTokenizers::kMaxTextBytes - bytes)
            content->resize(PromptTokenizers::kMaxTextBytes - bytes);
        bytes += content->size() + kMessageBytes;
        nlohmann::ordered_json msg = {{"role", m["role"].get<std::string>()}, {"content", std::move(*content)}};
        if (m.contains("name") && m["name"].is_string()) msg["name"] = m["name"].get<std::string>();
        out.push_back(std::move(msg));
    }
    return out;
}

}  // namespace

PromptIds PromptTokenizers::tokenize(const std::string& model, const json& body, bool chat) const {
    PromptIds r;
    const auto m = find(model, r.model);
    if (!m) return r;
    r.status = PromptIds::Status::no_prompt;
    std::string rendered;
    std::string_view prompt;  // the text the worker encodes
    bool add_special = true;
    if (chat) {
        auto messages = template_messages(field(body, "messages"));
        if (!messages) return r;
        tokenizer::ChatTemplateInputs in;
        in.messages = std::move(*messages);
        const json& generation_prompt = field(body, "add_generation_prompt");
        in.add_generation_prompt = !generation_prompt.is_boolean() || generation_prompt.get<bool>();
        in.bos_token = m->special.bos;
        in.eos_token = m->special.eos;
        try {
            std::lock_guard lock(m->template_mu);
            rendered = m->chat_template.render(in);
        } catch (const tokenizer::jinja::Error&) {
            return r;  // the worker refuses these messages with a 400
        }
        prompt = rendered;
        add_special = false;  // the template writes BOS where the model wants it
    } else {
        const json& p = field(body, "prompt");
        const json& one = p.is_array() && p.size() == 1 && !p[0].is_number() ? p[0] : p;
        if (one.is_array() && !one.empty()) {
            auto ids = given_ids(one, r.count);
            if (!ids) return r;
            r.ids = std::move(*ids);
            r.status = PromptIds::Status::ok;
            return r;
        }
        if (!one.is_string()) return r;
        prompt = one.get_ref<const std::string&>();
    }
    bool cut = false;
    m->tokenizer.encode_into(head(prompt, cut), r.ids, {.add_special = add_special, .parse_special = true});
    r.count = static_cast<int64_t>(r.ids.size());
    if (cut) r.ids.resize(r.ids.size() - std::min<size_t>(r.ids.size(), 16));
    if (r.ids.size() > kMaxTokens) r.ids.resize(kMaxTokens);
    r.status = PromptIds::Status::ok;
    return r;
}

}  // namespace loom::orchestrator
