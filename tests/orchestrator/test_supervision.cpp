// loom-orchestrator supervising the CPU workers it spawns on stories260K: restarts after kill -9,
// the admin API (listing, drain, undrain, its key), a graceful SIGTERM, and the config file.
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "orchestrator/orchestrator_process.h"
#include "support/run_command.h"
#include "worker/worker_api.h"

namespace {

using namespace loom::test;
using Clock = std::chrono::steady_clock;

const std::string kAdminKey = "admin-secret-1";
const HeaderList kAdmin = {{"Authorization", "Bearer " + kAdminKey}};
const json kLong = {{"prompt", "Once upon a time"}, {"max_tokens", 1500}, {"ignore_eos", true}};

std::vector<std::string> spawn_args(int workers, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--spawn",       require_stories260k().string(),
                                     "--backend",     "cpu",
                                     "--cpu-workers", std::to_string(workers),
                                     "--worker-bin",  worker_bin(),
                                     "--admin-key",   kAdminKey};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
}

json admin_workers(int port) {
    const HttpReply r = http_request(port, "GET", "/admin/workers", {}, kAdmin);
    REQUIRE(r.status == 200);
    return json::parse(r.body).at("workers");
}

json worker_by(const json& workers, const std::string& field, const json& value) {
    for (const json& w : workers)
        if (w.at(field) == value) return w;
    FAIL("no worker with " << field << " = " << value.dump() << " in " << workers.dump());
    return {};
}

// Polls until `done` holds (20 s at most); false when it never did.
template <class F>
bool eventually(F done, std::chrono::milliseconds step = std::chrono::milliseconds(20)) {
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (!done()) {
        if (Clock::now() > deadline) return false;
        std::this_thread::sleep_for(step);
    }
    return true;
}

// An orchestrator with `n` spawned CPU workers, all ready.
struct Spawned {
    OrchestratorProcess orch;
    explicit Spawned(int n, std::vector<std::string> extra = {}) : orch({}, spawn_args(n, std::move(extra))) {
        INFO(orch.log());
        REQUIRE(eventually([&] { return orch.ready_workers() == n; }));
    }
    int port() const { return orch.port(); }
};

bool process_exists(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

std::string write_file(const std::string& name, const std::string& text) {
    const auto path = temp_dir() / name;
    std::ofstream(path) << text;
    return path.string();
}

}  // namespace

TEST_CASE("spawned CPU workers serve; one killed with SIGKILL is restarted and serves again", "[supervision]") {
    Spawned s(2);
    const json before = admin_workers(s.port());
    REQUIRE(before.size() == 2);
    for (const json& w : before) {
        CHECK(w.at("origin") == "spawned");
        CHECK(w.at("backend") == "cpu");
        CHECK(w.at("pid").is_number_integer());
        CHECK(w.at("restarts") == 0);
    }
    const Streamed first = stream(s.port(), "/v1/completions", with(kLong, {{"max_tokens", 40}}));
    CHECK(first.finish_reason == "length");

    const json victim = worker_by(before, "id", "w0");
    const pid_t old_pid = victim.at("pid").get<pid_t>();
    const auto t0 = Clock::now();
    REQUIRE(kill(old_pid, SIGKILL) == 0);
    json now;
    REQUIRE(eventually([&] {
        now = worker_by(admin_workers(s.port()), "id", "w0");
        return now.at("pid").is_number_integer() && now.at("pid") != old_pid;
    }));
    const auto restart_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    INFO("restarted " << restart_ms << " ms after SIGKILL: " << now.dump());
    CHECK(restart_ms < 2000);
    CHECK(now.at("restarts") == 1);
    CHECK(now.at("last_exit") == "SIGKILL");
    REQUIRE(eventually([&] { return s.orch.ready_workers() == 2; }));

    // The new port is routed to; the old one is gone from every list.
    const json after = admin_workers(s.port());
    const std::string new_url = worker_by(after, "id", "w0").at("url");
    CHECK(new_url != victim.at("url").get<std::string>());
    const std::string health = http_request(s.port(), "GET", "/health").body;
    CHECK(health.find(victim.at("url").get<std::string>()) == std::string::npos);
    std::set<std::string> served;
    for (int i = 0; i < 16 && served.size() < 2; ++i) {
        const HttpReply r = post(s.port(), "/v1/completions", with(kLong, {{"max_tokens", 4}}));
        REQUIRE(r.status == 200);
        served.insert(r.headers.at("x-worker"));
    }
    CHECK(served.contains(new_url));
    CHECK(metric(s.port(), "loom_orchestrator_worker_restarts_total{cause=\"SIGKILL\"}") == 1);
}

