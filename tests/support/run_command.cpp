// Command runner for CLI tests: stdin from a temp file, stdout/stderr into temp files.
#include "support/run_command.h"

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sys/wait.h>

#include "support/test_data.h"

namespace loom::test {

namespace {
std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
}  // namespace

std::string shell_quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += (c == '\'') ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

std::string loom_bin() {
    const char* bin = std::getenv("LOOM_BIN");
    if (!bin || !*bin) skip_program("LOOM_BIN is not set (run through ctest)");
    return shell_quote(bin);
}

CommandResult run_command(const std::string& command, const std::string& stdin_text) {
    const auto dir = temp_dir();
    {
        std::ofstream in(dir / "stdin", std::ios::binary);
        in << stdin_text;
    }
    const std::string full = command + " <" + shell_quote((dir / "stdin").string()) + " >" +
                             shell_quote((dir / "stdout").string()) + " 2>" + shell_quote((dir / "stderr").string());
    const int status = std::system(full.c_str());
    CommandResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(dir / "stdout");
    r.err = slurp(dir / "stderr");
    std::filesystem::remove_all(dir);
    return r;
}

}  // namespace loom::test
