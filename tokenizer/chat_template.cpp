// Chat templates: Hugging Face's apply_chat_template variables over loom's Jinja interpreter.
#include "tokenizer/chat_template.h"

#include <spdlog/spdlog.h>

#include <ctime>
#include <limits>

#include "gguf/reader.h"

namespace loom::tokenizer {

namespace {

constexpr std::string_view kChatML =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

jinja::Value raise_exception_function() {
    return jinja::Value::function("raise_exception", [](jinja::CallArgs& args) -> jinja::Value {
        std::string message = args.positional.empty() ? "" : args.positional[0].str();
        throw jinja::OperationError{jinja::OperationError::Kind::Raise, std::move(message)};
    });
}

// transformers' strftime_now: datetime.now().strftime(format), in local time.
jinja::Value strftime_now_function() {
    return jinja::Value::function("strftime_now", [](jinja::CallArgs& args) {
        if (args.positional.size() != 1 || !args.positional[0].is_string())
            throw jinja::OperationError{jinja::OperationError::Kind::Type, "strftime_now() takes one format string"};
        const std::time_t now = std::time(nullptr);
        std::tm local{};
        localtime_r(&now, &local);
        const std::string& format = args.positional[0].as_string();
        std::string out(format.size() * 4 + 64, '\0');
        out.resize(std::strftime(out.data(), out.size(), format.c_str(), &local));
        return jinja::Value::string(std::move(out));
    });
}

}  // namespace

std::string_view chatml_template() { return kChatML; }

jinja::Value to_jinja_value(const nlohmann::ordered_json& j) {
    using jinja::Value;
    switch (j.type()) {
        case nlohmann::json::value_t::null: return Value::none();
        case nlohmann::json::value_t::boolean: return Value::boolean(j.get<bool>());
        case nlohmann::json::value_t::number_integer: return Value::integer(j.get<int64_t>());
        case nlohmann::json::value_t::number_unsigned: {
            const auto u = j.get<uint64_t>();
            if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                return Value::integer(static_cast<int64_t>(u));
            return Value::number(static_cast<double>(u));
        }
        case nlohmann::json::value_t::number_float: return Value::number(j.get<double>());
        case nlohmann::json::value_t::string: return Value::string(j.get<std::string>());
        case nlohmann::json::value_t::array: {
            std::vector<Value> items;
            for (const auto& e : j) items.push_back(to_jinja_value(e));
            return Value::list(std::move(items));
        }
        case nlohmann::json::value_t::object: {
            Value d = Value::dict();
            for (const auto& [k, v] : j.items())
                d.dict_data().entries.emplace_back(Value::string(k), to_jinja_value(v));
            return d;
        }
        default: return Value::none();
    }
}

ChatTemplate::ChatTemplate(std::string source) : source_(std::move(source)), template_(source_) {}

ChatTemplate ChatTemplate::from_gguf(const gguf::File& file) {
    if (auto source = file.find_string("tokenizer.chat_template"); source && !source->empty())
        return ChatTemplate(std::move(*source));
    spdlog::warn("model has no tokenizer.chat_template; using the ChatML template");
    ChatTemplate t{std::string(kChatML)};
    t.fallback_ = true;
    return t;
}

std::string ChatTemplate::render(const ChatTemplateInputs& inputs) const {
    jinja::Variables vars = {
        {"messages", to_jinja_value(inputs.messages)},
        {"add_generation_prompt", jinja::Value::boolean(inputs.add_generation_prompt)},
        {"bos_token", jinja::Value::string(inputs.bos_token)},
        {"eos_token", jinja::Value::string(inputs.eos_token)},
        {"tools", jinja::Value::none()},
        {"documents", jinja::Value::none()},
        {"raise_exception", raise_exception_function()},
        {"strftime_now", strftime_now_function()},
    };
    if (inputs.extra.is_object())
        for (const auto& [key, value] : inputs.extra.items()) vars.emplace_back(key, to_jinja_value(value));
    return template_.render(vars);
}

SpecialTokenStrings special_token_strings(const gguf::File& file) {
    SpecialTokenStrings out;
    const gguf::Value* tokens = file.find("tokenizer.ggml.tokens");
    if (!tokens) return out;
    const auto& strings = tokens->as_array("tokenizer.ggml.tokens").strings;
    auto token = [&](std::string_view key) -> std::string {
        const auto id = file.find_uint(key);
        return id && *id < strings.size() ? strings[*id] : std::string();
    };
    out.bos = token("tokenizer.ggml.bos_token_id");
    out.eos = token("tokenizer.ggml.eos_token_id");
    return out;
}

}  // namespace loom::tokenizer
