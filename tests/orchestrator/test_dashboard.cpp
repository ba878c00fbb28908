// The dashboard through a real orchestrator and CPU worker: the page (HTML, nothing loaded from
// elsewhere), the state it polls (the worker with its backend, the recent requests with their token
// counts, tokens per second), the API-key rule of the state, and the worker written alike there, in
// /health and in /admin/workers.
#include <chrono>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <thread>

#include "catch.hpp"
#include "orchestrator/orchestrator_process.h"
#include "worker/worker_api.h"

namespace {

using namespace loom::test;

json state(int port, const HeaderList& headers = {}) {
    const HttpReply r = http_request(port, "GET", "/dashboard/state", "", headers);
    INFO(r.body);
    REQUIRE(r.status == 200);
    return json::parse(r.body);
}

// The state once `pred` holds of it (requests are logged as they end; tokens/s counts whole seconds).
template <class Pred>
json state_when(int port, Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    json s = state(port);
    while (!pred(s) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        s = state(port);
    }
    INFO(s.dump());
    REQUIRE(pred(s));
    return s;
}

int64_t sum(const json& counts) {
    int64_t n = 0;
    for (const json& c : counts) n += c.get<int64_t>();
    return n;
}

}  // namespace

TEST_CASE("GET / serves the dashboard: HTML that loads nothing from elsewhere", "[orchestrator][dashboard]") {
    CpuWorker w({});
    OrchestratorProcess orch({w.port()});
    const HttpReply r = http_request(orch.port(), "GET", "/");
    REQUIRE(r.status == 200);
    CHECK(r.headers.at("content-type").rfind("text/html", 0) == 0);
    CHECK(r.headers.at("content-security-policy").find("default-src 'none'") != std::string::npos);
    CHECK(r.body.rfind("<!DOCTYPE html>", 0) == 0);
    CHECK(r.body.find("<canvas") != std::string::npos);
    CHECK(r.body.find("/dashboard/state") != std::string::npos);
    // No URL with a scheme or a protocol-relative one, no external script, stylesheet or import.
    CHECK_FALSE(std::regex_search(r.body, std::regex(R"([a-zA-Z][a-zA-Z0-9+.-]*://)")));
    const std::regex link(R"re((src|href)\s*=\s*"([^"]*)")re");
    for (auto it = std::sregex_iterator(r.body.begin(), r.body.end(), link); it != std::sregex_iterator(); ++it) {
        INFO((*it)[0].str());
        CHECK((*it)[2].str().rfind("data:", 0) == 0);  // the empty icon only (no /favicon.ico request)
    }
    CHECK_FALSE(std::regex_search(r.body, std::regex(R"re((src|href)\s*=\s*[^"\s])re")));  // unquoted ones
    CHECK(r.body.find("@import") == std::string::npos);
    CHECK(r.body.find("url(") == std::string::npos);
    CHECK(r.body.find("innerHTML") == std::string::npos);  // data goes into the page as text only
    CHECK(http_request(orch.port(), "POST", "/").status == 405);
}

TEST_CASE("/dashboard/state: the CPU worker, and each ended request with its token counts",
          "[orchestrator][dashboard]") {
    CpuWorker w({});
    OrchestratorProcess orch({w.port()});
    json s = state(orch.port());
    REQUIRE(s.at("workers").size() == 1);
    const json& worker = s["workers"][0];
    CHECK(worker.at("url") == worker_url(w.port()));
    CHECK(worker.at("state") == "ready");
    CHECK(worker.at("backend") == "cpu");
    CHECK(worker.at("model") == "stories260K");
    CHECK(worker.at("vram_bytes").is_object());
    CHECK_FALSE(worker.contains("vram"));  // one shape: vram_bytes
    CHECK(s.at("models") == json::array({"stories260K"}));
    CHECK(s.at("requests").empty());
    CHECK(sum(s.at("throughput").at("cluster")) == 0);

    const json chat = {{"model", "stories260K"},
                       {"messages", {{{"role", "user"}, {"content", "Tell me a story"}}}},
                       {"max_tokens", 24},
                       {"temperature", 0},
                       {"stream_options", {{"include_usage", true}}}};
    const Streamed streamed = stream(orch.port(), "/v1/chat/completions", chat);
    REQUIRE(streamed.usage.is_object());
    s = state_when(orch.port(), [](const json& j) { return j.at("requests").size() == 1; });
    json r = s["requests"][0];
    CHECK(r.at("id") == streamed.id);
    CHECK(r.at("model") == "stories260K");
    CHECK(r.at("endpoint") == "chat");
    CHECK(r.at("stream") == true);
    CHECK(r.at("status") == 200);
    CHECK(r.at("prompt_tokens") == streamed.usage.at("prompt_tokens"));
    CHECK(r.at("completion_tokens") == streamed.usage.at("completion_tokens"));
    CHECK(r.at("finish_reason") == streamed.finish_reason);
    CHECK(r.at("worker") == worker_url(w.port()));
    CHECK(r.at("backend") == "cpu");
    CHECK(r.at("ttft_s").get<double>() > 0);
    CHECK(r.at("ttft_s").get<double>() <= r.at("duration_s").get<double>());

    // A whole answer: its usage's counts; the newest request comes first.
    const json whole =
        post_ok(orch.port(), "/v1/completions",
                {{"model", "stories260K"}, {"prompt", "Once upon a time"}, {"max_tokens", 7}, {"temperature", 0}});
    s = state_when(orch.port(), [](const json& j) { return j.at("requests").size() == 2; });
    r = s["requests"][0];
    CHECK(r.at("id") == whole.at("id"));
    CHECK(r.at("endpoint") == "completions");
    CHECK(r.at("stream") == false);
    CHECK(r.at("prompt_tokens") == whole.at("usage").at("prompt_tokens"));
    CHECK(r.at("completion_tokens") == whole.at("usage").at("completion_tokens"));
    CHECK(r.at("finish_reason") == whole.at("choices")[0].at("finish_reason"));
    CHECK(r.at("ttft_s").is_null());

    // Every generated token lands in the worker's and the cluster's per-second counts.
    const int64_t generated = streamed.usage.at("completion_tokens").get<int64_t>() +
                              whole.at("usage").at("completion_tokens").get<int64_t>();
    const std::string url = worker_url(w.port());
    s = state_when(orch.port(), [&](const json& j) { return sum(j.at("throughput").at("cluster")) == generated; });
    CHECK(sum(s["throughput"]["workers"].at(url)) == generated);
    CHECK(s["throughput"].at("cluster").size() == s["throughput"].at("seconds").get<size_t>());
}

TEST_CASE("/dashboard/state takes the API key as /v1/* does; the page itself does not", "[orchestrator][dashboard]") {
    CpuWorker w{std::vector<std::string>{"--api-key", "k1"}};
    OrchestratorProcess orch{{w.port()}, {"--api-key", "k1"}};
    CHECK(http_request(orch.port(), "GET", "/").status == 200);
    const HttpReply refused = http_request(orch.port(), "GET", "/dashboard/state");
    CHECK(refused.status == 401);
    CHECK(http_request(orch.port(), "GET", "/dashboard/state", "", {{"Authorization", "Bearer wrong"}}).status == 401);
    CHECK(state(orch.port(), {{"Authorization", "Bearer k1"}}).at("workers").size() == 1);
}

// One writer (worker_status_json) behind the three lists: a field dropped from any of them, or a
// value written differently, fails here.
TEST_CASE("/health, /admin/workers and /dashboard/state list a worker as the same object",
          "[orchestrator][dashboard][admin]") {
    CpuWorker w({});
    OrchestratorProcess orch({w.port()});
    const std::set<std::string> fields = {"id",           "url",           "origin",        "state",
                                          "drained",      "model",         "backend",       "device",
                                          "device_index", "device_uuid",   "running",       "waiting",
                                          "context_size", "sequences_max", "requests_here", "outstanding_tokens",
                                          "vram_bytes"};
    const auto only_worker = [](const HttpReply& r) {
        INFO(r.body);
        REQUIRE(r.status == 200);
        const json list = json::parse(r.body).at("workers");
        REQUIRE(list.size() == 1);
        return list[0];
    };
    const auto keys = [](const json& o) {
        std::set<std::string> k;
        for (const auto& [name, value] : o.items()) k.insert(name);
        return k;
    };
    const json health = only_worker(http_request(orch.port(), "GET", "/health"));
    const json admin = only_worker(http_request(orch.port(), "GET", "/admin/workers"));
    const json dashboard = state(orch.port()).at("workers")[0];
    std::set<std::string> health_fields = fields;
    health_fields.insert({"tokens_per_s", "vram_estimate_bytes", "until"});  // /health's own, beside them
    CHECK(keys(health) == health_fields);
    CHECK(keys(admin) == fields);  // a static worker: no process fields
    CHECK(keys(dashboard) == fields);
    for (const std::string& f : fields) {
        INFO(f << ": /health " << health.at(f).dump() << ", /admin/workers " << admin.at(f).dump()
               << ", /dashboard/state " << dashboard.at(f).dump());
        CHECK(admin.at(f) == health.at(f));
        CHECK(dashboard.at(f) == health.at(f));
    }
    CHECK(health.at("origin") == "static");
    CHECK(health.at("device_index").is_null());  // a CPU worker names no GPU
    CHECK(health.at("device_uuid").is_null());
    CHECK(health.at("state") == "ready");
    CHECK(health.at("sequences_max").get<int>() > 0);
    CHECK(health.at("context_size").get<int>() > 0);
    CHECK(health.at("vram_bytes").at("weights").at("reserved").get<int64_t>() > 0);  // host RAM on a CPU worker
}
