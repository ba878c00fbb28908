// `loom ps [--orchestrator URL] [--json]`: the workers behind a loom-orchestrator as `ollama ps`
// lists loaded models: model, worker, device and GPU UUID, backend, memory by purpose, context, load, tokens/s.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "cli/orchestrator_client.h"
#include "cli/table.h"

namespace loom::cli {
namespace {

using nlohmann::json;

// The bytes a worker reserved for `purpose` ("weights", "kv_cache", "workspace"); null when it has none.
json reserved(const json& worker, const char* purpose) {
    const json& v = worker.contains("vram_bytes") ? worker["vram_bytes"] : json();
    if (!v.is_object() || !v.contains(purpose) || !v[purpose].is_object()) return nullptr;
    return v[purpose].value("reserved", json());
}

std::string text(const json& v) {
    if (v.is_string()) return v.get<std::string>().empty() ? "-" : v.get<std::string>();
    return v.is_null() ? "-" : v.dump();
}

// One worker of /health as `loom ps --json` gives it (`until`: Unix seconds when keep_alive unloads its
// idle model; null for workers the orchestrator does not unload, or while busy).
json row_of(const json& w) {
    return {{"model", w.value("model", "")},
            {"worker", w.value("id", "")},
            {"url", w.value("url", "")},
            {"state", w.value("state", "")},
            {"device", w.value("device", "")},
            {"device_uuid", w.contains("device_uuid") && w["device_uuid"].is_string() ? w["device_uuid"] : json()},
            {"backend", w.value("backend", "")},
            {"bytes",
             {{"weights", reserved(w, "weights")},
              {"kv_cache", reserved(w, "kv_cache")},
              {"workspace", reserved(w, "workspace")}}},
            {"context_size", w.value("context_size", 0)},
            {"running", w.value("running", 0)},
            {"queued", w.value("waiting", 0)},
            {"tokens_per_s", w.value("tokens_per_s", 0.0)},
            {"until", w.contains("until") && w["until"].is_number() ? w["until"] : json()}};
}

std::string bytes_cell(const json& b) {
    std::string out;
    for (const char* purpose : {"weights", "kv_cache", "workspace"}) {
        const json& v = b[purpose];
        out += (out.empty() ? "" : " / ") + (v.is_number_integer() ? human_bytes(v.get<int64_t>()) : std::string("-"));
    }
    return out;
}

// "4m 59s" until an idle model is unloaded, "-" when it is not going to be.
std::string until_cell(const json& until) {
    if (!until.is_number()) return "-";
    const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    const auto left = static_cast<long long>(std::max(0.0, until.get<double>() - now));
    return left >= 60 ? std::to_string(left / 60) + "m " + std::to_string(left % 60) + "s" : std::to_string(left) + "s";
}

std::string table(const json& rows) {
    std::vector<std::vector<std::string>> cells = {{"MODEL", "WORKER", "STATE", "DEVICE", "GPU UUID", "BACKEND",
                                                    "MEMORY (WEIGHTS / KV / WORKSPACE)", "CONTEXT", "RUNNING/QUEUED",
                                                    "TOKENS/S (1 MIN)", "UNTIL"}};
    for (const json& r : rows) {
        char rate[32];
        std::snprintf(rate, sizeof rate, "%.1f", r["tokens_per_s"].get<double>());
        const int ctx = r["context_size"];
        cells.push_back({text(r["model"]), r["worker"].get<std::string>() + " " + r["url"].get<std::string>(),
                         text(r["state"]), text(r["device"]), text(r["device_uuid"]), text(r["backend"]),
                         bytes_cell(r["bytes"]) + (r["backend"] == "cpu" ? " (host RAM)" : ""),
                         ctx > 0 ? std::to_string(ctx) : "-",
                         std::to_string(r["running"].get<int>()) + "/" + std::to_string(r["queued"].get<int>()), rate,
                         until_cell(r["until"])});
    }
    return render_table(cells);
}

int run(const std::string& url, bool as_json) {
    try {
        const json health = get_orchestrator_json(url, "/health", "");
        if (!health.contains("workers") || !health["workers"].is_array())
            throw OrchestratorError("the orchestrator at " + url + " answered /health without a workers list");
        json rows = json::array();
        for (const json& w : health["workers"])
            if (w.is_object()) rows.push_back(row_of(w));
        if (as_json)
            std::printf("%s\n", json{{"status", health.value("status", "")}, {"workers", rows}}.dump().c_str());
        else
            std::fputs(table(rows).c_str(), stdout);
        return 0;
    } catch (const BadOrchestratorUrl& e) {
        std::fprintf(stderr, "loom ps: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "loom ps: %s\n", e.what());
        return 1;
    }
}

}  // namespace

void register_ps(CLI::App& app, int& exit_code) {
    auto* cmd = app.add_subcommand("ps", "List the workers behind a loom-orchestrator and what they run");
    auto url = std::make_shared<std::string>(kDefaultOrchestrator);
    auto as_json = std::make_shared<bool>(false);
    cmd->add_option("--orchestrator", *url,
                    std::string("The orchestrator's URL (default ") + kDefaultOrchestrator + ")");
    cmd->add_flag("--json", *as_json, "Print one JSON object");
    cmd->callback([url, as_json, &exit_code] { exit_code = run(*url, *as_json); });
}

}  // namespace loom::cli
