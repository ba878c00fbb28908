// The orchestrator under load (ctest label `load`): 1,000 concurrent streams through one orchestrator
// to three CPU workers on stories260K; every stream ends with [DONE] or is a 429, and afterwards
// nothing is left behind: descriptors, memory (over a second round), running sequences, KV blocks.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <sys/resource.h>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "orchestrator/orchestrator_process.h"
#include "orchestrator/sse_swarm.h"
#include "worker/worker_api.h"

namespace {

using namespace loom::test;
using Clock = std::chrono::steady_clock;

constexpr int kStreams = 1000;
constexpr int kWorkers = 3;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
constexpr bool kAsan = __has_feature(address_sanitizer);
#else
constexpr bool kAsan = false;
#endif
// ASan keeps freed memory out of use in a quarantine (256 MiB by default), which grows the RSS of
// every round until it is full: the orchestrator started here gets a small one.
constexpr int kQuarantineMiB = 4;

int open_fds(int pid) {
    int n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
        ++n;
    return n;
}

long rss_kib(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    return -1;
}

// The test's own client sockets: 1,000 need more than a soft limit of 1024.
void raise_fd_limit() {
    rlimit lim{};
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
}

// One round: every stream ends with [DONE] (no error event) or is answered 429; returns the [DONE]s.
int round_of_streams(int port) {
    const json body = {{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"stream", true}, {"temperature", 0}};
    const auto t0 = Clock::now();
    const std::vector<SwarmOutcome> out = run_swarm(port, "/v1/completions", body.dump(), kStreams);
    int done = 0, refused = 0;
    for (const SwarmOutcome& o : out) {
        INFO("status " << o.status << ", failure '" << o.failure << "', body " << o.body);
        REQUIRE(o.failure.empty());
        if (o.status == 429) {
            REQUIRE(json::parse(o.body).at("error").is_object());
            ++refused;
            continue;
        }
        REQUIRE(o.status == 200);
        REQUIRE(o.done);
        REQUIRE_FALSE(o.error_event);
        REQUIRE(o.events >= 1);
        ++done;
    }
    WARN(done << " streams ended with [DONE], " << refused << " were 429s, in "
              << std::chrono::duration<double>(Clock::now() - t0).count() << " s");
    return done;
}

// Every worker idle: no sequence running or waiting, every KV block free.
void require_workers_idle(const std::vector<std::unique_ptr<Worker>>& workers) {
    for (const auto& w : workers) {
        const auto deadline = Clock::now() + std::chrono::seconds(20);
        json h;
        for (;;) {
            h = json::parse(http_request(w->port(), "GET", "/health").body);
            if (h.at("sequences_running") == 0 && h.at("queue_length") == 0 &&
                h.at("kv_blocks_free") == h.at("kv_blocks_total"))
                break;
            if (Clock::now() > deadline) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        INFO("worker " << w->port() << ": " << h.dump());
        CHECK(h.at("sequences_running") == 0);
        CHECK(h.at("queue_length") == 0);
        CHECK(h.at("kv_blocks_free") == h.at("kv_blocks_total"));
        CHECK(metric(w->port(), kRunning) == 0);
    }
}

// The orchestrator's descriptors back to at most the baseline (plus the health polls that may be in
// flight, one per worker) once the clients have gone: its idle kept-alive worker connections close
// after 5 s (ConnectionPool).
void require_fds_back(int pid, int baseline) {
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    int fds = open_fds(pid);
    while (fds > baseline + kWorkers && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        fds = open_fds(pid);
    }
    INFO("baseline " << baseline << " descriptors");
    REQUIRE(fds <= baseline + kWorkers);
}

}  // namespace

TEST_CASE("1,000 concurrent streams through the orchestrator to three CPU workers leave nothing behind", "[load]") {
    raise_fd_limit();
    std::vector<std::unique_ptr<Worker>> workers;
    std::vector<int> ports;
    for (int i = 0; i < kWorkers; ++i) {
        workers.push_back(std::make_unique<Worker>(std::vector<std::string>{"--max-seqs", "16", "--max-queue", "200"}));
        ports.push_back(workers.back()->port());
    }
    if (kAsan) {
        const char* given = std::getenv("ASAN_OPTIONS");
        const std::string options =
            std::string(given ? given : "") + ":quarantine_size_mb=" + std::to_string(kQuarantineMiB);
        setenv("ASAN_OPTIONS", options.c_str(), 1);
    }
    OrchestratorProcess orch(ports);
    const int pid = orch.pid();
    const int baseline = open_fds(pid);

    const int done1 = round_of_streams(orch.port());
    CHECK(done1 >= kWorkers * 16);  // at least what the workers run at once
    require_fds_back(pid, baseline);
    require_workers_idle(workers);
    const long rss1 = rss_kib(pid);

    const int done2 = round_of_streams(orch.port());
    CHECK(done2 >= kWorkers * 16);
    require_fds_back(pid, baseline);
    require_workers_idle(workers);
    const long rss2 = rss_kib(pid);
    // The first round grew the heap to its working size; a second equal round reuses it. A leak of
    // even 8 KiB per stream would add 8 MiB (under ASan, beyond what its quarantine holds).
    WARN("orchestrator: " << baseline << " descriptors before and after; RSS " << rss1 << " KiB after round 1, " << rss2
                          << " KiB after round 2");
    CHECK(rss2 - rss1 <= (8 + (kAsan ? kQuarantineMiB : 0)) * 1024);
}
