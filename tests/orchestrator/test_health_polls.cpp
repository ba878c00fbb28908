// WorkerPool's /health polls against a fake worker on loopback that counts its connections: the polls
// share one kept-alive connection, a kept connection dropped as a poll arrives is replaced within
// that poll (no ejection), a dead worker is still unhealthy, and one restarted on its port is
// polled again.
#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "catch.hpp"
#include "fake_worker.h"
#include "orchestrator/metrics.h"
#include "orchestrator/worker_pool.h"

namespace {

namespace net = boost::asio;
namespace orch = loom::orchestrator;

// A worker's GET /health.
const std::string kHealth = R"({"status":"ok","model":"m","backend":"cpu","sequences_max":4,"context_size":64})";

struct FakeWorker : loom::test::FakeWorker {
    explicit FakeWorker(uint16_t port = 0, int drop_at = -1)
        : loom::test::FakeWorker(kHealth, "application/json", port, drop_at) {}
};

// A WorkerPool polling one worker on its own io_context thread; counts the ejections it reports.
struct Poller {
    explicit Poller(uint16_t port)
        : pool(ioc, {orch::parse_worker_url("http://127.0.0.1:" + std::to_string(port))}, orch::Routing::least_load,
               metrics) {
        pool.on_ejected([this](const std::string&) { ++ejected; });
        pool.start();
        thread = std::thread([this] { ioc.run(); });
    }
    ~Poller() {
        pool.stop();
        work.reset();
        thread.join();  // the last poll and the idle sweep's last wait end first
    }
    orch::WorkerState state() const { return pool.status().at(0).state; }

    net::io_context ioc;
    std::optional<net::executor_work_guard<net::io_context::executor_type>> work{net::make_work_guard(ioc)};
    orch::Metrics metrics;
    orch::WorkerPool pool;
    std::atomic<int> ejected{0};
    std::thread thread;
};

using loom::test::eventually;

}  // namespace

TEST_CASE("health polls reuse one kept-alive connection per worker", "[orchestrator][health]") {
    FakeWorker worker;
    Poller poller(worker.port());
    REQUIRE(eventually([&] { return worker.answered() >= 10; }));  // 10 polls, 200 ms apart
    // One connection; a second only where a poll outlived its 300 ms on a loaded machine (a timed-out
    // connection is dropped). A poller without reuse opens 10.
    CHECK(worker.accepted() <= 2);
    CHECK(poller.state() == orch::WorkerState::ready);
    CHECK(poller.pool.status().at(0).sequences_max == 4);
    CHECK(poller.ejected.load() == 0);
}

TEST_CASE("a poll whose kept connection the worker drops goes again on a new one: no ejection",
          "[orchestrator][health]") {
    FakeWorker worker(0, 3);  // the 4th poll's connection closes unanswered
    Poller poller(worker.port());
    REQUIRE(eventually([&] { return worker.answered() >= 8; }));
    CHECK(worker.accepted() >= 2);  // the dropped one and its replacement ...
    CHECK(worker.accepted() <= 3);  // ... (and one more only after a timed-out poll)
    CHECK(poller.ejected.load() == 0);
    CHECK(poller.state() == orch::WorkerState::ready);
}

TEST_CASE("a dead worker is unhealthy; restarted on its port it is polled again, on one connection",
          "[orchestrator][health]") {
    auto worker = std::make_unique<FakeWorker>();
    const uint16_t port = worker->port();
    Poller poller(port);
    REQUIRE(eventually([&] { return worker->answered() >= 3; }));
    CHECK(poller.state() == orch::WorkerState::ready);
    worker.reset();
    REQUIRE(eventually([&] { return poller.ejected.load() == 1; }));
    CHECK(poller.state() == orch::WorkerState::unhealthy);
    worker = std::make_unique<FakeWorker>(port);
    REQUIRE(eventually([&] { return poller.state() == orch::WorkerState::ready; }));
    REQUIRE(eventually([&] { return worker->answered() >= 5; }));
    CHECK(worker->accepted() <= 2);
    CHECK(poller.ejected.load() == 1);
}
