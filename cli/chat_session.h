// The conversation of `loom run`, apart from the terminal: its messages, the prompt the model's chat
// template renders for the next answer, and what a typed line means (a message or a /command).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "tokenizer/chat_template.h"

namespace loom::cli {

class ChatSession {
public:
    ChatSession(tokenizer::ChatTemplate chat_template, tokenizer::SpecialTokenStrings special);

    // Replaces the system message; an empty text removes it.
    void set_system(std::string text);
    // Forgets every exchange; the system message stays.
    void clear();
    // The prompt for answering `user`: the system message, every exchange so far, then `user` and
    // the opening of the assistant's turn, as the model's chat template renders them.
    std::string render_next(std::string_view user) const;
    // Records a finished exchange (an interrupted answer is not recorded).
    void add_exchange(std::string user, std::string assistant);

    size_t exchanges() const { return exchanges_; }
    // [{"role", "content"}, ...] without the system message.
    const nlohmann::ordered_json& history() const { return history_; }

private:
    tokenizer::ChatTemplate template_;
    tokenizer::SpecialTokenStrings special_;
    std::string system_;
    nlohmann::ordered_json history_ = nlohmann::ordered_json::array();
    size_t exchanges_ = 0;
};

// What a line typed at the `>>>` prompt asks for.
struct ChatInput {
    enum class Kind { message, system, clear, bye, help, empty, unknown };
    Kind kind = Kind::empty;
    std::string text;  // the message, the /system text, or the unknown command's name
};
ChatInput parse_chat_input(std::string_view line);

// The /? text.
std::string_view chat_help();

}  // namespace loom::cli
