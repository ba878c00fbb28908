// WorkerMetrics' /metrics scrapes against a fake worker on loopback that counts its connections: the
// scrapes share one kept-alive connection, a kept connection dropped as a scrape arrives is replaced
// within that scrape (the samples stay), a dead worker loses its samples, and one restarted on its
// port is scraped again.
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
#include "orchestrator/worker_metrics.h"
#include "orchestrator/worker_pool.h"

namespace {

namespace net = boost::asio;
namespace orch = loom::orchestrator;
using loom::test::eventually;

struct FakeWorker : loom::test::FakeWorker {
    explicit FakeWorker(uint16_t port = 0, int drop_at = -1)
        : loom::test::FakeWorker(
              "# TYPE vllm:num_requests_running gauge\n"
              "vllm:num_requests_running{model_name=\"m\"} 3\n",
              "text/plain; version=0.0.4", port, drop_at) {}
};

// WorkerMetrics scraping one worker every 100 ms on its own io_context thread. The pool is not
// started: its health polls would share the fake worker's one connection at a time.
struct Scraper {
    explicit Scraper(uint16_t port)
        : url("http://127.0.0.1:" + std::to_string(port)),
          pool(ioc, {orch::parse_worker_url(url)}, orch::Routing::least_load, metrics),
          scraper(ioc, pool, std::chrono::milliseconds(100)) {
        scraper.start();
        thread = std::thread([this] { ioc.run(); });
    }
    ~Scraper() {
        scraper.stop();
        work.reset();
        thread.join();  // the last scrape and the idle sweep's last wait end first
    }
    // The worker's relayed gauge is in the orchestrator's /metrics.
    bool relayed() const {
        return scraper.render().find("vllm:num_requests_running{worker=\"" + url + "\",model_name=\"m\"} 3") !=
               std::string::npos;
    }

    const std::string url;
    net::io_context ioc;
    std::optional<net::executor_work_guard<net::io_context::executor_type>> work{net::make_work_guard(ioc)};
    orch::Metrics metrics;
    orch::WorkerPool pool;
    orch::WorkerMetrics scraper;
    std::thread thread;
};

}  // namespace

TEST_CASE("metrics scrapes reuse one kept-alive connection per worker", "[orchestrator][metrics]") {
    FakeWorker worker;
    Scraper scraper(worker.port());
    REQUIRE(eventually([&] { return worker.answered() >= 10; }));  // 10 scrapes, 100 ms apart
    // One connection; a second only where a scrape outlived its 500 ms on a loaded machine (a
    // timed-out connection is dropped). A scraper without reuse opens 10.
    CHECK(worker.accepted() <= 2);
    CHECK(scraper.relayed());
}

TEST_CASE("a scrape whose kept connection the worker drops goes again on a new one: the samples stay",
          "[orchestrator][metrics]") {
    FakeWorker worker(0, 3);  // the 4th scrape's connection closes unanswered
    Scraper scraper(worker.port());
    REQUIRE(eventually([&] { return scraper.relayed(); }));
    bool lost = false;  // a failed scrape drops the worker's samples until the next one
    REQUIRE(eventually([&] {
        lost = lost || !scraper.relayed();
        return worker.answered() >= 8;
    }));
    CHECK(worker.accepted() >= 2);  // the dropped one and its replacement ...
    CHECK(worker.accepted() <= 3);  // ... (and one more only after a timed-out scrape)
    CHECK_FALSE(lost);
    CHECK(scraper.relayed());
}

TEST_CASE("a dead worker's samples go; restarted on its port it is scraped again, on one connection",
          "[orchestrator][metrics]") {
    auto worker = std::make_unique<FakeWorker>();
    const uint16_t port = worker->port();
    Scraper scraper(port);
    REQUIRE(eventually([&] { return worker->answered() >= 3 && scraper.relayed(); }));
    worker.reset();
    REQUIRE(eventually([&] { return !scraper.relayed(); }));
    worker = std::make_unique<FakeWorker>(port);
    REQUIRE(eventually([&] { return scraper.relayed(); }));
    REQUIRE(eventually([&] { return worker->answered() >= 5; }));
    CHECK(worker->accepted() <= 2);
    CHECK(scraper.relayed());
}
