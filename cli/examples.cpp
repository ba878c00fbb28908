// The example every command's --help ends with (CLI11 footers), kept in one table so that a command
// without one is easy to see (tests/cli/test_help.cpp checks each has one).
#include <map>
#include <string>

#include "cli/commands.h"

namespace loom::cli {

void add_examples(CLI::App& app) {
    static const std::map<std::string, std::string> kExamples = {
        {"inspect", "loom inspect model.gguf --tensors"},
        {"synth",
         "loom synth --arch llama --shape stories260k --type q8_0 --vocab stories260K.gguf --seed 1 -o synth.gguf"},
        {"tokenize", "printf 'Hello world' | loom tokenize -m model.gguf"},
        {"detokenize", "echo '15043 3186' | loom detokenize -m model.gguf"},
        {"chat-template",
         R"(loom chat-template -m model.gguf --messages '[{"role":"user","content":"Hi"}]' --add-generation-prompt)"},
        {"generate",
         "loom generate -m model.gguf --chat 'Why is the sky blue?' -n 64   (add --backend cpu without a GPU)"},
        {"gpu-info", "loom gpu-info --json"},
        {"gpu-check", "loom gpu-check -m bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M"},
        {"ps", "loom ps --orchestrator http://127.0.0.1:9000"},
        {"models", "loom models --json"},
        {"run", "loom run bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M   (or -p 'Hi' to answer once)"},
        {"bench", "loom bench -m model.gguf --batch 1,8,32 --json"},
        {"completion",
         "source <(loom completion bash)   (or save it under ~/.local/share/bash-completion/completions/loom)"},
    };
    for (CLI::App* cmd : app.get_subcommands({})) {
        if (!cmd->get_footer().empty()) continue;  // pull, list, rm write their own
        if (const auto it = kExamples.find(cmd->get_name()); it != kExamples.end())
            cmd->footer("Example: " + it->second);
    }
}

}  // namespace loom::cli
