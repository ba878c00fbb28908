// Every `loom` command's --help shows an example, and `loom completion bash` is valid bash that
// offers every command, its flags, backends, and cached model names (from `loom list --names`).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "catch.hpp"
#include "support/run_command.h"
#include "support/test_data.h"

namespace fs = std::filesystem;
using loom::test::run_command;
using loom::test::shell_quote;

namespace {

// The subcommands `loom --help` lists (the lines under "Subcommands:").
std::vector<std::string> commands() {
    const auto r = run_command(loom::test::loom_bin() + " --help");
    REQUIRE(r.exit_code == 0);
    std::istringstream in(r.out.substr(r.out.find("Subcommands:")));
    std::vector<std::string> names;
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line) && line.rfind("  ", 0) == 0) {
        std::istringstream words(line);
        std::string name;
        words >> name;
        names.push_back(name);
    }
    return names;
}

// What the script's _loom offers for a command line typed up to its end, one word a line.
std::string complete(const fs::path& script, const fs::path& models, const std::string& line) {
    const fs::path bin_dir = fs::path(std::getenv("LOOM_BIN")).parent_path();
    const std::string cmd = "PATH=" + shell_quote(bin_dir.string()) +
                            ":$PATH LOOM_MODELS=" + shell_quote(models.string()) +
                            " bash -c 'source \"$0\"; COMP_LINE=\"$1\"; COMP_POINT=${#COMP_LINE}; _loom; "
                            "printf \"%s\\n\" \"${COMPREPLY[@]}\"' " +
                            shell_quote(script.string()) + " " + shell_quote(line);
    const auto r = run_command(cmd);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return r.out;
}

}  // namespace

TEST_CASE("every command's --help shows an example", "[cli][help]") {
    const auto names = commands();
    CHECK(names.size() >= 16);
    for (const std::string& name : names) {
        INFO(name);
        const auto r = run_command(loom::test::loom_bin() + " " + name + " --help");
        CHECK(r.exit_code == 0);
        const auto example = r.out.find("Example: ");
        REQUIRE(example != std::string::npos);
        CHECK(r.out.find("loom " + name + " ", example) != std::string::npos);  // an example of this command
    }
}

TEST_CASE("completion bash is valid bash naming every command", "[cli][completion]") {
    const auto dir = loom::test::temp_dir();
    const auto r = run_command(loom::test::loom_bin() + " completion bash");
    REQUIRE(r.exit_code == 0);
    const fs::path script = dir / "loom.bash";
    std::ofstream(script) << r.out;
    const auto syntax = run_command("bash -n " + shell_quote(script.string()));
    INFO(syntax.err);
    CHECK(syntax.exit_code == 0);
    for (const std::string& name : commands()) {
        INFO(name);
        CHECK(r.out.find(" " + name + ") echo") != std::string::npos);  // its flags
        CHECK(complete(script, dir, "loom " + name.substr(0, name.size() - 1)).find(name + "\n") != std::string::npos);
    }
    CHECK(run_command(loom::test::loom_bin() + " completion zsh").exit_code == 2);
}

TEST_CASE("completion offers flags, backends and cached model names", "[cli][completion]") {
    const auto dir = loom::test::temp_dir();
    std::ofstream(dir / "loom.bash") << run_command(loom::test::loom_bin() + " completion bash").out;
    const fs::path models = dir / "models";
    fs::create_directories(models / "tiny/stories");
    fs::copy_file(loom::test::require_stories260k(), models / "tiny/stories/stories260K.gguf");
    const fs::path script = dir / "loom.bash";
    CHECK(complete(script, models, "loom run --ba") == "--backend\n");
    CHECK(complete(script, models, "loom bench --backend ") == "cuda\ncpu\n");
    CHECK(complete(script, models, "loom generate --ign") == "--ignore-eos\n");
    CHECK(complete(script, models, "loom run tiny/") == "tiny/stories/stories260K.gguf\n");
    CHECK(complete(script, models, "loom generate -m tiny/st") == "tiny/stories/stories260K.gguf\n");
    CHECK(complete(script, models, "loom completion ") == "bash\n");
    const auto list =
        run_command("LOOM_MODELS=" + shell_quote(models.string()) + " " + loom::test::loom_bin() + " list --names");
    CHECK(list.out == "tiny/stories/stories260K.gguf\n");
}