TEST_CASE("the admin API drains and undrains a worker, behind its key", "[supervision][admin]") {
    Spawned s(2);
    for (const HeaderList& bad : {HeaderList{}, HeaderList{{"Authorization", "Bearer wrong"}}}) {
        CHECK(http_request(s.port(), "GET", "/admin/workers", {}, bad).status == 401);
        CHECK(http_request(s.port(), "POST", "/admin/workers/w0/drain", {}, bad).status == 401);
    }
    CHECK(http_request(s.port(), "POST", "/admin/workers/w9/drain", {}, kAdmin).status == 404);
    CHECK(http_request(s.port(), "POST", "/admin/workers/w0/stop", {}, kAdmin).status == 404);

    // A long stream runs on one worker; that worker is drained while it runs.
    SseStream running(s.port(), "/v1/completions", with(kLong, {{"stream", true}}).dump());
    REQUIRE(running.status() == 200);
    const std::string busy_url = running.headers().at("x-worker");
    REQUIRE(running.next());
    const json workers = admin_workers(s.port());
    const std::string busy = worker_by(workers, "url", busy_url).at("id");
    const std::string idle_url = worker_by(workers, "id", busy == "w0" ? "w1" : "w0").at("url");
    const HttpReply drained = http_request(s.port(), "POST", "/admin/workers/" + busy + "/drain", {}, kAdmin);
    REQUIRE(drained.status == 200);
    CHECK(json::parse(drained.body).at("drained") == true);
    CHECK(worker_by(admin_workers(s.port()), "id", busy).at("drained") == true);
    for (int i = 0; i < 8; ++i) {
        const HttpReply r = post(s.port(), "/v1/completions", with(kLong, {{"max_tokens", 4}}));
        REQUIRE(r.status == 200);
        CHECK(r.headers.at("x-worker") == idle_url);
    }
    const Streamed rest = read_stream(running, false);  // the drained worker finishes what it runs
    CHECK(rest.finish_reason == "length");

    REQUIRE(http_request(s.port(), "POST", "/admin/workers/" + busy + "/undrain", {}, kAdmin).status == 200);
    CHECK(worker_by(admin_workers(s.port()), "id", busy).at("drained") == false);
    bool back = false;
    for (int i = 0; i < 32 && !back; ++i) {
        const HttpReply r = post(s.port(), "/v1/completions", with(kLong, {{"max_tokens", 4}}));
        REQUIRE(r.status == 200);
        back = r.headers.at("x-worker") == busy_url;
    }
    CHECK(back);
}

TEST_CASE("without --admin-key the admin API answers 403 beyond loopback", "[supervision][admin]") {
    const auto log = temp_dir() / "orchestrator-any.log";
    const pid_t pid =
        spawn_logged({orchestrator_bin(), "--host", "0.0.0.0", "--port", "0", "--worker", "http://127.0.0.1:1"}, log);
    const std::string listening = "listening on http://0.0.0.0:";
    int port = 0;
    const bool up = eventually([&] {
        std::ifstream in(log);
        const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
        if (const size_t at = text.find(listening); at != std::string::npos)
            port = std::atoi(text.c_str() + at + listening.size());
        return port != 0;
    });
    if (up) {
        const HttpReply r = http_request(port, "GET", "/admin/workers");
        CHECK(r.status == 403);
        CHECK(r.body.find("--admin-key") != std::string::npos);
        CHECK(http_request(port, "POST", "/admin/workers/w0/drain").status == 403);
    }
    kill(pid, SIGTERM);
    int st = 0;
    waitpid(pid, &st, 0);
    REQUIRE(up);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
}

