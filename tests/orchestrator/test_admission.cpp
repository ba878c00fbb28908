// Admission in loom-orchestrator: the wait queue's order and the key budgets as units, then through a
// real orchestrator in front of CPU workers with one sequence each: 429 when full, priorities and
// promotion, per-key limits, clients leaving while queued or streaming, timeouts, bad fields.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "orchestrator/admission.h"
#include "orchestrator/key_file.h"
#include "orchestrator/orchestrator_process.h"
#include "support/run_command.h"
#include "worker/worker_api.h"

namespace {

using namespace loom::test;
namespace orch = loom::orchestrator;
using orch::Priority;
using std::chrono::milliseconds;
using Time = orch::Clock::time_point;

const json kPrompt = {{"prompt", "Once upon a time"}};
// About 1.2 s of generation on a Release build: long enough to hold a worker's only sequence while
// a test queues requests behind it (the worker's context is 2048 tokens).
const json kLong = with(kPrompt, {{"max_tokens", 2000}, {"ignore_eos", true}, {"stream", true}});
const std::string kKvUsage = "vllm:kv_cache_usage_perc{model_name=\"stories260K\"}";

std::string depth(const std::string& cls) { return "loom_orchestrator_queue_depth{class=\"" + cls + "\"}"; }

// Polls `ok` every 10 ms for up to `limit`; its last value.
bool eventually(const std::function<bool()>& ok, milliseconds limit = milliseconds(5000)) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!ok()) {
        if (std::chrono::steady_clock::now() > end) return ok();
        std::this_thread::sleep_for(milliseconds(10));
    }
    return true;
}

// A stream whose head may come much later (a queued request): opened on its own thread.
std::future<std::unique_ptr<SseStream>> open_later(int port, const json& body) {
    return std::async(std::launch::async,
                      [port, body] { return std::make_unique<SseStream>(port, "/v1/completions", body.dump()); });
}

// One CPU worker with a single sequence (on the CPU whatever the host: the timings here assume its
// pace), and an orchestrator in front of it with `flags`.
struct OneSlot {
    CpuWorker worker{std::vector<std::string>{"--max-seqs", "1"}};
    OrchestratorProcess orch;
    explicit OneSlot(std::vector<std::string> flags) : orch({worker.port()}, std::move(flags)) {}

    // A long stream that holds the worker's only sequence (its first event read).
    std::unique_ptr<SseStream> occupy(const json& body = kLong) {
        auto s = std::make_unique<SseStream>(orch.port(), "/v1/completions", body.dump());
        REQUIRE(s->status() == 200);
        REQUIRE(s->next());
        return s;
    }
    double queued(const std::string& cls) { return metric(orch.port(), depth(cls)); }
    // The requests the orchestrator's /health counts on the worker.
    int requests_here() {
        const json h = json::parse(http_request(orch.port(), "GET", "/health").body);
        return h.at("workers").at(0).at("requests_here").get<int>();
    }
};

std::string error_code(const std::string& body) {
    const json e = json::parse(body).at("error");
    return e.at("code").is_null() ? "" : e.at("code").get<std::string>();
}

}  // namespace

TEST_CASE("WaitQueue: interactive first, FIFO within a class, batch promoted after its wait", "[admission]") {
    orch::WaitQueue q(3, milliseconds(100));
    const Time t0{};
    REQUIRE(q.push(1, Priority::batch, t0));
    REQUIRE(q.push(2, Priority::interactive, t0 + milliseconds(10)));
    REQUIRE(q.push(3, Priority::interactive, t0 + milliseconds(20)));
    CHECK_FALSE(q.push(4, Priority::batch, t0 + milliseconds(30)));  // full
    CHECK(q.size(Priority::interactive) == 2);
    CHECK(q.size(Priority::batch) == 1);
    CHECK(q.front(t0 + milliseconds(50)) == 2u);
    CHECK(q.front(t0 + milliseconds(100)) == 1u);  // promoted, and older than every interactive one
    REQUIRE(q.remove(2));
    CHECK_FALSE(q.remove(2));
    CHECK(q.front(t0 + milliseconds(50)) == 3u);
    REQUIRE(q.remove(1));
    REQUIRE(q.push(5, Priority::batch, t0 + milliseconds(40)));
    CHECK(q.front(t0 + milliseconds(500)) == 3u);  // a promoted batch request is not older than it
    REQUIRE(q.remove(3));
    CHECK(q.front(t0) == 5u);
    REQUIRE(q.remove(5));
    CHECK(q.empty());
    CHECK_FALSE(q.front(t0).has_value());
    orch::WaitQueue none(0, milliseconds(100));
    CHECK_FALSE(none.push(1, Priority::interactive, t0));
}

