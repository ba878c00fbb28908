// Entry point of the `loom` command.
#include <cstdio>

#include "cli/commands.h"

int main(int argc, char** argv) {
    CLI::App app{"loom: a from-scratch LLM inference engine"};
    app.require_subcommand(1);
    int exit_code = 0;
    loom::cli::register_inspect(app, exit_code);
    loom::cli::register_synth(app, exit_code);
    loom::cli::register_tokenize(app, exit_code);
    loom::cli::register_chat_template(app, exit_code);
    loom::cli::register_generate(app, exit_code);
    loom::cli::register_gpu_info(app, exit_code);
    loom::cli::register_gpu_check(app, exit_code);
    loom::cli::register_pull(app, exit_code);
    loom::cli::register_list(app, exit_code);
    loom::cli::register_rm(app, exit_code);
    loom::cli::register_ps(app, exit_code);
    loom::cli::register_models(app, exit_code);
    loom::cli::register_run(app, exit_code);
    loom::cli::register_bench(app, exit_code);
    loom::cli::register_completion(app, exit_code);
    loom::cli::add_examples(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help and --version exit 0; every malformed command line is a bad-input exit 2.
        return app.exit(e) == 0 ? 0 : 2;
    }
    return exit_code;
}
