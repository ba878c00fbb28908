// loom-orchestrator in front of two real CPU workers: answers equal to a worker's own, token-exact
// failover when the serving worker is killed mid-stream, health ejection, errors, client disconnects.
#include <chrono>
#include <csignal>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "support/run_command.h"
#include "orchestrator/orchestrator_process.h"
#include "worker/worker_api.h"

namespace {

using namespace loom::test;
using Clock = std::chrono::steady_clock;

// Two workers and the orchestrator in front of them.
struct Cluster {
    std::unique_ptr<Worker> a = std::make_unique<Worker>(std::vector<std::string>{});
    std::unique_ptr<Worker> b = std::make_unique<Worker>(std::vector<std::string>{});
    OrchestratorProcess orch{{a->port(), b->port()}, {"--routing", "least-load"}};

    Worker& serving(const std::string& x_worker) { return x_worker == worker_url(a->port()) ? *a : *b; }
    Worker& other(const std::string& x_worker) { return x_worker == worker_url(a->port()) ? *b : *a; }
};

// A stream's token ids and text as the client received them.
struct Run {
    std::vector<int> prompt_ids, ids;
    std::string text, finish_reason, id;
};

Run collect(SseStream& s, bool chat) {
    const Streamed st = read_stream(s, chat);
    Run r;
    r.text = st.text;
    r.finish_reason = st.finish_reason;
    r.id = st.id;
    for (const json& c : st.chunks) {
        if (c.contains("prompt_token_ids")) r.prompt_ids = c["prompt_token_ids"].get<std::vector<int>>();
        for (const json& choice : c.at("choices"))
            if (choice.contains("token_ids"))
                for (int id : choice["token_ids"]) r.ids.push_back(id);
    }
    for (const json& c : st.chunks) REQUIRE(c.at("id") == r.id);  // one id throughout
    return r;
}

// Every event of a stream's raw bytes (those read before the kill included) but [DONE], parsed.
std::vector<json> raw_events(const std::string& raw) {
    std::vector<json> events;
    size_t at = 0, end;
    while ((end = raw.find("\n\n", at)) != std::string::npos) {
        std::string ev = raw.substr(at, end - at);
        at = end + 2;
        if (ev.rfind("data: ", 0) == 0) ev.erase(0, 6);
        if (ev != "[DONE]") events.push_back(json::parse(ev));
    }
    return events;
}

// A stream's raw events as a Run.
Run parse_raw(const std::string& raw, bool chat) {
    Run r;
    for (const json& j : raw_events(raw)) {
        REQUIRE_FALSE(j.contains("error"));
        if (j.contains("prompt_token_ids")) r.prompt_ids = j["prompt_token_ids"].get<std::vector<int>>();
        for (const json& ch : j.at("choices")) {
            r.text += (chat ? ch.at("delta").value("content", json("")) : ch.at("text")).get<std::string>();
            if (ch.contains("token_ids"))
                for (int id : ch["token_ids"]) r.ids.push_back(id);
        }
    }
    return r;
}

// Lets a stream through the orchestrator run a few events, kills the worker serving it (SIGKILL)
// and reads the rest, which must end with [DONE] and no error event; returns the surviving worker.
Worker& kill_serving_and_finish(Cluster& c, SseStream& s, bool chat) {
    REQUIRE(s.status() == 200);
    const std::string served_by = s.headers().at("x-worker");
    for (int i = 0; i < 4; ++i) REQUIRE(s.next());  // it is running
    c.serving(served_by).signal(SIGKILL);
    read_stream(s, chat);
    return c.other(served_by);
}

Run run_stream(int port, const std::string& path, json body) {
    body["stream"] = true;
    body["return_token_ids"] = true;
    SseStream s(port, path, body.dump());
    REQUIRE(s.status() == 200);
    return collect(s, path.find("chat") != std::string::npos);
}

const json kSeeded = {{"temperature", 0.9}, {"seed", 1234}};
const json kChat = {{"messages", {{{"role", "user"}, {"content", "Tell me a story"}}}}};
const json kPrompt = {{"prompt", "Once upon a time"}};
const std::string kFailovers = "loom_orchestrator_failovers_total";

// A continuation equals the uninterrupted run only where a position's logits do not depend on
// prefill versus decode: the CPU backend (engine_invariance_tests), not yet CUDA (issue 16).
bool exact_failover_backend() {
    if (backend() == "cpu") return true;
    WARN("token-exact failover checks run with CPU workers only, not " << backend() << " (docs/API.md)");
    return false;
}

}  // namespace

