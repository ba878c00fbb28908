// The orchestrator's relayed routes (/tokenize, /detokenize, /v1/models/{id}) and its /metrics: the
// added-latency histograms, requests by model, the workers' gauges with a worker label; its Server header.
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "orchestrator/orchestrator_process.h"
#include "orchestrator/worker_metrics.h"
#include "worker/worker_api.h"

namespace {

using namespace loom::test;

const json kTokenizeBodies[] = {
    {{"prompt", "Once upon a time"}},
    {{"prompt", "Once upon a time"}, {"model", "stories260K"}, {"add_special_tokens", false}},
    {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"add_generation_prompt", true}},
};

// The orchestrator's /metrics text once `pred` holds of it (the workers are scraped every second).
template <class Pred>
std::string metrics_when(int port, Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::string text = http_request(port, "GET", "/metrics").body;
    while (!pred(text) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        text = http_request(port, "GET", "/metrics").body;
    }
    return text;
}

}  // namespace

TEST_CASE("/tokenize and /detokenize through the orchestrator equal the worker's", "[orchestrator][routes]") {
    Worker w({});
    OrchestratorProcess orch({w.port()});
    for (const json& body : kTokenizeBodies) {
        INFO(body.dump());
        const HttpReply direct = post(w.port(), "/tokenize", body);
        const HttpReply relayed = post(orch.port(), "/tokenize", body);
        REQUIRE(direct.status == 200);
        CHECK(relayed.status == 200);
        CHECK(relayed.body == direct.body);
        CHECK(relayed.headers.at("x-worker") == worker_url(w.port()));
        const json tokens = {{"tokens", json::parse(direct.body).at("tokens")}};
        const HttpReply back = post(orch.port(), "/detokenize", tokens);
        CHECK(back.status == 200);
        CHECK(back.body == post(w.port(), "/detokenize", tokens).body);
    }
    // The worker's own 400s come back as they are; the orchestrator's checks name the field.
    const json bad = {{"tokens", "not a list"}};
    const HttpReply direct = post(w.port(), "/detokenize", bad);
    const HttpReply relayed = post(orch.port(), "/detokenize", bad);
    CHECK(direct.status == 400);
    CHECK(relayed.status == direct.status);
    CHECK(relayed.body == direct.body);
    CHECK(http_request(orch.port(), "POST", "/tokenize", "[1, 2]").status == 400);
    const HttpReply wrong_type = post(orch.port(), "/tokenize", {{"prompt", "x"}, {"model", 7}});
    CHECK(wrong_type.status == 400);
    CHECK(error_param(wrong_type) == "model");
    const HttpReply unknown = post(orch.port(), "/tokenize", {{"prompt", "x"}, {"model", "gpt-9"}});
    CHECK(unknown.status == 404);
    CHECK(json::parse(unknown.body).at("error").at("code") == "model_not_found");
}

TEST_CASE("GET /v1/models/{id}: the serving worker's answer, else 404 model_not_found", "[orchestrator][routes]") {
    Worker w({});
    OrchestratorProcess orch({w.port()});
    const HttpReply direct = http_request(w.port(), "GET", "/v1/models/stories260K");
    const HttpReply relayed = http_request(orch.port(), "GET", "/v1/models/stories260K");
    REQUIRE(relayed.status == 200);
    json a = json::parse(direct.body), b = json::parse(relayed.body);
    a.erase("created");  // seconds since the epoch: may tick between the two calls
    b.erase("created");
    CHECK(a == b);
    CHECK(b.at("id") == "stories260K");
    for (const std::string id : {"nope", "stories%20260K", "stories260K%2F..%2Fx"}) {
        const HttpReply r = http_request(orch.port(), "GET", "/v1/models/" + id);
        INFO(id << " -> " << r.status << " " << r.body);
        CHECK(r.status == 404);
        const json e = json::parse(r.body).at("error");
        CHECK(e.at("code") == "model_not_found");
        CHECK(e.at("param") == "model");
        CHECK(e.at("type") == "invalid_request_error");
    }
}

