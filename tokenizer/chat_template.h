// Chat templates: renders a model's tokenizer.chat_template for a conversation the way Hugging Face
// transformers' apply_chat_template does, falling back to ChatML when the model has none.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "tokenizer/jinja/jinja.h"

namespace loom::gguf {
class File;
}

namespace loom::tokenizer {

// What a template sees. Like transformers, every render defines: messages, add_generation_prompt,
// bos_token, eos_token, tools = none, documents = none, and the functions raise_exception(message)
// and strftime_now(format). `extra` adds or overrides variables (date_string, tools, ...).
struct ChatTemplateInputs {
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();  // [{"role", "content", ...}]
    bool add_generation_prompt = false;
    std::string bos_token;
    std::string eos_token;
    nlohmann::ordered_json extra = nlohmann::ordered_json::object();
};

// The template used for models without one: <|im_start|>role\ncontent<|im_end|>\n per message.
std::string_view chatml_template();

class ChatTemplate {
public:
    // Parses `source`; throws jinja::SyntaxError or jinja::UnknownFilterError.
    explicit ChatTemplate(std::string source);

    // The file's tokenizer.chat_template, or ChatML (with a warning) when it has none.
    static ChatTemplate from_gguf(const gguf::File& file);

    // Throws jinja::RenderError, or jinja::RaisedException when the template calls raise_exception.
    std::string render(const ChatTemplateInputs& inputs) const;

    const std::string& source() const { return source_; }
    bool is_chatml_fallback() const { return fallback_; }

private:
    std::string source_;
    jinja::Template template_;
    bool fallback_ = false;
};

struct SpecialTokenStrings {
    std::string bos;
    std::string eos;
};
// tokenizer.ggml.tokens at tokenizer.ggml.bos_token_id / eos_token_id; empty strings where absent.
SpecialTokenStrings special_token_strings(const gguf::File& file);

// JSON as the template sees it: objects become dicts (key order kept), arrays lists, null None.
jinja::Value to_jinja_value(const nlohmann::ordered_json& j);

}  // namespace loom::tokenizer