TEST_CASE("streams through the orchestrator equal the same requests sent to a worker", "[orchestrator]") {
    Cluster c;
    for (const std::string path : {"/v1/completions", "/v1/chat/completions"}) {
        for (const json& sampling : {kGreedy, kSeeded}) {
            const json body = with(with(path.find("chat") != std::string::npos ? kChat : kPrompt, sampling),
                                   {{"max_tokens", 60}, {"ignore_eos", true}});
            INFO(path << " " << body.dump());
            const Run direct = run_stream(c.a->port(), path, body);
            const Run proxied = run_stream(c.orch.port(), path, body);
            REQUIRE(direct.ids.size() == 60);
            CHECK(proxied.ids == direct.ids);
            CHECK(proxied.prompt_ids == direct.prompt_ids);
            CHECK(proxied.text == direct.text);
            CHECK(proxied.finish_reason == direct.finish_reason);
            CHECK(proxied.id != direct.id);  // the orchestrator's own id
        }
    }
    // Token ids only when asked for; the unseeded run reports the seed that repeats it.
    json body = with(kPrompt, {{"max_tokens", 20}, {"temperature", 1.2}, {"stream", true}});
    SseStream s(c.orch.port(), "/v1/completions", body.dump());
    REQUIRE(s.status() == 200);
    const std::string seed = s.headers().at("x-seed");
    const std::string id = s.headers().at("x-request-id");
    const Streamed plain = read_stream(s, false);
    CHECK(plain.id == id);
    CHECK(s.headers().at("x-backend").rfind(backend(), 0) == 0);  // the worker's, relayed: "cpu", "cuda; device=0; …"
    CHECK(s.raw().find("token_ids") == std::string::npos);
    const Run again = run_stream(c.a->port(), "/v1/completions", with(body, {{"seed", std::stoull(seed)}}));
    CHECK(again.text == plain.text);
    // A whole answer is relayed with the orchestrator's id.
    const HttpReply whole = post(c.orch.port(), "/v1/completions", with(kPrompt, {{"max_tokens", 5}}));
    REQUIRE(whole.status == 200);
    CHECK(json::parse(whole.body).at("id") == whole.headers.at("x-request-id"));
    CHECK(whole.headers.at("x-backend") ==
          post(c.a->port(), "/v1/completions", with(kPrompt, {{"max_tokens", 1}})).headers.at("x-backend"));
    // Ten whole answers, one after another: all go over loom-mux/1 connections, at most one per server
    // thread (two) and worker (two), and none over HTTP/1.1.
    const std::string kMux = "loom_orchestrator_upstream_calls_total{transport=\"mux\"}";
    const std::string kHttp = "loom_orchestrator_upstream_calls_total{transport=\"http\"}";
    const double mux_before = metric(c.orch.port(), kMux), http_before = metric(c.orch.port(), kHttp);
    for (int i = 0; i < 10; ++i)
        REQUIRE(post(c.orch.port(), "/v1/completions", with(kPrompt, {{"max_tokens", 2}})).status == 200);
    CHECK(metric(c.orch.port(), kMux) - mux_before == 10);
    CHECK(metric(c.orch.port(), kHttp) - http_before == 0);
    CHECK(metric(c.orch.port(), "loom_orchestrator_upstream_mux_connections") <= 4);
}

