// Two hosts on one machine: workers in their own network namespaces (a veth pair each, 10.200.N.0/24),
// reached over those addresses by an orchestrator in the root namespace. Needs root and `ip`; skipped
// with the reason otherwise. The namespaces are removed at the end, whatever happened.
#include <cerrno>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "catch.hpp"
#include "orchestrator/orchestrator_process.h"
#include "support/run_command.h"
#include "worker/worker_api.h"

namespace {

using namespace loom::test;
using Clock = std::chrono::steady_clock;

const std::string kSecret = "two-hosts-secret";

std::string ip_bin() {
    for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"})
        if (std::filesystem::exists(p)) return p;
    return "";
}

// Runs `ip ARGS`; the output when it fails.
std::optional<std::string> ip(const std::string& args) {
    const CommandResult r = run_command(ip_bin() + " " + args + " 2>&1");
    if (r.exit_code == 0) return std::nullopt;
    return "ip " + args + ": " + r.out + r.err;
}

// Namespaces this program's earlier runs left behind when they crashed (their pid is gone).
void remove_stale_namespaces() {
    const CommandResult list = run_command(ip_bin() + " netns list");
    size_t at = 0;
    while ((at = list.out.find("loomtest-", at)) != std::string::npos) {
        const std::string name = list.out.substr(at, list.out.find_first_of(" \n", at) - at);
        at += name.size();
        const pid_t pid = std::atoi(name.c_str() + 9);
        if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) ip("netns del " + name);
    }
}

// Skips the program unless network namespaces can be made here.
void require_namespaces() {
    static bool checked = false;
    if (checked) return;
    if (geteuid() != 0) skip_program("network namespaces need root (uid " + std::to_string(geteuid()) + ")");
    if (ip_bin().empty()) skip_program("no `ip` command (install iproute2)");
    // Whatever else may skip the program does so now, before a namespace exists (exit runs no destructors).
    require_stories260k();
    worker_bin();
    orchestrator_bin();
    remove_stale_namespaces();
    const std::string probe = "loomtest-" + std::to_string(getpid()) + "-probe";
    if (auto err = ip("netns add " + probe)) skip_program("cannot create a network namespace: " + *err);
    ip("netns del " + probe);
    checked = true;
}

// One namespace joined to the root namespace by a veth pair: 10.200.N.1 here, 10.200.N.2 there,
// its default route through us.
class Namespace {
public:
    explicit Namespace(char tag) : name_("loomtest-" + std::to_string(getpid()) + "-" + tag) {
        const std::string veth = "lt" + std::to_string(getpid()) + tag;
        int n = 1 + static_cast<int>(getpid() % 50) * 5 + (tag - 'a');
        while (!run_command(ip_bin() + " -o addr show to 10.200." + std::to_string(n) + ".0/24").out.empty()) ++n;
        here_ = "10.200." + std::to_string(n) + ".1";
        there_ = "10.200." + std::to_string(n) + ".2";
        const std::string in = "netns exec " + name_ + " " + ip_bin() + " ";
        for (const std::string& step :
             {"netns add " + name_, "link add " + veth + " type veth peer name " + veth + "n",
              "link set " + veth + "n netns " + name_, "addr add " + here_ + "/24 dev " + veth,
              "link set " + veth + " up", in + "addr add " + there_ + "/24 dev " + veth + "n",
              in + "link set " + veth + "n up", in + "link set lo up", in + "route add default via " + here_}) {
            if (auto err = ip(step)) {
                remove();
                FAIL(*err);
            }
        }
        veth_ = veth;
    }
    ~Namespace() { remove(); }
    Namespace(const Namespace&) = delete;
    Namespace& operator=(const Namespace&) = delete;

    const std::string& name() const { return name_; }
    const std::string& here() const { return here_; }    // the root namespace's address on the link
    const std::string& there() const { return there_; }  // the namespace's address

private:
    void remove() {
        ip("netns del " + name_);  // takes its end of the veth pair, and with it ours
        if (!veth_.empty()) ip("link del " + veth_);
    }
    std::string name_, here_, there_, veth_;
};

