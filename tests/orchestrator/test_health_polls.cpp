// WorkerPool's /health polls against a fake worker on loopback that counts its connections: the polls
// share one kept-alive connection, a kept connection dropped as a poll arrives is replaced within
// that poll (no ejection), a dead worker is still unhealthy, and one restarted on its port is
// polled again.
#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <sys/socket.h>
#include <thread>

#include "catch.hpp"
#include "orchestrator/metrics.h"
#include "orchestrator/worker_pool.h"

namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
namespace orch = loom::orchestrator;

// Reads one request head (GETs: no body); false at end of stream.
bool read_request(tcp::socket& s) {
    std::string got;
    char c;
    boost::system::error_code ec;
    while (got.size() < 4 || got.compare(got.size() - 4, 4, "\r\n\r\n") != 0) {
        if (net::read(s, net::buffer(&c, 1), ec) != 1) return false;
        got += c;
    }
    return true;
}

// A worker's GET /health, one connection at a time on its own thread, every answer kept alive. With
// `drop_at`, the request that would get answer number drop_at + 1 is read and its connection closed
// without an answer (a worker closing an idle connection just as it is reused).
class FakeWorker {
public:
    explicit FakeWorker(uint16_t port = 0, int drop_at = -1)
        : acceptor_(ioc_, tcp::endpoint(net::ip::make_address("127.0.0.1"), port)), drop_at_(drop_at) {
        thread_ = std::thread([this] { serve(); });
    }
    // Dies: its port and its connections close.
    ~FakeWorker() {
        stopping_ = true;
        ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
        if (const int fd = connection_; fd >= 0) ::shutdown(fd, SHUT_RDWR);
        thread_.join();
    }
    uint16_t port() const { return acceptor_.local_endpoint().port(); }
    int accepted() const { return accepted_; }
    int answered() const { return answered_; }

private:
    void serve() {
        const std::string body = R"({"status":"ok","model":"m","backend":"cpu","sequences_max":4,"context_size":64})";
        const std::string answer =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
            "\r\n\r\n" + body;
        while (!stopping_) {
            boost::system::error_code ec;
            tcp::socket s(ioc_);
            acceptor_.accept(s, ec);
            if (ec) return;
            ++accepted_;
            connection_ = s.native_handle();
            while (!stopping_ && read_request(s)) {
                if (drop_at_ >= 0 && answered_ == drop_at_) {
                    drop_at_ = -1;
                    break;
                }
                net::write(s, net::buffer(answer), ec);
                if (ec) break;
                ++answered_;
            }
            connection_ = -1;
        }
    }

    net::io_context ioc_;
    tcp::acceptor acceptor_;
    std::atomic<int> drop_at_;
    std::atomic<int> accepted_{0}, answered_{0}, connection_{-1};
    std::atomic<bool> stopping_{false};
    std::thread thread_;
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

bool eventually(const std::function<bool()>& pred, std::chrono::seconds limit = std::chrono::seconds(20)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
}

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
