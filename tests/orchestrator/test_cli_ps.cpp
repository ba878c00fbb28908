// `loom ps` and `loom models` against a real loom-orchestrator in front of a CPU worker: the table
// and --json (backend, memory, context, tokens/s over the last minute), presets, API keys, and a
// clear error with a non-zero exit when the orchestrator cannot be reached.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "catch.hpp"
#include "orchestrator/orchestrator_process.h"
#include "support/run_command.h"
#include "worker/worker_api.h"

namespace {

using namespace loom::test;

const std::string kPreset =
    R"({"name":"teller","model":"stories260K","system":"Lily had a dog.","parameters":{"temperature":0}})";

struct Served {
    Worker worker{std::vector<std::string>{}};
    OrchestratorProcess orch;
    explicit Served(std::vector<std::string> extra = {}) : orch({worker.port()}, with_preset(std::move(extra))) {}
    static std::vector<std::string> with_preset(std::vector<std::string> extra) {
        extra.insert(extra.end(), {"--preset", kPreset});
        return extra;
    }
    std::string url() const { return worker_url(orch.port()); }
};

CommandResult run_loom(const std::string& args) { return run_command(loom_bin() + " " + args); }

}  // namespace

TEST_CASE("loom ps: a table and --json with backend, memory, context and tokens/s", "[cli][ps]") {
    Served s;
    // 30 tokens relayed in the last minute: 0.5 tokens/s.
    post_ok(s.orch.port(), "/v1/completions",
            {{"model", "stories260K"}, {"prompt", "Once"}, {"max_tokens", 30}, {"ignore_eos", true}});
    CommandResult r = run_loom("ps --json --orchestrator " + s.url());
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const json j = json::parse(r.out);
    REQUIRE(j.at("workers").size() == 1);
    const json& w = j["workers"][0];
    CHECK(w.at("model") == "stories260K");
    CHECK(w.at("worker") == "w0");
    CHECK(w.at("url") == worker_url(s.worker.port()));
    CHECK(w.at("backend") == backend());
    // A GPU worker's UUID as nvidia-smi -L prints it; none for the CPU backend.
    CHECK((backend() == "cpu" ? w.at("device_uuid").is_null()
                              : w.at("device_uuid").get<std::string>().starts_with("GPU-")));
    CHECK(w.at("state") == "ready");
    CHECK(w.at("context_size").get<int>() > 0);
    CHECK(w.at("bytes").at("weights").get<int64_t>() > 0);
    CHECK(w.at("bytes").at("kv_cache").get<int64_t>() > 0);
    CHECK(w.at("running") == 0);
    CHECK(w.at("queued") == 0);
    CHECK(w.at("tokens_per_s").get<double>() == Approx(0.5));
    CHECK(w.at("until").is_null());  // a --worker: never unloaded by the orchestrator

    r = run_loom("ps --orchestrator " + s.url());
    REQUIRE(r.exit_code == 0);
    INFO(r.out);
    CHECK(r.out.rfind("MODEL", 0) == 0);
    for (const char* column : {"BACKEND", "DEVICE", "GPU UUID", "MEMORY (WEIGHTS / KV / WORKSPACE)", "CONTEXT",
                               "RUNNING/QUEUED", "TOKENS/S (1 MIN)", "UNTIL"})
        CHECK(r.out.find(column) != std::string::npos);
    const std::string row = r.out.substr(r.out.find('\n') + 1);
    CHECK(row.rfind("stories260K", 0) == 0);
    CHECK(row.find("w0 " + worker_url(s.worker.port())) != std::string::npos);
    CHECK(row.find("   " + backend() + "   ") != std::string::npos);
    CHECK(row.find(" 0/0 ") != std::string::npos);
    CHECK(row.find(" 0.5 ") != std::string::npos);
    CHECK(row.find("MiB / ") != std::string::npos);
}

TEST_CASE("loom models: served models and presets, a table and --json", "[cli][models]") {
    Served s({"--api-key", "sesame"});
    CommandResult r = run_loom("models --json --api-key sesame --orchestrator " + s.url());
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const json j = json::parse(r.out);
    const json expected = json::array({{{"name", "stories260K"},
                                        {"type", "model"},
                                        {"base_model", "stories260K"},
                                        {"workers", 1},
                                        {"backends", {backend()}}},
                                       {{"name", "teller"},
                                        {"type", "preset"},
                                        {"base_model", "stories260K"},
                                        {"workers", 1},
                                        {"backends", {backend()}}}});
    CHECK(j.at("models") == expected);

    r = run_command("LOOM_API_KEY=sesame " + loom_bin() + " models --orchestrator " + s.url());
    REQUIRE(r.exit_code == 0);
    INFO(r.out);
    CHECK(r.out.rfind("NAME", 0) == 0);
    CHECK(r.out.find("teller        preset   stories260K   1         " + backend()) != std::string::npos);

    r = run_loom("models --orchestrator " + s.url());  // no key: the orchestrator's 401, said plainly
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("answered /v1/models with 401") != std::string::npos);
}

TEST_CASE("loom ps and models: an unreachable orchestrator is a clear error, exit 1", "[cli]") {
    for (const char* cmd : {"ps", "models"}) {
        CommandResult r = run_loom(std::string(cmd) + " --orchestrator http://127.0.0.1:1");
        INFO(r.err);
        CHECK(r.exit_code == 1);
        CHECK(r.err.find("the orchestrator at http://127.0.0.1:1 did not answer") != std::string::npos);
        CHECK(r.out.empty());
        r = run_loom(std::string(cmd) + " --orchestrator https://example.com");
        CHECK(r.exit_code == 2);
        CHECK(r.err.find("--orchestrator 'https://example.com'") != std::string::npos);
    }
}
