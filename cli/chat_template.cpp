// `loom chat-template -m FILE --messages JSON [--add-generation-prompt]`: prints the model's chat
// template rendered for the conversation, exactly (no trailing newline added).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "models/model_cache.h"
#include "gguf/reader.h"
#include "tokenizer/chat_template.h"

namespace loom::cli {

void register_chat_template(CLI::App& app, int& exit_code) {
    auto* cmd = app.add_subcommand("chat-template", "Render the model's chat template for a conversation");
    struct Options {
        std::string model;
        std::string messages;
        bool add_generation_prompt = false;
    };
    auto opt = std::make_shared<Options>();
    cmd->add_option("-m,--model", opt->model, "GGUF file or cached model name")
        ->required()
        ->transform(models::file_or_cached_model());
    cmd->add_option("--messages", opt->messages, R"(Conversation as JSON: [{"role": "user", "content": "..."}])")
        ->required();
    cmd->add_flag("--add-generation-prompt", opt->add_generation_prompt, "End with the assistant turn's opening");
    cmd->callback([opt, &exit_code] {
        // Warnings (the ChatML fallback) go to stderr so stdout holds only the prompt.
        spdlog::set_default_logger(spdlog::stderr_color_st("chat-template"));
        try {
            tokenizer::ChatTemplateInputs inputs;
            try {
                inputs.messages = nlohmann::ordered_json::parse(opt->messages);
            } catch (const nlohmann::json::parse_error& e) {
                throw std::runtime_error(std::string("--messages is not valid JSON: ") + e.what());
            }
            if (!inputs.messages.is_array()) throw std::runtime_error("--messages must be a JSON array of messages");
            for (const auto& m : inputs.messages)
                if (!m.is_object()) throw std::runtime_error("--messages: every message must be a JSON object");
            inputs.add_generation_prompt = opt->add_generation_prompt;
            const auto file = gguf::File::open(opt->model);
            const auto tokens = tokenizer::special_token_strings(file);
            inputs.bos_token = tokens.bos;
            inputs.eos_token = tokens.eos;
            const auto chat_template = tokenizer::ChatTemplate::from_gguf(file);
            const std::string prompt = chat_template.render(inputs);
            std::fwrite(prompt.data(), 1, prompt.size(), stdout);
            std::fflush(stdout);
            exit_code = 0;
        } catch (const tokenizer::jinja::Error& e) {
            std::fprintf(stderr, "loom chat-template: %s: chat template error at %s\n", opt->model.c_str(), e.what());
            exit_code = 2;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "loom chat-template: %s\n", e.what());
            exit_code = 2;
        }
    });
}

}  // namespace loom::cli