TEST_CASE("kill -9 of the serving worker: the stream continues token-exactly on the other",
          "[orchestrator][failover]") {
    if (!exact_failover_backend()) return;
    for (const std::string path : {"/v1/completions", "/v1/chat/completions"}) {
        for (const json& sampling : {kGreedy, kSeeded}) {
            const bool chat = path.find("chat") != std::string::npos;
            const json body =
                with(with(chat ? kChat : kPrompt, sampling),
                     {{"max_tokens", 1500}, {"ignore_eos", true}, {"stream", true}, {"return_token_ids", true}});
            INFO(path << " " << body.dump());
            Cluster c;
            SseStream s(c.orch.port(), path, body.dump());
            Worker& survivor = kill_serving_and_finish(c, s, chat);
            SseStream replay_source(survivor.port(), path, body.dump());  // the uninterrupted run
            const Run reference = collect(replay_source, chat);
            const Run got = parse_raw(s.raw(), chat);
            REQUIRE(reference.ids.size() == 1500);
            CHECK(got.ids.size() == reference.ids.size());
            CHECK(got.ids == reference.ids);
            CHECK(got.text == reference.text);
            CHECK(got.prompt_ids == reference.prompt_ids);
            CHECK(metric(c.orch.port(), kFailovers) == 1);
        }
    }
}

TEST_CASE("kill -9 of a worker serving several streams: every one of them finishes token-exactly",
          "[orchestrator][failover]") {
    if (!exact_failover_backend()) return;
    Worker a(std::vector<std::string>{}), b(std::vector<std::string>{});
    OrchestratorProcess orch({a.port(), b.port()}, {"--routing", "round-robin"});
    constexpr int kStreams = 8;
    std::vector<json> bodies;
    std::vector<std::unique_ptr<SseStream>> streams;
    for (int i = 0; i < kStreams; ++i) {
        // Different prompts, greedy and seeded, so no two streams could stand in for each other.
        bodies.push_back(
            with(with({{"prompt", "Once upon a time " + std::to_string(i)}}, i % 2 ? kSeeded : kGreedy),
                 {{"max_tokens", 800}, {"ignore_eos", true}, {"stream", true}, {"return_token_ids", true}}));
        streams.push_back(std::make_unique<SseStream>(orch.port(), "/v1/completions", bodies.back().dump()));
        REQUIRE(streams.back()->status() == 200);
    }
    int on_a = 0;
    for (auto& s : streams) {
        on_a += s->headers().at("x-worker") == worker_url(a.port());
        for (int i = 0; i < 2; ++i) REQUIRE(s->next());  // running
    }
    REQUIRE(on_a == kStreams / 2);  // round robin: half of them die with a
    a.signal(SIGKILL);
    for (int i = 0; i < kStreams; ++i) {
        INFO("stream " << i << ": " << bodies[i].dump());
        read_stream(*streams[i], false);
        const Run reference = run_stream(b.port(), "/v1/completions", bodies[i]);
        const Run got = parse_raw(streams[i]->raw(), false);
        REQUIRE(reference.ids.size() == 800);
        CHECK(got.ids == reference.ids);
        CHECK(got.text == reference.text);
    }
    CHECK(metric(orch.port(), kFailovers) == on_a);
}

// Every logprobs entry of a chat stream's raw events, in order.
json chat_logprobs(const std::string& raw) {
    json all = json::array();
    for (const json& j : raw_events(raw))
        for (const json& ch : j.at("choices"))
            if (ch.contains("logprobs") && ch["logprobs"].is_object())
                for (const json& e : ch["logprobs"].at("content")) all.push_back(e);
    return all;
}

TEST_CASE("a chat stream with logprobs keeps them, in chat's shape, across a failover", "[orchestrator][failover]") {
    if (!exact_failover_backend()) return;
    const json body =
        with(with(kChat, kSeeded),
             {{"max_tokens", 600}, {"ignore_eos", true}, {"stream", true}, {"logprobs", true}, {"top_logprobs", 2}});
    Cluster c;
    SseStream s(c.orch.port(), "/v1/chat/completions", body.dump());
    Worker& survivor = kill_serving_and_finish(c, s, true);
    SseStream direct(survivor.port(), "/v1/chat/completions", body.dump());
    read_stream(direct, true);
    const json got = chat_logprobs(s.raw()), reference = chat_logprobs(direct.raw());
    REQUIRE(reference.size() == 600);
    REQUIRE(reference[0].at("top_logprobs").size() == 2);
    CHECK(got.size() == reference.size());
    CHECK(got == reference);  // token, logprob, bytes and alternatives, bit for bit
    CHECK(metric(c.orch.port(), kFailovers) == 1);
}