TEST_CASE("RateLimiter: requests and tokens per minute, Retry-After until the budget allows", "[admission]") {
    orch::RateLimiter limiter;
    const orch::KeyEntry alice{"k-a", "alice", 2, 0}, bob{"k-b", "bob", 0, 0}, carol{"k-c", "carol", 0, 1000};
    const Time t0{};
    CHECK(limiter.take(alice, 100, t0).allowed);
    CHECK(limiter.take(alice, 100, t0).allowed);
    const auto over = limiter.take(alice, 100, t0);
    CHECK_FALSE(over.allowed);
    CHECK(over.limit == "requests");
    CHECK(over.retry_after_s == 30);                                               // one request at 2 a minute
    for (int i = 0; i < 10; ++i) CHECK(limiter.take(bob, 1'000'000, t0).allowed);  // no limits
    CHECK_FALSE(limiter.take(alice, 100, t0 + milliseconds(29'000)).allowed);
    CHECK(limiter.take(alice, 100, t0 + milliseconds(30'000)).allowed);

    CHECK(limiter.take(carol, 600, t0).allowed);
    const auto tokens = limiter.take(carol, 600, t0);
    CHECK_FALSE(tokens.allowed);
    CHECK(tokens.limit == "tokens");
    CHECK(tokens.retry_after_s == 12);  // 200 missing at 1000 a minute
    // A request larger than the whole budget waits for a full bucket, not forever.
    const auto huge = limiter.take(carol, 50'000, t0 + milliseconds(12'000));
    CHECK_FALSE(huge.allowed);
    CHECK(huge.retry_after_s == 24);  // 400 missing of the full 1000
    CHECK(limiter.take(carol, 50'000, t0 + milliseconds(60'000)).allowed);
}

TEST_CASE("priority and timeout are read, checked and removed from the body", "[admission]") {
    json body = {{"prompt", "x"}, {"priority", "batch"}, {"timeout", 2.5}};
    const auto f = orch::take_admission_fields(body);
    CHECK(f.priority == Priority::batch);
    CHECK(f.timeout_s == 2.5);
    CHECK(body == json{{"prompt", "x"}});
    json plain = {{"prompt", "x"}};
    CHECK(orch::take_admission_fields(plain).priority == Priority::interactive);
    CHECK_FALSE(orch::take_admission_fields(plain).timeout_s);
    for (const json& bad : {json{{"priority", "urgent"}}, json{{"priority", 1}}, json{{"timeout", 0}},
                            json{{"timeout", -3}}, json{{"timeout", "5"}}, json{{"timeout", 1e9}}}) {
        json b = bad;
        INFO(bad.dump());
        try {
            orch::take_admission_fields(b);
            FAIL("accepted");
        } catch (const orch::BadField& e) {
            CHECK(e.param == bad.begin().key());
        }
    }
}

TEST_CASE("the --api-keys file: names and limits, refusals that name the field but never the key", "[admission]") {
    const auto keys = orch::parse_key_file(
        R"({"keys": [{"key": "s1", "name": "alice", "requests_per_minute": 60, "tokens_per_minute": 1000},
                     {"key": "s2", "name": "bob"}]})",
        "f.json");
    REQUIRE(keys.size() == 2);
    CHECK(keys[0].name == "alice");
    CHECK(keys[0].requests_per_minute == 60);
    CHECK(keys[1].tokens_per_minute == 0);
    const std::vector<std::pair<std::string, std::string>> bad = {
        {R"([])", "expected a JSON object"},
        {R"({"keys": [{"key": "secret-x"}]})", "keys[0].name"},
        {R"({"keys": [{"key": "secret-x", "name": "a", "requests_per_minute": -1}]})", "requests_per_minute"},
        {R"({"keys": [{"key": "secret-x", "name": "a", "requests_per_minute": 0.5}]})", "requests_per_minute"},
        {R"({"keys": [{"key": "secret-x", "name": "a", "tokens_per_min": 5}]})", "unknown field 'tokens_per_min'"},
        {R"({"keys": [{"key": "secret-x", "name": "a"}, {"key": "secret-x", "name": "b"}]})", "keys[1].key"},
        {R"({"keys": [{"key": "", "name": "a"}]})", "keys[0].key"},
    };
    for (const auto& [text, why] : bad) {
        INFO(text);
        try {
            orch::parse_key_file(text, "f.json");
            FAIL("accepted");
        } catch (const orch::BadKeyFile& e) {
            const std::string what = e.what();
            CHECK(what.find(why) != std::string::npos);
            CHECK(what.find("secret-x") == std::string::npos);
        }
    }
}

TEST_CASE("every worker full: queued in priority order, 429 + Retry-After past the queue's size",
          "[admission][queue]") {
    OneSlot c({"--queue-size", "2"});
    auto a = c.occupy();
    auto batch = open_later(c.orch.port(), with(kLong, {{"priority", "batch"}}));
    REQUIRE(eventually([&] { return c.queued("batch") == 1; }));
    auto interactive = open_later(c.orch.port(), kLong);
    REQUIRE(eventually([&] { return c.queued("interactive") == 1; }));

    const HttpReply full = post(c.orch.port(), "/v1/completions", with(kPrompt, {{"max_tokens", 2}}));
    CHECK(full.status == 429);
    CHECK(full.headers.at("retry-after") == "1");
    CHECK(error_code(full.body) == "queue_full");
    CHECK(metric(c.orch.port(), "loom_orchestrator_rejected_total{reason=\"queue_full\"}") == 1);
    CHECK(metric(c.worker.port(), kRunning) == 1);  // the orchestrator kept them off the full worker
    CHECK(c.requests_here() == 1);

    // The slot frees: the later interactive request goes first, the batch one still waits.
    a->disconnect();
    auto first = interactive.get();
    REQUIRE(first->status() == 200);
    CHECK(c.queued("interactive") == 0);
    CHECK(c.queued("batch") == 1);
    first->disconnect();
    auto second = batch.get();
    REQUIRE(second->status() == 200);
    CHECK(c.queued("batch") == 0);
    second->disconnect();
    wait_metric(c.worker.port(), kRunning, 0);
    wait_metric(c.worker.port(), kKvUsage, 0);
    CHECK(eventually([&] { return c.requests_here() == 0; }));
}

TEST_CASE("a batch request waiting longer than --promote-after goes before a later interactive one",
          "[admission][queue]") {
    OneSlot c({"--promote-after", "0.2"});
    auto a = c.occupy();
    auto batch = open_later(c.orch.port(), with(kLong, {{"priority", "batch"}}));
    REQUIRE(eventually([&] { return c.queued("batch") == 1; }));
    std::this_thread::sleep_for(milliseconds(300));  // past the promotion
    auto interactive = open_later(c.orch.port(), kLong);
    REQUIRE(eventually([&] { return c.queued("interactive") == 1; }));
    a->disconnect();
    auto first = batch.get();
    REQUIRE(first->status() == 200);
    CHECK(c.queued("interactive") == 1);
    first->disconnect();
    auto second = interactive.get();
    REQUIRE(second->status() == 200);
    second->disconnect();
}

TEST_CASE(
    "a client that leaves while queued is out of the queue at once; one that leaves mid-stream frees "
    "the worker's sequence and KV blocks",
    "[admission][disconnect]") {
    OneSlot c({});
    auto a = c.occupy();
    HttpConnection queued(c.orch.port());
    queued.send("POST", "/v1/completions", kLong.dump());
    REQUIRE(eventually([&] { return c.queued("interactive") == 1; }));
    queued.disconnect();
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(eventually([&] { return c.queued("interactive") == 0; }, milliseconds(1000)));
    INFO("left the queue after "
         << std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0).count() << " ms");
    CHECK(metric(c.worker.port(), kRunning) == 1);  // only the stream that holds the slot
    // It never reached a worker.
    CHECK_FALSE(find_metric(c.orch.port(),
                            "loom_orchestrator_routing_decisions_total{policy=\"least-load\","
                            "reason=\"queued\"}"));
    a->disconnect();
    wait_metric(c.worker.port(), kRunning, 0);
    wait_metric(c.worker.port(), kKvUsage, 0);
}