TEST_CASE("SIGTERM: running streams finish, new requests get 503, spawned workers stop, exit 0", "[supervision]") {
    Spawned s(2);
    std::vector<pid_t> pids;
    for (const json& w : admin_workers(s.port())) pids.push_back(w.at("pid").get<pid_t>());
    SseStream running(s.port(), "/v1/completions", with(kLong, {{"stream", true}}).dump());
    REQUIRE(running.status() == 200);
    REQUIRE(running.next());  // it runs; the rest waits in the orchestrator until it is read
    REQUIRE(kill(s.orch.pid(), SIGTERM) == 0);
    REQUIRE(eventually([&] { return http_request(s.port(), "GET", "/health").status == 503; }));
    const HttpReply refused = post(s.port(), "/v1/completions", with(kLong, {{"max_tokens", 4}}));
    CHECK(refused.status == 503);
    const Streamed rest = read_stream(running, false);  // ends with [DONE]
    CHECK(rest.finish_reason == "length");
    INFO(s.orch.log());
    CHECK(s.orch.wait_exit(std::chrono::seconds(30)) == 0);
    for (pid_t pid : pids) CHECK_FALSE(process_exists(pid));
}

TEST_CASE("the config file: bad keys and types exit 2 naming them; flags override it", "[supervision][config]") {
    const std::string bin = orchestrator_bin();
    const auto run_with = [&](const std::string& config) {
        return run_command(shell_quote(bin) + " --config " + shell_quote(write_file("orchestrator.json", config)));
    };
    CommandResult r = run_with(R"({"port": 0, "wrokers": ["http://127.0.0.1:1"]})");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("unknown key 'wrokers'") != std::string::npos);
    r = run_with(R"({"workers": "http://127.0.0.1:1"})");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("'workers' must be an array of strings") != std::string::npos);
    r = run_with(R"({"workers": ["http://127.0.0.1:1"], "port": "9000"})");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("'port' must be an integer") != std::string::npos);
    r = run_with(R"({"workers": ["http://127.0.0.1:1"], "routing": "fastest"})");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--routing") != std::string::npos);
    r = run_with("[1, 2]");
    CHECK(r.exit_code == 2);
    r = run_command(shell_quote(bin) + " --config /nonexistent/orchestrator.json");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("cannot be read") != std::string::npos);

    // A good file: a spawned worker and the admin key from it. The command line's --port and
    // --worker win over the file's (port 1 would not bind; the file's worker list is replaced whole).
    const json config = {{"spawn", require_stories260k().string()},
                         {"backend", "cpu"},
                         {"cpu_workers", 1},
                         {"worker_bin", worker_bin()},
                         {"worker_args", {"--max-seqs", "2"}},
                         {"admin_key", kAdminKey},
                         {"port", 1},
                         {"drain_timeout", 5},
                         {"workers", {"http://127.0.0.1:1"}}};
    OrchestratorProcess orch({},
                             {"--config", write_file("good.json", config.dump()), "--worker", "http://127.0.0.1:2"});
    REQUIRE(eventually([&] { return orch.ready_workers() == 1; }));
    const json workers = admin_workers(orch.port());
    REQUIRE(workers.size() == 2);
    CHECK(worker_by(workers, "origin", "static").at("url") == "http://127.0.0.1:2");
    CHECK(worker_by(workers, "origin", "spawned").at("state") == "ready");
    CHECK(post(orch.port(), "/v1/completions", with(kLong, {{"max_tokens", 4}})).status == 200);
    CHECK(orch.log().find("--max-seqs 2") != std::string::npos);
}

TEST_CASE("a worker that keeps exiting is restarted after 0.25, 0.5, then 1 s at most", "[supervision]") {
    // /bin/false stands for a worker that fails at once every time (exit 1).
    OrchestratorProcess orch(
        {}, {"--spawn", require_stories260k().string(), "--backend", "cpu", "--worker-bin", "/bin/false"});
    std::vector<int> delays;
    REQUIRE(eventually([&] {
        delays.clear();
        const std::string log = orch.log();
        const std::string marker = "restarting in ";
        for (size_t at = log.find(marker); at != std::string::npos; at = log.find(marker, at + 1))
            delays.push_back(std::atoi(log.c_str() + at + marker.size()));
        return delays.size() >= 4;
    }));
    INFO(orch.log());
    CHECK(std::vector<int>(delays.begin(), delays.begin() + 4) == std::vector<int>{250, 500, 1000, 1000});
    CHECK(orch.log().find("exit_1") != std::string::npos);
    CHECK(metric(orch.port(), "loom_orchestrator_worker_restarts_total{cause=\"exit_1\"}") >= 4);
}