TEST_CASE("/metrics: added-latency histograms, requests by model, the workers' gauges", "[orchestrator][metrics]") {
    CpuWorker w({"--max-seqs", "1"});  // the CPU's pace: the busy request is still running when looked at
    OrchestratorProcess orch({w.port()});
    const Streamed s = stream(orch.port(), "/v1/completions",
                              with(with({{"prompt", "Once upon a time"}, {"model", "stories260K"}}, kGreedy),
                                   {{"max_tokens", 20}, {"ignore_eos", true}}));
    REQUIRE(s.chunks.size() >= 20);
    stream(orch.port(), "/v1/completions", {{"prompt", "Hello"}, {"max_tokens", 3}});  // names no model
    const int port = orch.port();
    const std::string h = "loom_orchestrator_added_latency_seconds";
    CHECK(metric(port, h + "_count{stage=\"request\"}") == 2);
    // At least one piece per streamed request: a piece holds every event the worker had written by the
    // time the relay read, so a fast stream can arrive whole in one (CI saw 2 pieces for the 2 requests).
    CHECK(metric(port, h + "_count{stage=\"chunk\"}") >= 2);
    CHECK(metric(port, h + "_sum{stage=\"request\"}") > 0);
    CHECK(metric(port, h + "_bucket{stage=\"request\",le=\"+Inf\"}") == 2);
    CHECK(metric(port, h + "_sum{stage=\"request\"}") < 2.0);  // two requests on a local worker
    CHECK(metric(port, "loom_orchestrator_requests_total{model=\"stories260K\",status=\"200\"}") == 1);
    CHECK(metric(port, "loom_orchestrator_requests_total{model=\"\",status=\"200\"}") == 1);
    // Unknown model names do not become label values.
    post(port, "/v1/completions", {{"prompt", "x"}, {"model", "attacker-chosen"}});
    CHECK(http_request(port, "GET", "/metrics").body.find("attacker-chosen") == std::string::npos);

    // The worker's gauges, relayed with its URL; a running stream shows in them.
    const std::string label = "{worker=\"" + worker_url(w.port()) + "\",model_name=\"stories260K\"}";
    for (const std::string name :
         {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"}) {
        const std::string text =
            metrics_when(port, [&](const std::string& t) { return t.find(name + label) != std::string::npos; });
        INFO(text);
        CHECK(text.find("# TYPE " + name + " gauge") != std::string::npos);
        CHECK(text.find(name + label + " ") != std::string::npos);
    }
    // Two long requests on a one-sequence worker keep one running for seconds (scrapes are 1 s apart).
    std::vector<std::thread> load;
    for (int i = 0; i < 2; ++i)
        load.emplace_back([&] {
            post(w.port(), "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2000}, {"ignore_eos", true}});
        });
    const std::string busy = metrics_when(port, [&](const std::string& t) {
        return t.find("vllm:num_requests_running" + label + " 1") != std::string::npos;
    });
    for (auto& t : load) t.join();
    CHECK(busy.find("vllm:num_requests_running" + label + " 1") != std::string::npos);
}

TEST_CASE("the orchestrator calls itself loom-orchestrator in its Server header", "[orchestrator][routes]") {
    Worker w({});
    OrchestratorProcess orch({w.port()});
    CHECK(http_request(orch.port(), "GET", "/health").headers.at("server") == "loom-orchestrator");
    CHECK(http_request(orch.port(), "GET", "/no/such/path").headers.at("server") == "loom-orchestrator");
    SseStream s(orch.port(), "/v1/completions", json{{"prompt", "Once"}, {"max_tokens", 2}, {"stream", true}}.dump());
    CHECK(s.headers().at("server") == "loom-orchestrator");
    read_stream(s, false);
    CHECK(http_request(w.port(), "GET", "/health").headers.at("server") == "loom-worker");
}

TEST_CASE("a worker's /metrics text: only the relayed gauges, labels unescaped, malformed lines skipped",
          "[orchestrator][metrics]") {
    using loom::orchestrator::WorkerMetrics;
    const std::string text =
        "# TYPE vllm:num_requests_running gauge\n"
        "vllm:num_requests_running{model_name=\"a \\\"b\\\" c\\\\d\"} 3\n"
        "vllm:num_requests_waiting 2 1700000000\n"
        "vllm:kv_cache_usage_perc{model_name=\"m\",x=\"y\"} 0.25\n"
        "vllm:prompt_tokens_total{model_name=\"m\"} 9\n"
        "vllm:num_requests_running{model_name=\"m\"} many\n"
        "vllm:num_requests_running{model_name=\"unterminated} 1\n"
        "vllm:num_requests_running{bad key=\"v\"} 1\n"
        "vllm:num_requests_running{model_name=\"m\"}\n"
        "vllm:num_requests_waiting_x 5\n";
    const auto samples = WorkerMetrics::parse(text);
    REQUIRE(samples.size() == 3);
    CHECK(samples[0].name == "vllm:num_requests_running");
    REQUIRE(samples[0].labels.size() == 1);
    CHECK(samples[0].labels[0].second == "a \"b\" c\\d");
    CHECK(samples[0].value == 3);
    CHECK(samples[1].name == "vllm:num_requests_waiting");
    CHECK(samples[1].labels.empty());
    CHECK(samples[1].value == 2);
    CHECK(samples[2].labels.size() == 2);
    CHECK(samples[2].value == 0.25);
}