TEST_CASE("timeout: a stream ends with a timeout error event, a whole answer is a 504, also while queued",
          "[admission][timeout]") {
    OneSlot c({"--request-timeout", "0.3"});
    SseStream s(c.orch.port(), "/v1/completions", kLong.dump());  // --request-timeout's
    REQUIRE(s.status() == 200);
    std::vector<std::string> events;
    while (auto ev = s.next()) events.push_back(*ev);
    REQUIRE(events.size() >= 2);
    CHECK(events.back() == "[DONE]");
    const json err = json::parse(events[events.size() - 2]);
    CHECK(err.at("error").at("code") == "timeout");
    wait_metric(c.worker.port(), kRunning, 0);
    wait_metric(c.worker.port(), kKvUsage, 0);

    const json whole = with(kLong, {{"stream", false}, {"timeout", 0.3}});
    const HttpReply r = post(c.orch.port(), "/v1/completions", whole);
    CHECK(r.status == 504);
    CHECK(error_code(r.body) == "timeout");
    CHECK(error_param(r) == "timeout");
    wait_metric(c.worker.port(), kRunning, 0);

    auto a = c.occupy(with(kLong, {{"timeout", 60}}));  // its own timeout instead of the default
    const HttpReply waited = post(c.orch.port(), "/v1/completions", whole);
    CHECK(waited.status == 504);
    CHECK(c.queued("interactive") == 0);
    CHECK(metric(c.worker.port(), kRunning) == 1);
    CHECK(metric(c.orch.port(), "loom_orchestrator_timeouts_total") == 3);
    a->disconnect();
}

