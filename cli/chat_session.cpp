// ChatSession: messages kept as the chat template's JSON; /commands parsed from typed lines.
#include "cli/chat_session.h"

#include <utility>

namespace loom::cli {

ChatSession::ChatSession(tokenizer::ChatTemplate chat_template, tokenizer::SpecialTokenStrings special)
    : template_(std::move(chat_template)), special_(std::move(special)) {}

void ChatSession::set_system(std::string text) { system_ = std::move(text); }

void ChatSession::clear() {
    history_ = nlohmann::ordered_json::array();
    exchanges_ = 0;
}

std::string ChatSession::render_next(std::string_view user) const {
    tokenizer::ChatTemplateInputs in;
    if (!system_.empty()) in.messages.push_back({{"role", "system"}, {"content", system_}});
    for (const auto& m : history_) in.messages.push_back(m);
    in.messages.push_back({{"role", "user"}, {"content", std::string(user)}});
    in.add_generation_prompt = true;
    in.bos_token = special_.bos;
    in.eos_token = special_.eos;
    return template_.render(in);
}

void ChatSession::add_exchange(std::string user, std::string assistant) {
    history_.push_back({{"role", "user"}, {"content", std::move(user)}});
    history_.push_back({{"role", "assistant"}, {"content", std::move(assistant)}});
    ++exchanges_;
}

namespace {

std::string_view trim(std::string_view s) {
    const auto first = s.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos) return {};
    return s.substr(first, s.find_last_not_of(" \t\r\n") - first + 1);
}

}  // namespace

ChatInput parse_chat_input(std::string_view line) {
    const std::string_view t = trim(line);
    if (t.empty()) return {ChatInput::Kind::empty, ""};
    if (t.front() != '/') return {ChatInput::Kind::message, std::string(t)};
    const auto space = t.find_first_of(" \t");
    const std::string_view name = t.substr(0, space);
    const std::string_view rest = space == std::string_view::npos ? std::string_view{} : trim(t.substr(space));
    if (name == "/system") return {ChatInput::Kind::system, std::string(rest)};
    if (name == "/clear") return {ChatInput::Kind::clear, ""};
    if (name == "/bye" || name == "/exit") return {ChatInput::Kind::bye, ""};
    if (name == "/?" || name == "/help") return {ChatInput::Kind::help, ""};
    return {ChatInput::Kind::unknown, std::string(name)};
}

std::string_view chat_help() {
    return "Commands:\n"
           "  /system TEXT   set the system message (/system alone removes it)\n"
           "  /clear         forget the conversation (the system message stays)\n"
           "  /bye           exit (also Ctrl-D, or Ctrl-C twice at the prompt)\n"
           "  /?             this help\n"
           "Ctrl-C while an answer streams stops that answer.\n";
}

}  // namespace loom::cli
