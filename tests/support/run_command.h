// Runs a command through the shell and captures its exit code, stdout and stderr (for CLI tests).
#pragma once

#include <string>

namespace loom::test {

struct CommandResult {
    int exit_code = -1;
    std::string out;
    std::string err;
};

// `command` is passed to /bin/sh; `stdin_text` is fed to its standard input.
CommandResult run_command(const std::string& command, const std::string& stdin_text = {});

// The `loom` binary under test ($LOOM_BIN, set by ctest), shell-quoted.
std::string loom_bin();

// Single-quotes a string for /bin/sh.
std::string shell_quote(const std::string& s);

}  // namespace loom::test