TEST_CASE("per-key limits from --api-keys: the key over its budget gets 429, the others do not", "[admission][keys]") {
    const auto file = temp_dir() / "admission-keys.json";
    std::ofstream(file) << R"({"keys": [
        {"key": "alice-secret-1", "name": "alice", "requests_per_minute": 2},
        {"key": "bob-secret-2", "name": "bob"}]})";
    OneSlot c({"--api-keys", file.string(), "--log", "debug"});
    const json body = with(kPrompt, {{"max_tokens", 2}});
    const HeaderList alice = {{"Authorization", "Bearer alice-secret-1"}};
    const HeaderList bob = {{"Authorization", "Bearer bob-secret-2"}};
    CHECK(post(c.orch.port(), "/v1/completions", body, alice).status == 200);
    CHECK(post(c.orch.port(), "/v1/completions", body, alice).status == 200);
    const HttpReply over = post(c.orch.port(), "/v1/completions", body, alice);
    CHECK(over.status == 429);
    CHECK(error_code(over.body) == "rate_limit_exceeded");
    const int retry = std::stoi(over.headers.at("retry-after"));
    CHECK(retry >= 1);
    CHECK(retry <= 30);
    for (int i = 0; i < 3; ++i) CHECK(post(c.orch.port(), "/v1/completions", body, bob).status == 200);
    CHECK(post(c.orch.port(), "/v1/completions", body).status == 401);
    CHECK(metric(c.orch.port(), "loom_orchestrator_rate_limited_total{key=\"alice\",limit=\"requests\"}") == 1);
    const std::string log = c.orch.log();
    CHECK(log.find("alice") != std::string::npos);
    CHECK(log.find("alice-secret-1") == std::string::npos);
    CHECK(log.find("bob-secret-2") == std::string::npos);
}

TEST_CASE("bad priority and timeout are 400s naming the field; a bad --api-keys file exits 2", "[admission][errors]") {
    OneSlot c({});
    for (const json& bad : {json{{"priority", "urgent"}}, json{{"timeout", 0}}, json{{"timeout", "1"}}}) {
        const HttpReply r = post(c.orch.port(), "/v1/completions", with(with(kPrompt, {{"max_tokens", 2}}), bad));
        INFO(bad.dump() << " -> " << r.body);
        CHECK(r.status == 400);
        CHECK(error_param(r) == bad.begin().key());
    }
    CHECK(post(c.orch.port(), "/v1/completions",
               with(kPrompt, {{"max_tokens", 2}, {"priority", "batch"}, {"timeout", 30}}))
              .status == 200);

    const auto file = temp_dir() / "admission-bad-keys.json";
    std::ofstream(file) << R"({"keys": [{"key": "never-shown", "name": "x", "requests_per_minute": "many"}]})";
    const std::string bin = shell_quote(orchestrator_bin()) + " --worker http://127.0.0.1:1 --api-keys ";
    for (const auto& [path, why] : std::vector<std::pair<std::string, std::string>>{
             {file.string(), "requests_per_minute"}, {"/nonexistent/keys.json", "cannot be read"}}) {
        const CommandResult r = run_command(bin + shell_quote(path));
        INFO(path << " -> " << r.exit_code << " " << r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.err.find(why) != std::string::npos);
        CHECK(r.err.find("never-shown") == std::string::npos);
    }
}