TEST_CASE("a chat stream without max_tokens fails over with the room the worker's default leaves",
          "[orchestrator][failover]") {
    if (!exact_failover_backend()) return;
    const json body = with(with(kChat, kSeeded), {{"ignore_eos", true}, {"stream", true}, {"return_token_ids", true}});
    Cluster c;
    SseStream s(c.orch.port(), "/v1/chat/completions", body.dump());
    Worker& survivor = kill_serving_and_finish(c, s, true);
    SseStream direct(survivor.port(), "/v1/chat/completions", body.dump());
    const Run reference = collect(direct, true);
    const Run got = parse_raw(s.raw(), true);
    REQUIRE(reference.ids.size() > 1000);  // to the end of the context
    CHECK(got.ids == reference.ids);
    CHECK(got.text == reference.text);
    CHECK(metric(c.orch.port(), kFailovers) == 1);
}

TEST_CASE("a worker that hangs mid-stream (SIGSTOP) is left for another once its health checks fail",
          "[orchestrator][failover]") {
    if (!exact_failover_backend()) return;
    const json body = with(with(kPrompt, kSeeded),
                           {{"max_tokens", 1500}, {"ignore_eos", true}, {"stream", true}, {"return_token_ids", true}});
    Cluster c;
    SseStream s(c.orch.port(), "/v1/completions", body.dump());
    REQUIRE(s.status() == 200);
    const std::string served_by = s.headers().at("x-worker");
    for (int i = 0; i < 4; ++i) REQUIRE(s.next());
    Worker& hung = c.serving(served_by);
    hung.signal(SIGSTOP);  // its connections stay open: only the health checks can tell
    // The time to leave the hung worker, not to finish the stream (1,500 tokens under ASan on two
    // busy cores can take longer than any bound worth stating).
    const auto t0 = Clock::now();
    while (metric(c.orch.port(), kFailovers) < 1 && Clock::now() - t0 < std::chrono::seconds(20))
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    read_stream(s, false);
    hung.signal(SIGKILL);
    SseStream direct(c.other(served_by).port(), "/v1/completions", body.dump());
    const Run reference = collect(direct, false);
    const Run got = parse_raw(s.raw(), false);
    INFO("the stream moved to another worker " << ms << " ms after the worker stopped");
    CHECK(ms < 5000);
    CHECK(got.ids == reference.ids);
    CHECK(got.text == reference.text);
    CHECK(metric(c.orch.port(), kFailovers) == 1);
}

