// `loom list`: the models in loom's cache (name, size, quantization, architecture, path).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "models/model_cache.h"
#include "cli/progress.h"

namespace loom::cli {
namespace {

void print_table(const std::vector<models::CachedModel>& cached) {
    size_t w = 4;
    for (const auto& m : cached) w = std::max(w, m.name.size());
    const int nw = static_cast<int>(w);
    std::printf("%-*s  %10s  %-8s  %-12s  %s\n", nw, "NAME", "SIZE", "QUANT", "ARCH", "PATH");
    for (const auto& m : cached)
        std::printf("%-*s  %10s  %-8s  %-12s  %s\n", nw, m.name.c_str(), human_bytes(m.size).c_str(), m.quant.c_str(),
                    m.architecture.c_str(), m.path.c_str());
}

}  // namespace

void register_list(CLI::App& app, int& exit_code) {
    auto* cmd = app.add_subcommand("list", "List the models in loom's cache ($LOOM_MODELS)");
    auto json = std::make_shared<bool>(false);
    auto names = std::make_shared<bool>(false);
    cmd->add_flag("--json", *json, "One JSON array");
    cmd->add_flag("--names", *names, "Only the names, one a line (for shell completion)");
    cmd->footer("Example: loom list    (a NAME works wherever -m takes a file, and with loom rm)");
    cmd->callback([json, names, &exit_code] {
        try {
            const auto cached = models::list_cached(models::models_dir());
            if (*names) {
                for (const auto& m : cached) std::printf("%s\n", m.name.c_str());
                return;
            }
            if (!*json) return print_table(cached);
            auto out = nlohmann::json::array();
            for (const auto& m : cached)
                out.push_back({{"name", m.name},
                               {"size", m.size},
                               {"quant", m.quant},
                               {"architecture", m.architecture},
                               {"path", m.path.string()}});
            std::printf("%s\n", out.dump().c_str());
        } catch (const std::exception& e) {
            std::fprintf(stderr, "loom list: %s\n", e.what());
            exit_code = 1;
        }
    });
}

}  // namespace loom::cli