// A daemon started with `args` (through `ip netns exec` when `ns` is given), listening on `host`; its
// port read from its log. SIGTERM, then SIGKILL, at the end.
class Daemon {
public:
    Daemon(std::vector<std::string> args, const std::string& host, const Namespace* ns) {
        static int count = 0;
        log_ = temp_dir() / ("daemon-" + std::to_string(++count) + ".log");
        if (ns) args.insert(args.begin(), {ip_bin(), "netns", "exec", ns->name()});
        pid_ = spawn_logged(std::move(args), log_);
        const std::string listening = "listening on http://" + host + ":";
        const auto deadline = Clock::now() + std::chrono::seconds(30);
        while (port_ == 0) {
            const std::string text = log();
            if (const size_t at = text.find(listening); at != std::string::npos)
                port_ = std::atoi(text.c_str() + at + listening.size());
            if (port_ == 0 && (Clock::now() > deadline || waitpid(pid_, nullptr, WNOHANG) == pid_))
                FAIL("no port in:\n" << text);
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        url_ = "http://" + host + ":" + std::to_string(port_);
    }
    ~Daemon() { stop(SIGTERM); }
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    int port() const { return port_; }
    const std::string& url() const { return url_; }
    std::string log() const {
        std::ifstream in(log_, std::ios::binary);
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }
    void stop(int sig) {
        if (pid_ <= 0) return;
        kill(pid_, sig);
        int st = 0;
        for (int i = 0; i < 1000 && waitpid(pid_, &st, WNOHANG) == 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        if (waitpid(pid_, &st, WNOHANG) == 0) {
            kill(pid_, SIGKILL);
            waitpid(pid_, &st, 0);
        }
        pid_ = -1;
    }

private:
    pid_t pid_ = -1;
    int port_ = 0;
    std::string url_;
    std::filesystem::path log_;
};

std::vector<std::string> worker_args(const std::string& host, std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {
        worker_bin(), "--model", require_stories260k().string(), "--backend", backend(), "--host", host, "--port", "0"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
}

// The state the orchestrator's /health gives `url` (nullopt: not listed).
std::optional<std::string> state_of(const std::string& host, int port, const std::string& url) {
    const json h = json::parse(http_request_to(host, port, "GET", "/health").body);
    for (const json& w : h.at("workers"))
        if (w.at("url") == url) return w.at("state").get<std::string>();
    return std::nullopt;
}

std::optional<double> wait_state(const std::string& host, int port, const std::string& url,
                                 std::optional<std::string> want, std::chrono::seconds limit) {
    const auto t0 = Clock::now();
    while (state_of(host, port, url) != want) {
        if (Clock::now() - t0 > limit) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Waits for /health 200 at host:port.
bool healthy(const std::string& host, int port) {
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < deadline) {
        try {
            if (http_request_to(host, port, "GET", "/health").status == 200) return true;
        } catch (const std::exception&) {}
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
}

// Token ids and text of a stream read to its end.
std::pair<std::vector<int>, std::string> run(const std::string& host, int port, const json& body) {
    SseStream s(port, "/v1/completions", body.dump(), {}, host);
    REQUIRE(s.status() == 200);
    const Streamed st = read_stream(s, false);
    std::vector<int> ids;
    for (const json& c : st.chunks)
        for (const json& ch : c.at("choices"))
            if (ch.contains("token_ids"))
                for (int id : ch["token_ids"]) ids.push_back(id);
    return {ids, st.text};
}

}  // namespace

TEST_CASE("a stream through the orchestrator to a worker in another namespace equals the worker's own",
          "[orchestrator][netns]") {
    require_namespaces();
    Namespace a('a');
    Daemon worker(worker_args(a.there()), a.there(), &a);
    REQUIRE(healthy(a.there(), worker.port()));  // over its namespace's address
    Daemon orch({orchestrator_bin(), "--host", a.here(), "--port", "0", "--worker", worker.url()}, a.here(), nullptr);
    REQUIRE(wait_state(a.here(), orch.port(), worker.url(), "ready", std::chrono::seconds(20)));
    const json body = with(with({{"prompt", "Once upon a time"}}, kGreedy),
                           {{"max_tokens", 60}, {"ignore_eos", true}, {"stream", true}, {"return_token_ids", true}});
    const auto direct = run(a.there(), worker.port(), body);
    const auto proxied = run(a.here(), orch.port(), body);
    REQUIRE(direct.first.size() == 60);
    CHECK(proxied.first == direct.first);
    CHECK(proxied.second == direct.second);
}

TEST_CASE("workers in two namespaces register with the orchestrator across them; a killed one leaves within ~3 s",
          "[orchestrator][netns][registration]") {
    require_namespaces();
    Namespace a('a'), b('b');
    // The orchestrator listens on its address towards `a`; `b` reaches it through its default route.
    Daemon orch({orchestrator_bin(), "--host", a.here(), "--port", "0", "--register-secret", kSecret}, a.here(),
                nullptr);
    const std::string orch_url = orch.url();
    Daemon good(worker_args(b.there(), {"--register", orch_url, "--register-secret", kSecret}), b.there(), &b);
    Daemon other(worker_args(a.there(), {"--register", orch_url, "--register-secret", kSecret}), a.there(), &a);
    Daemon wrong(worker_args(b.there(), {"--register", orch_url, "--register-secret", "wrong"}), b.there(), &b);
    REQUIRE(wait_state(a.here(), orch.port(), good.url(), "ready", std::chrono::seconds(20)));
    REQUIRE(wait_state(a.here(), orch.port(), other.url(), "ready", std::chrono::seconds(20)));
    REQUIRE(healthy(b.there(), wrong.port()));
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (wrong.log().find("refused with 401") == std::string::npos && Clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(wrong.log().find("refused with 401") != std::string::npos);
    CHECK_FALSE(state_of(a.here(), orch.port(), wrong.url()));

    // Both registered workers answer through the orchestrator (round trips across both links).
    std::set<std::string> answered;
    for (int i = 0; i < 20 && answered.size() < 2; ++i) {
        const HttpReply r = [&] {
            HttpConnection c(orch.port(), a.here());
            return c.request("POST", "/v1/completions", json{{"prompt", "Once"}, {"max_tokens", 2}}.dump());
        }();
        REQUIRE(r.status == 200);
        answered.insert(r.headers.at("x-worker"));
    }
    CHECK(answered == std::set<std::string>{good.url(), other.url()});

    good.stop(SIGKILL);
    const auto gone = wait_state(a.here(), orch.port(), good.url(), std::nullopt, std::chrono::seconds(10));
    REQUIRE(gone);
    CHECK(*gone < 4.5);
    CHECK(state_of(a.here(), orch.port(), other.url()) == "ready");
}
