// ChatSession (the conversation of `loom run`): the prompt for the next answer holds every earlier
// exchange and the system message as the chat template renders them; /commands are parsed.
#include <string>

#include "catch.hpp"
#include "cli/chat_session.h"

using loom::cli::ChatInput;
using loom::cli::ChatSession;
using loom::cli::parse_chat_input;

namespace {

ChatSession chatml_session() {
    return ChatSession(loom::tokenizer::ChatTemplate(std::string(loom::tokenizer::chatml_template())), {"<s>", "</s>"});
}

}  // namespace

TEST_CASE("the next prompt renders the conversation so far, then the new message", "[cli][run]") {
    ChatSession s = chatml_session();
    CHECK(s.render_next("Hi") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    s.add_exchange("My name is Alice.", "Hello Alice!");
    CHECK(s.exchanges() == 1);
    CHECK(s.render_next("What is my name?") ==
          "<|im_start|>user\nMy name is Alice.<|im_end|>\n<|im_start|>assistant\nHello Alice!<|im_end|>\n"
          "<|im_start|>user\nWhat is my name?<|im_end|>\n<|im_start|>assistant\n");
}

TEST_CASE("/system leads the prompt and survives /clear; an empty one removes it", "[cli][run]") {
    ChatSession s = chatml_session();
    s.set_system("Be brief.");
    s.add_exchange("a", "b");
    const std::string system = "<|im_start|>system\nBe brief.<|im_end|>\n";
    CHECK(s.render_next("c").rfind(system + "<|im_start|>user\na<|im_end|>\n", 0) == 0);
    s.clear();
    CHECK(s.exchanges() == 0);
    CHECK(s.history().empty());
    CHECK(s.render_next("c") == system + "<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n");
    s.set_system("");
    CHECK(s.render_next("c") == "<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n");
}

TEST_CASE("typed lines: messages, commands with their text, unknown commands", "[cli][run]") {
    const auto kind = [](std::string_view line) { return parse_chat_input(line).kind; };
    CHECK(kind("") == ChatInput::Kind::empty);
    CHECK(kind("  \t") == ChatInput::Kind::empty);
    CHECK(parse_chat_input("  hello there \r").text == "hello there");
    CHECK(kind("hello") == ChatInput::Kind::message);
    CHECK(kind("/bye") == ChatInput::Kind::bye);
    CHECK(kind(" /bye ") == ChatInput::Kind::bye);
    CHECK(kind("/clear") == ChatInput::Kind::clear);
    CHECK(kind("/?") == ChatInput::Kind::help);
    const ChatInput sys = parse_chat_input("/system   You are a pirate.  ");
    CHECK(sys.kind == ChatInput::Kind::system);
    CHECK(sys.text == "You are a pirate.");
    CHECK(parse_chat_input("/system").text.empty());
    const ChatInput unknown = parse_chat_input("/systemx hi");
    CHECK(unknown.kind == ChatInput::Kind::unknown);
    CHECK(unknown.text == "/systemx");
}