TEST_CASE("a killed worker leaves /health within 1 s and requests keep succeeding", "[orchestrator][health]") {
    Cluster c;
    const std::string victim = worker_url(c.a->port());
    c.a->signal(SIGKILL);
    const auto t0 = Clock::now();
    std::string state = "ready";
    while (state == "ready" && Clock::now() - t0 < std::chrono::seconds(3)) {
        const json h = json::parse(http_request(c.orch.port(), "GET", "/health").body);
        for (const json& w : h.at("workers"))
            if (w.at("url") == victim) state = w.at("state");
        if (state == "ready") std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    INFO("ejected after " << ms << " ms");
    CHECK(state == "unhealthy");
    CHECK(ms < 1000);
    for (int i = 0; i < 5; ++i) {
        const HttpReply r = post(c.orch.port(), "/v1/completions", with(kPrompt, {{"max_tokens", 4}}));
        CHECK(r.status == 200);
        CHECK(r.headers.at("x-worker") == worker_url(c.b->port()));
    }
    CHECK(http_request(c.orch.port(), "GET", "/health").status == 200);
    CHECK(metric(c.orch.port(), "loom_orchestrator_workers{state=\"unhealthy\"}") == 1);
}

TEST_CASE("bad JSON, a wrong type and an unknown model are refused; the orchestrator keeps serving",
          "[orchestrator][errors]") {
    Cluster c;
    const int port = c.orch.port();
    CHECK(http_request(port, "POST", "/v1/completions", "{bad").status == 400);
    CHECK(http_request(port, "POST", "/v1/chat/completions", "[1, 2]").status == 400);
    const HttpReply typed = post(port, "/v1/completions", {{"prompt", "Hi"}, {"model", 7}});
    CHECK(typed.status == 400);
    CHECK(error_param(typed) == "model");
    const HttpReply unknown = post(port, "/v1/completions", {{"prompt", "Hi"}, {"model", "no-such-model"}});
    CHECK(unknown.status == 404);
    CHECK(json::parse(unknown.body).at("error").at("code") == "model_not_found");
    const HttpReply ok = post(port, "/v1/completions", {{"prompt", "Hi"}, {"model", "stories260K"}, {"max_tokens", 3}});
    CHECK(ok.status == 200);
    const json models = json::parse(http_request(port, "GET", "/v1/models").body);
    REQUIRE(models.at("data").size() == 1);
    CHECK(models["data"][0].at("id") == "stories260K");
    CHECK(metric(port, "loom_orchestrator_requests_total{model=\"\",status=\"400\"}") == 3);
    CHECK(metric(port, "loom_orchestrator_requests_total{model=\"\",status=\"404\"}") == 1);
}

TEST_CASE("a client that leaves mid-stream frees its sequence on the worker at once", "[orchestrator][disconnect]") {
    Cluster c;
    const json body = with(kPrompt, {{"max_tokens", 2000}, {"ignore_eos", true}, {"stream", true}});
    SseStream s(c.orch.port(), "/v1/completions", body.dump());
    REQUIRE(s.status() == 200);
    for (int i = 0; i < 4; ++i) s.next();
    Worker& w = c.serving(s.headers().at("x-worker"));
    REQUIRE(metric(w.port(), kRunning) == 1);
    s.disconnect();
    // The uninterrupted run would take seconds; the sequence must end well before that.
    const auto t0 = Clock::now();
    while (metric(w.port(), kRunning) != 0 && Clock::now() - t0 < std::chrono::milliseconds(500))
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    CHECK(metric(w.port(), kRunning) == 0);
    CHECK(metric(w.port(), kCancelled) == 1);
}

TEST_CASE("/cancel ends a live stream on its worker", "[orchestrator][cancel]") {
    Cluster c;
    const json body = with(kPrompt, {{"max_tokens", 2000}, {"ignore_eos", true}, {"stream", true}});
    SseStream s(c.orch.port(), "/v1/completions", body.dump());
    REQUIRE(s.status() == 200);
    for (int i = 0; i < 4; ++i) s.next();
    const std::string id = s.headers().at("x-request-id");
    const json answer = post_ok(c.orch.port(), "/cancel", {{"id", id}});
    CHECK(answer.at("cancelled") == true);
    const Streamed rest = read_stream(s, false);
    CHECK(rest.finish_reason == "abort");
    CHECK(post_ok(c.orch.port(), "/cancel", {{"id", id}}).at("cancelled") == false);
}

TEST_CASE("a stream whose only worker dies ends with an error event and [DONE], never hanging",
          "[orchestrator][failover]") {
    Worker only{std::vector<std::string>{}};
    OrchestratorProcess orch{{only.port()}};
    const json body = with(kPrompt, {{"max_tokens", 1500}, {"ignore_eos", true}, {"stream", true}});
    SseStream s(orch.port(), "/v1/completions", body.dump());
    REQUIRE(s.status() == 200);
    for (int i = 0; i < 4; ++i) REQUIRE(s.next());
    only.signal(SIGKILL);
    std::vector<std::string> tail;
    while (auto ev = s.next()) tail.push_back(*ev);
    REQUIRE(tail.size() >= 2);
    CHECK(tail.back() == "[DONE]");
    const json err = json::parse(tail[tail.size() - 2]);
    CHECK(err.at("error").at("code") == "worker_failed");
    CHECK(metric(orch.port(), "loom_orchestrator_failovers_failed_total") == 1);
}

TEST_CASE("a worker that answers 429 before the first byte is retried on another", "[orchestrator][retry]") {
    Worker full{std::vector<std::string>{"--max-seqs", "1", "--max-queue", "0"}};
    Worker spare{std::vector<std::string>{}};
    OrchestratorProcess orch{{full.port(), spare.port()}, {"--routing", "round-robin"}};
    // Occupy the full worker's only sequence directly.
    SseStream busy(full.port(), "/v1/completions",
                   with(kPrompt, {{"max_tokens", 2000}, {"ignore_eos", true}, {"stream", true}}).dump());
    REQUIRE(busy.status() == 200);
    REQUIRE(busy.next());
    REQUIRE(post(full.port(), "/v1/completions", with(kPrompt, {{"max_tokens", 2}})).status == 429);
    for (int i = 0; i < 4; ++i) {
        const HttpReply r = post(orch.port(), "/v1/completions", with(kPrompt, {{"max_tokens", 2}}));
        CHECK(r.status == 200);
        CHECK(r.headers.at("x-worker") == worker_url(spare.port()));
    }
    CHECK(metric(orch.port(), "loom_orchestrator_retries_total") >= 1);
    busy.disconnect();
}

TEST_CASE("bad flags and bad worker URLs exit 2 with the reason", "[orchestrator][cli]") {
    const std::string bin = shell_quote(orchestrator_bin());
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"--worker localhost:8000", "not an http:// URL"},
        {"--worker http://127.0.0.1", "no host and port"},
        {"--worker http://127.0.0.1:99999", "not in 1..65535"},
        {"--worker http://127.0.0.1:80/v1", "no path"},
        {"--worker http://127.0.0.1:8000 --routing nearest", "routing"},
        {"--worker http://127.0.0.1:8000 --log loud", "unknown level"},
        {"", "--worker"},
    };
    for (const auto& [args, why] : cases) {
        const CommandResult r = run_command(bin + " " + args);
        INFO(args << " -> " << r.exit_code << " " << r.err);
        CHECK(r.exit_code == 2);
        CHECK((r.err + r.out).find(why) != std::string::npos);
    }
}

