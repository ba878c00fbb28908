// Self-registration: POST /admin/register with the right, a wrong or no secret (403 when the
// orchestrator has none), loom-worker --register end to end, the retirement of a worker whose
// heartbeats stop, a worker that keeps serving while the orchestrator is away, and bad flags.
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <csignal>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "orchestrator/orchestrator_process.h"
#include "support/run_command.h"
#include "worker/worker_api.h"

namespace {

using namespace loom::test;
using Clock = std::chrono::steady_clock;

const std::string kSecret = "registration-secret-1";

// The state /health gives the worker at `url`, or nullopt when the orchestrator does not list it.
std::optional<std::string> state_of(int orch_port, const std::string& url) {
    const json h = json::parse(http_request(orch_port, "GET", "/health").body);
    for (const json& w : h.at("workers"))
        if (w.at("url") == url) return w.at("state").get<std::string>();
    return std::nullopt;
}

// Whether the orchestrator gives `url` the state `want`; false while it does not listen yet.
bool in_state(int orch_port, const std::string& url, const std::optional<std::string>& want) {
    try {
        return state_of(orch_port, url) == want;
    } catch (const boost::system::system_error&) {
        return false;
    }
}

// Waits up to `limit` for state_of(...) == want; returns the time it took, or nullopt.
std::optional<double> wait_state(int orch_port, const std::string& url, std::optional<std::string> want,
                                 std::chrono::seconds limit) {
    const auto t0 = Clock::now();
    while (!in_state(orch_port, url, want)) {
        if (Clock::now() - t0 > limit) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

bool log_has(const WorkerProcess& w, const std::string& text, std::chrono::seconds limit) {
    const auto deadline = Clock::now() + limit;
    while (w.log().find(text) == std::string::npos) {
        if (Clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
}

HttpReply do_register(int orch_port, const json& body) { return post(orch_port, "/admin/register", body); }

std::vector<std::string> registering(int orch_port, const std::string& secret) {
    return {"--register", worker_url(orch_port), "--register-secret", secret};
}

}  // namespace

TEST_CASE("POST /admin/register: the right secret admits, a wrong or missing one is 401, none configured 403",
          "[orchestrator][registration]") {
    Worker w({});
    const std::string url = worker_url(w.port());
    OrchestratorProcess orch({}, {"--register-secret", kSecret});
    for (const json& body :
         {json{{"url", url}, {"secret", "wrong"}}, json{{"url", url}}, json{{"url", url}, {"secret", 42}},
          json{{"url", url}, {"secret", kSecret + "x"}}, json::array({url, kSecret})}) {
        const HttpReply r = do_register(orch.port(), body);
        INFO(body.dump() << " -> " << r.status << " " << r.body);
        CHECK(r.status == 401);
        CHECK(json::parse(r.body).at("error").at("type") == "authentication_error");
    }
    CHECK(http_request(orch.port(), "POST", "/admin/register", "not json").status == 401);
    for (const json& bad_url : {json("localhost:8000"), json("http://127.0.0.1"), json(7)}) {
        const HttpReply r = do_register(orch.port(), {{"url", bad_url}, {"secret", kSecret}});
        INFO(bad_url.dump() << " -> " << r.body);
        CHECK(r.status == 400);
        CHECK(error_param(r) == "url");
    }
    CHECK_FALSE(state_of(orch.port(), url));

    const HttpReply ok = do_register(orch.port(), {{"url", url}, {"secret", kSecret}});
    REQUIRE(ok.status == 200);
    CHECK(json::parse(ok.body).at("url") == url);
    REQUIRE(wait_state(orch.port(), url, "ready", std::chrono::seconds(10)));
    const HttpReply gen = post(orch.port(), "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 3}});
    CHECK(gen.status == 200);
    CHECK(gen.headers.at("x-worker") == url);

    // Registered once and never again: its health checks keep it while they pass...
    std::this_thread::sleep_for(std::chrono::milliseconds(3500));
    CHECK(state_of(orch.port(), url) == "ready");
    // ...and once they fail too, it is removed at the next sweep.
    w.signal(SIGKILL);
    const auto gone = wait_state(orch.port(), url, std::nullopt, std::chrono::seconds(5));
    REQUIRE(gone);
    CHECK(*gone < 2.0);

    OrchestratorProcess closed({}, {"--worker", worker_url(1)});
    const HttpReply refused = do_register(closed.port(), {{"url", url}, {"secret", kSecret}});
    CHECK(refused.status == 403);
    CHECK(json::parse(refused.body).at("error").at("message").get<std::string>().find("--register-secret") !=
          std::string::npos);
}

TEST_CASE("loom-worker --register: admitted with the right secret, refused with a wrong one, removed when killed",
          "[orchestrator][registration]") {
    OrchestratorProcess orch({}, {"--register-secret", kSecret});
    Worker good(registering(orch.port(), kSecret));
    Worker bad(registering(orch.port(), "not-the-secret"));
    const std::string url = worker_url(good.port());
    REQUIRE(wait_state(orch.port(), url, "ready", std::chrono::seconds(10)));
    CHECK(log_has(good, "registered with the orchestrator " + worker_url(orch.port()), std::chrono::seconds(5)));
    CHECK(log_has(bad, "refused with 401", std::chrono::seconds(10)));
    CHECK_FALSE(state_of(orch.port(), worker_url(bad.port())));
    CHECK(post(bad.port(), "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}}).status == 200);  // still serving
    const Streamed s = stream(orch.port(), "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 8}});
    CHECK(s.finish_reason == "length");

    // Heartbeats stop and health checks fail: out of routing at once, out of the pool within ~3 s.
    good.signal(SIGKILL);
    const auto unhealthy = wait_state(orch.port(), url, "unhealthy", std::chrono::seconds(5));
    const auto gone = wait_state(orch.port(), url, std::nullopt, std::chrono::seconds(10));
    REQUIRE(unhealthy);
    REQUIRE(gone);
    CHECK(*unhealthy < 1.5);
    CHECK(*unhealthy + *gone < 4.5);
    const HttpReply none = post(orch.port(), "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}});
    CHECK(none.status == 503);
}

TEST_CASE("a worker serves while its orchestrator is away and registers once it is up",
          "[orchestrator][registration]") {
    int port = 0;
    {
        boost::asio::io_context ioc;
        boost::asio::ip::tcp::acceptor a(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
        port = a.local_endpoint().port();
    }
    Worker w(registering(port, kSecret));
    CHECK(post(w.port(), "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}}).status == 200);
    CHECK(log_has(w, "cannot register with the orchestrator", std::chrono::seconds(5)));

    const auto log = temp_dir() / "late-orchestrator.log";
    const pid_t pid =
        spawn_logged({orchestrator_bin(), "--port", std::to_string(port), "--register-secret", kSecret}, log);
    const auto stop = [pid] {
        kill(pid, SIGTERM);
        int st = 0;
        waitpid(pid, &st, 0);
    };
    std::optional<double> took;
    try {
        took = wait_state(port, worker_url(w.port()), "ready", std::chrono::seconds(15));
    } catch (...) {
        stop();
        throw;
    }
    stop();
    CHECK(took);
    CHECK(log_has(w, "registered with the orchestrator", std::chrono::seconds(1)));
}

TEST_CASE("registration flags that cannot work exit 2 with the reason", "[orchestrator][registration][cli]") {
    const std::string bin = shell_quote(worker_bin()) + " --model " + shell_quote(require_stories260k().string()) +
                            " --backend cpu --port 0 ";
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"--host 0.0.0.0 --register http://127.0.0.1:9 --register-secret s", "--advertise-url"},
        {"--register http://127.0.0.1:9", "--register-secret"},
        {"--register localhost:9 --register-secret s", "--register 'localhost:9'"},
        {"--register http://127.0.0.1:9 --register-secret s --advertise-url http://h", "--advertise-url"},
        {"--register-secret s", "need --register"},
        {"--host 0.0.0.0 --register http://127.0.0.1:9 --register-secret s --advertise-url http://0.0.0.0:8000",
         "names no address"},
    };
    for (const auto& [args, why] : cases) {
        const CommandResult r = run_command(bin + args);
        INFO(args << " -> " << r.exit_code << " " << r.err << r.out);
        CHECK(r.exit_code == 2);
        CHECK((r.err + r.out).find(why) != std::string::npos);
    }
}
