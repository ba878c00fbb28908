// `loom rm NAME`: deletes a cached model (and any .partial of it), then the folders left empty.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "models/model_cache.h"

namespace loom::cli {
namespace {

int remove_model(const std::string& name) {
    namespace fs = std::filesystem;
    const fs::path root = models::models_dir();
    std::optional<fs::path> path;
    try {
        path = models::find_cached(root, name);
    } catch (const models::RefError& e) {
        std::fprintf(stderr, "loom rm: %s\n", e.what());
        return 2;
    }
    if (!path) {
        std::fprintf(stderr, "loom rm: no cached model '%s' in %s (loom list shows them)\n", name.c_str(),
                     root.c_str());
        return 2;
    }
    try {
        fs::remove(*path);
        fs::remove(path->string() + ".partial");
        for (fs::path dir = path->parent_path();
             dir != root && dir.string().starts_with(root.string()) && fs::is_empty(dir); dir = dir.parent_path())
            fs::remove(dir);
        std::printf("removed %s\n", path->c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "loom rm: %s\n", e.what());
        return 1;
    }
}

}  // namespace

void register_rm(CLI::App& app, int& exit_code) {
    auto* cmd = app.add_subcommand("rm", "Delete a model from loom's cache");
    auto name = std::make_shared<std::string>();
    cmd->add_option("name", *name, "A NAME from loom list (or ORG/REPO[:QUANT])")->required();
    cmd->footer("Example: loom rm bartowski/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_K_M.gguf");
    cmd->callback([name, &exit_code] { exit_code = remove_model(*name); });
}

}  // namespace loom::cli