TEST_CASE("API keys: the orchestrator checks them and forwards the client's upstream", "[orchestrator][keys]") {
    Worker a{std::vector<std::string>{"--api-key", "k1"}};
    OrchestratorProcess orch{{a.port()}, {"--api-key", "k1"}};
    const json body = with(kPrompt, {{"max_tokens", 2}});
    CHECK(post(orch.port(), "/v1/completions", body).status == 401);
    CHECK(post(orch.port(), "/v1/completions", body, {{"Authorization", "Bearer nope"}}).status == 401);
    CHECK(post(orch.port(), "/v1/completions", body, {{"Authorization", "Bearer k1"}}).status == 200);
    CHECK(http_request(orch.port(), "GET", "/health").status == 200);  // open, as the worker's
}

TEST_CASE("least-load sends a second stream to the idle worker; round-robin alternates", "[orchestrator][routing]") {
    Cluster c;
    const json body = with(kPrompt, {{"max_tokens", 2000}, {"ignore_eos", true}, {"stream", true}});
    SseStream first(c.orch.port(), "/v1/completions", body.dump());
    REQUIRE(first.status() == 200);
    REQUIRE(first.next());
    SseStream second(c.orch.port(), "/v1/completions", body.dump());
    REQUIRE(second.status() == 200);
    CHECK(second.headers().at("x-worker") != first.headers().at("x-worker"));
    first.disconnect();
    second.disconnect();
    CHECK(metric(c.orch.port(),
                 "loom_orchestrator_routing_decisions_total{policy=\"least-load\",reason=\"initial\"}") == 2);

    OrchestratorProcess rr{{c.a->port(), c.b->port()}, {"--routing", "round-robin"}};
    std::vector<std::string> served;
    for (int i = 0; i < 4; ++i) {
        const HttpReply r = post(rr.port(), "/v1/completions", with(kPrompt, {{"max_tokens", 2}}));
        REQUIRE(r.status == 200);
        served.push_back(r.headers.at("x-worker"));
    }
    CHECK(served[0] != served[1]);
    CHECK(served[0] == served[2]);
    CHECK(served[1] == served[3]);
}
