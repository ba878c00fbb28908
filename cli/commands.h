// Registration of the `loom` subcommands; each lives in its own file and sets the exit code.
#pragma once

#include <CLI/CLI.hpp>

namespace loom::cli {

void register_inspect(CLI::App& app, int& exit_code);
void register_synth(CLI::App& app, int& exit_code);
void register_tokenize(CLI::App& app, int& exit_code);  // tokenize and detokenize
void register_chat_template(CLI::App& app, int& exit_code);
void register_generate(CLI::App& app, int& exit_code);
void register_gpu_info(CLI::App& app, int& exit_code);
void register_gpu_check(CLI::App& app, int& exit_code);
void register_pull(CLI::App& app, int& exit_code);
void register_list(CLI::App& app, int& exit_code);
void register_rm(CLI::App& app, int& exit_code);
void register_ps(CLI::App& app, int& exit_code);          // `loom ps`: a loom-orchestrator's workers
void register_models(CLI::App& app, int& exit_code);      // `loom models`: its models and presets
void register_run(CLI::App& app, int& exit_code);         // `loom run`: an interactive chat in this process
void register_bench(CLI::App& app, int& exit_code);       // `loom bench`: prefill and decode step timings
void register_completion(CLI::App& app, int& exit_code);  // `loom completion bash`
// Gives every registered command without a footer its --help example.
void add_examples(CLI::App& app);

}  // namespace loom::cli
