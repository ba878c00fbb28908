// `loom models [--orchestrator URL] [--api-key KEY] [--json]`: the models a loom-orchestrator's
// workers serve and its presets (with their base model), and the workers and backends behind each.
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "cli/commands.h"
#include "cli/orchestrator_client.h"
#include "cli/table.h"

namespace loom::cli {
namespace {

using nlohmann::json;

struct Serving {
    int ready = 0;
    std::set<std::string> backends;
};

// Ready workers and their backends per served model, from /health.
std::map<std::string, Serving> serving(const json& health) {
    std::map<std::string, Serving> out;
    if (!health.contains("workers") || !health["workers"].is_array()) return out;
    for (const json& w : health["workers"]) {
        if (!w.is_object() || w.value("state", "") != "ready") continue;
        Serving& s = out[w.value("model", "")];
        ++s.ready;
        s.backends.insert(w.value("backend", ""));
    }
    return out;
}

json rows_of(const json& models, const std::map<std::string, Serving>& by_model) {
    json rows = json::array();
    if (!models.contains("data") || !models["data"].is_array()) return rows;
    for (const json& m : models["data"]) {
        if (!m.is_object() || !m.contains("id") || !m["id"].is_string()) continue;
        const bool preset = m.value("preset", false);
        const std::string base = preset ? m.value("parent", "") : m["id"].get<std::string>();
        const auto it = by_model.find(base);
        json backends = json::array();
        if (it != by_model.end())
            for (const auto& b : it->second.backends) backends.push_back(b);
        rows.push_back({{"name", m["id"]},
                        {"type", preset ? "preset" : "model"},
                        {"base_model", base},
                        {"workers", it == by_model.end() ? 0 : it->second.ready},
                        {"backends", backends}});
    }
    return rows;
}

std::string table(const json& rows) {
    std::vector<std::vector<std::string>> cells = {{"NAME", "TYPE", "BASE MODEL", "WORKERS", "BACKENDS"}};
    for (const json& r : rows) {
        std::string backends;
        for (const json& b : r["backends"]) backends += (backends.empty() ? "" : ",") + b.get<std::string>();
        cells.push_back({r["name"].get<std::string>(), r["type"].get<std::string>(), r["base_model"].get<std::string>(),
                         std::to_string(r["workers"].get<int>()), backends.empty() ? "-" : backends});
    }
    return render_table(cells);
}

int run(const std::string& url, const std::string& api_key, bool as_json) {
    try {
        const json models = get_orchestrator_json(url, "/v1/models", api_key);
        const json rows = rows_of(models, serving(get_orchestrator_json(url, "/health", "")));
        if (as_json)
            std::printf("%s\n", json{{"models", rows}}.dump().c_str());
        else
            std::fputs(table(rows).c_str(), stdout);
        return 0;
    } catch (const BadOrchestratorUrl& e) {
        std::fprintf(stderr, "loom models: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "loom models: %s\n", e.what());
        return 1;
    }
}

}  // namespace

void register_models(CLI::App& app, int& exit_code) {
    auto* cmd = app.add_subcommand("models", "List the models and presets a loom-orchestrator serves");
    auto url = std::make_shared<std::string>(kDefaultOrchestrator);
    auto key = std::make_shared<std::string>();
    auto as_json = std::make_shared<bool>(false);
    cmd->add_option("--orchestrator", *url,
                    std::string("The orchestrator's URL (default ") + kDefaultOrchestrator + ")");
    cmd->add_option("--api-key", *key, "Bearer key, when the orchestrator has --api-key")->envname("LOOM_API_KEY");
    cmd->add_flag("--json", *as_json, "Print one JSON object");
    cmd->callback([url, key, as_json, &exit_code] { exit_code = run(*url, *key, *as_json); });
}

}  // namespace loom::cli
