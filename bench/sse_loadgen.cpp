// BENCHMARK TOOL ONLY: sse_loadgen, a fake loom-worker that streams a fixed token sequence at a set
// rate in the worker's SSE format, the upstream of bench/orchestrator_overhead. No correctness test
// and no user path may use it.
#include <CLI/CLI.hpp>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <thread>

#include "bench/loadgen_stream.h"
#include "http/daemon_signals.h"
#include "http/http_server.h"
#include "http/secure_random.h"

namespace {

using loom::http::HttpRequest;
using loom::http::HttpResponse;
using nlohmann::json;
using namespace loom::bench;

struct Config {
    std::string host = "127.0.0.1";
    int port = 0;
    std::string model = "loadgen";
    double interval_ms = 10;
    int64_t chunks = 16;
    int threads = 1;
};

// A request field that must be a positive integer up to `max` when present.
std::optional<int64_t> positive(const json& body, const char* name, int64_t max) {
    if (!body.contains(name) || body[name].is_null()) return std::nullopt;
    if (!body[name].is_number_integer() || body[name].get<int64_t>() < 1 || body[name].get<int64_t>() > max)
        throw std::domain_error(name);
    return body[name].get<int64_t>();
}

// The plan for one request, from its body and the defaults; std::domain_error names a bad field.
StreamPlan plan_of(const json& body, bool chat, const Config& c) {
    if (!body.is_object()) throw std::domain_error("body");
    if (!body.contains("stream") || body["stream"] != true) throw std::domain_error("stream");
    StreamPlan p;
    p.chat = chat;
    p.id = (chat ? "chatcmpl-" : "cmpl-") + loom::http::random_hex(12);
    p.model_json = json(c.model).dump();
    p.chunks = c.chunks;
    for (const char* name : chat ? std::vector<const char*>{"max_completion_tokens", "max_tokens"}
                                 : std::vector<const char*>{"max_tokens"})
        if (auto n = positive(body, name, 10'000'000)) {
            p.chunks = *n;
            break;
        }
    p.interval_ms = c.interval_ms;
    if (body.contains("loadgen_interval_ms")) {  // the benchmark's per-request rate
        if (!body["loadgen_interval_ms"].is_number() || body["loadgen_interval_ms"].get<double>() < 0 ||
            body["loadgen_interval_ms"].get<double>() > 60'000)
            throw std::domain_error("loadgen_interval_ms");
        p.interval_ms = body["loadgen_interval_ms"].get<double>();
    }
    p.token_ids = body.value("return_token_ids", json(false)) == true;
    const json opts = body.value("stream_options", json::object());
    p.usage = opts.is_object() && opts.value("include_usage", json(false)) == true;
    p.prompt_ids = {1, 2, 3, 4};
    if (!chat && body.contains("prompt") && body["prompt"].is_array()) {
        p.prompt_ids.clear();
        for (const json& id : body["prompt"]) {
            if (!id.is_number_integer()) throw std::domain_error("prompt");
            p.prompt_ids.push_back(id.get<int>());
        }
    }
    p.created = static_cast<int64_t>(std::time(nullptr));
    return p;
}

int serve(const Config& c) {
    const sigset_t signals = loom::http::block_stop_signals();
    boost::asio::io_context timers;
    std::atomic<int> running{0};
    const auto delta = [&running](int d) { running += d; };
    loom::http::HttpServer server{"sse_loadgen"};
    server.route("GET", "/health", [&](const HttpRequest&) {
        return loom::http::json_response(200, {{"status", "ok"},
                                               {"model", c.model},
                                               {"backend", "loadgen"},
                                               {"device", "none"},
                                               {"context_size", 1 << 20},
                                               {"sequences_running", running.load()},
                                               {"sequences_max", 1'000'000},
                                               {"queue_length", 0},
                                               {"kv_blocks_free", 0},
                                               {"kv_blocks_total", 0}});
    });
    const auto generate = [&](const HttpRequest& req, bool chat) {
        StreamPlan plan;
        try {
            plan = plan_of(json::parse(req.body), chat, c);
        } catch (const json::exception& e) {
            return loom::http::error_response(400, std::string("the body is not valid JSON: ") + e.what(),
                                              "invalid_request_error");
        } catch (const std::domain_error& e) {
            return loom::http::error_response(400, std::string(e.what()) + " is missing or invalid (sse_loadgen)",
                                              "invalid_request_error", e.what());
        }
        HttpResponse r;
        r.content_type = "text/event-stream";
        r.headers = {{"X-Request-Id", plan.id}};
        r.stream = true;
        r.producer = std::make_shared<LoadgenStream>(timers, std::move(plan), delta);
        return r;
    };
    server.enable_mux();  // as loom-worker takes the orchestrator's calls
    server.route("POST", "/v1/completions", [&](const HttpRequest& r) { return generate(r, false); });
    server.route("POST", "/v1/chat/completions", [&](const HttpRequest& r) { return generate(r, true); });
    const uint16_t port = server.listen(c.host, static_cast<uint16_t>(c.port));
    auto work = boost::asio::make_work_guard(timers);
    std::thread timer_thread([&timers] { timers.run(); });
    server.start(c.threads);
    std::printf("sse_loadgen (benchmark tool only): listening on http://%s:%u\n", c.host.c_str(), port);
    std::fflush(stdout);
    sigwaitinfo(&signals, nullptr);
    server.stop(std::chrono::milliseconds(0));
    work.reset();
    timers.stop();
    timer_thread.join();
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "sse_loadgen: BENCHMARK TOOL ONLY, never for tests or users. A fake loom-worker for "
        "bench/orchestrator_overhead: GET /health like a worker (backend \"loadgen\"), and POST "
        "/v1/completions and /v1/chat/completions (stream: true only) answered with max_tokens "
        "one-token chunks at a fixed interval in loom-worker's SSE format, each stamped with "
        "\"loadgen_sent_ns\" (CLOCK_MONOTONIC). A request's \"loadgen_interval_ms\" overrides the interval."};
    Config c;
    std::string log_level = "warn";
    app.add_option("--host", c.host, "Address to listen on (default 127.0.0.1)");
    app.add_option("--port", c.port, "Port (default 0: any free port, printed at start)")->check(CLI::Range(0, 65535));
    app.add_option("--model", c.model, "The model name it reports (default loadgen)");
    app.add_option("--interval-ms", c.interval_ms, "Between token chunks (default 10; 0: as fast as read)")
        ->check(CLI::Range(0.0, 60'000.0));
    app.add_option("--chunks", c.chunks, "Token chunks when a request has no max_tokens (default 16)")
        ->check(CLI::Range(int64_t{1}, int64_t{10'000'000}));
    app.add_option("--threads", c.threads, "Server threads (default 1; one more runs the timers)")
        ->check(CLI::Range(1, 64));
    app.add_option("--log", log_level, "Log level of the HTTP server (default warn)");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }
    spdlog::set_level(spdlog::level::from_str(log_level));
    try {
        return serve(c);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sse_loadgen: %s\n", e.what());
        return 1;
    }
}
