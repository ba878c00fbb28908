// `loom completion bash`: a bash completion script generated from the command tree itself, so every
// command and flag is there; model arguments complete with `loom list --names` and files.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace loom::cli {
namespace {

// The bash function's fixed part: word under the cursor (':' kept, as in ORG/REPO:QUANT), then
// completion of the command name, an option's value, a flag, or a positional model argument.
constexpr const char* kFunction = R"BASH(
_loom_models() { command loom list --names 2>/dev/null; }

# Completions of $2 for a kind of argument: @model (cached names and files), @file, or words.
_loom_reply() {
    case "$1" in
        @model) COMPREPLY=($(compgen -W "$(_loom_models)" -- "$2") $(compgen -f -- "$2")) ;;
        @file) COMPREPLY=($(compgen -f -- "$2")) ;;
        *) COMPREPLY=($(compgen -W "$1" -- "$2")) ;;
    esac
}

_loom() {
    # Words from the line itself: COMP_WORDS splits ORG/REPO:QUANT at its ':'.
    local line="${COMP_LINE:0:COMP_POINT}" cur=""
    local -a w
    read -ra w <<< "$line"
    local n=${#w[@]}
    if [[ -n "$line" && "$line" != *[[:space:]] ]]; then cur="${w[n-1]}"; n=$((n - 1)); fi
    if (( n <= 1 )); then
        _loom_reply "$_loom_commands --help" "$cur"
        return
    fi
    local cmd="${w[1]}" prev="${w[n-1]}" values
    values="$(_loom_values "$cmd" "$prev")"
    if [[ -n "$values" ]]; then
        _loom_reply "$values" "$cur"
    elif [[ "$cur" == -* ]]; then
        _loom_reply "$(_loom_flags "$cmd")" "$cur"
    else
        _loom_reply "$(_loom_positional "$cmd")" "$cur"
    fi
    # Bash replaces only what follows the word's last ':'.
    if [[ "$cur" == *:* && "$COMP_WORDBREAKS" == *:* ]]; then
        local head="${cur%"${cur##*:}"}"
        COMPREPLY=("${COMPREPLY[@]#"$head"}")
    fi
}
complete -F _loom loom
)BASH";

bool takes_model(const CLI::Option* opt) {
    for (const std::string& n : opt->get_lnames())
        if (n == "model") return true;
    return false;
}

bool takes_value(const CLI::Option* opt) { return opt->get_type_size_max() > 0; }

// What follows a positional argument: a model (cached names and files), except for pull (a Hub
// reference) and completion (a shell).
std::string positional_kind(const CLI::App& cmd) {
    if (cmd.get_name() == "completion") return "bash";
    if (cmd.get_name() == "pull") return "";
    for (const CLI::Option* opt : cmd.get_options())
        if (opt->get_positional()) return "@model";
    return "";
}

std::string script(const CLI::App& app) {
    std::string commands, flags, values, positional;
    for (const CLI::App* cmd : app.get_subcommands({})) {
        const std::string& name = cmd->get_name();
        commands += (commands.empty() ? "" : " ") + name;
        std::string f;
        for (const CLI::Option* opt : cmd->get_options()) {
            for (const std::string& s : opt->get_snames()) f += " -" + s;
            for (const std::string& l : opt->get_lnames()) f += " --" + l;
            if (!takes_value(opt)) continue;
            // An option's value: a model, a backend, else a file (what bash offers by default).
            const std::string what = takes_model(opt) ? "@model" : opt->check_lname("backend") ? "cuda cpu" : "@file";
            for (const std::string& s : opt->get_snames())
                values += "        " + name + "\\ -" + s + ") echo \"" + what + "\" ;;\n";
            for (const std::string& l : opt->get_lnames())
                values += "        " + name + "\\ --" + l + ") echo \"" + what + "\" ;;\n";
        }
        if (!f.empty()) f.erase(0, 1);
        flags += "        " + name + ") echo \"" + f + "\" ;;\n";
        positional += "        " + name + ") echo \"" + positional_kind(*cmd) + "\" ;;\n";
    }
    return "# bash completion for loom, made by `loom completion bash`.\n"
           "# Load it with: source <(loom completion bash)\n\n"
           "_loom_commands=\"" +
           commands +
           "\"\n\n"
           "_loom_flags() {\n    case \"$1\" in\n" +
           flags +
           "    esac\n}\n\n"
           "_loom_values() {\n    case \"$1 $2\" in\n" +
           values +
           "    esac\n}\n\n"
           "_loom_positional() {\n    case \"$1\" in\n" +
           positional + "    esac\n}\n" + kFunction;
}

}  // namespace

void register_completion(CLI::App& app, int& exit_code) {
    auto* cmd = app.add_subcommand("completion", "Print a shell completion script for loom");
    auto shell = std::make_shared<std::string>();
    cmd->add_option("shell", *shell, "The shell (bash)")->required()->check(CLI::IsMember({"bash"}));
    cmd->callback([&app, shell, &exit_code] {
        const std::string s = script(app);
        std::fwrite(s.data(), 1, s.size(), stdout);
        exit_code = 0;
    });
}

}  // namespace loom::cli
