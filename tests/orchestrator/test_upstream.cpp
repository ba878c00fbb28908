// call_upstream with a ConnectionPool against a scripted HTTP/1.1 server on loopback: a connection is
// kept and reused after a clean response, one the server closed while idle is not reused, one the
// server closes as the reused request arrives is replaced by a new connection, and a cancelled call's
// connection never goes back to the pool.
#include <boost/asio.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "fake_worker.h"
#include "orchestrator/connection_pool.h"
#include "orchestrator/upstream.h"

namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
namespace orch = loom::orchestrator;

// What the scripted server does with each request it reads on a connection: answer it with this
// body (kept alive), or close the connection without answering ("").
using Script = std::vector<std::vector<std::string>>;  // per accepted connection, per request

using loom::test::read_request;

// Serves `script` on a free loopback port from its own thread, one connection after another.
class ScriptedServer {
public:
    explicit ScriptedServer(Script script) : acceptor_(ioc_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)) {
        thread_ = std::thread([this, script = std::move(script)] { serve(script); });
    }
    ~ScriptedServer() {
        ::shutdown(acceptor_.native_handle(), SHUT_RDWR);  // wakes an accept still waiting
        thread_.join();
    }
    uint16_t port() const { return acceptor_.local_endpoint().port(); }
    int accepted() const { return accepted_; }

private:
    // Each connection is closed after its script (at once where the script says "").
    void serve(const Script& script) {
        for (const auto& requests : script) {
            boost::system::error_code ec;
            tcp::socket s(ioc_);
            acceptor_.accept(s, ec);
            if (ec) return;
            ++accepted_;
            for (const std::string& body : requests) {
                if (!read_request(s) || body.empty()) break;
                const std::string answer =
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\n\r\n" + body;
                net::write(s, net::buffer(answer), ec);
            }
        }
    }

    net::io_context ioc_;
    tcp::acceptor acceptor_;
    std::atomic<int> accepted_{0};
    std::thread thread_;
};

struct Result {
    bool complete = false;
    std::string body;
    std::string error;
};

Result get(net::io_context& ioc, orch::ConnectionPool& pool, uint16_t port) {
    auto promise = std::make_shared<std::promise<Result>>();
    auto result = std::make_shared<Result>();
    orch::UpstreamRequest r{orch::parse_worker_url("http://127.0.0.1:" + std::to_string(port)), "GET", "/x", "", {}};
    r.total_timeout = std::chrono::milliseconds(5000);
    orch::UpstreamHandlers h;
    h.on_data = [result](std::string d) { result->body += d; };
    h.on_end = [result, promise](const orch::UpstreamEnd& end) {
        result->complete = end.complete;
        result->error = end.error;
        promise->set_value(*result);
    };
    orch::call_upstream(ioc, std::move(r), std::move(h), &pool);
    return promise->get_future().get();
}

bool has_line(const std::string& text, const std::string& line) { return text.find(line + "\n") != std::string::npos; }

struct Fixture {
    net::io_context ioc;
    std::optional<net::executor_work_guard<net::io_context::executor_type>> work{net::make_work_guard(ioc)};
    std::thread thread{[this] { ioc.run(); }};
    // Lets the io_context's thread end once nothing is pending (a pool's sweep timer: stop() it first).
    void finish() {
        work.reset();
        if (thread.joinable()) thread.join();
    }
    ~Fixture() { finish(); }
};

}  // namespace

TEST_CASE("a clean response's connection is reused by the next call to the same worker", "[upstream]") {
    Fixture f;
    ScriptedServer server({{"one", "two", "three"}});
    {
        orch::ConnectionPool pool;
        for (const char* want : {"one", "two", "three"}) {
            const Result r = get(f.ioc, pool, server.port());
            REQUIRE(r.complete);
            CHECK(r.body == want);
        }
        CHECK(server.accepted() == 1);
        CHECK(pool.idle() == 1);
        const std::string m = pool.render_metrics();
        CHECK(has_line(m, "loom_orchestrator_upstream_connections_total{how=\"new\"} 1"));
        CHECK(has_line(m, "loom_orchestrator_upstream_connections_total{how=\"reused\"} 2"));
    }
}

TEST_CASE("a kept connection the worker closed while it was idle is not reused", "[upstream]") {
    Fixture f;
    ScriptedServer server({{"one"}, {"two"}});
    orch::ConnectionPool pool;
    REQUIRE(get(f.ioc, pool, server.port()).body == "one");
    // The server closes its end after one answer; wait until the close has arrived.
    for (int i = 0; i < 200 && server.accepted() < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const Result r = get(f.ioc, pool, server.port());
    REQUIRE(r.complete);
    CHECK(r.body == "two");
    CHECK(server.accepted() == 2);
    const std::string m = pool.render_metrics();
    CHECK(has_line(m, "loom_orchestrator_upstream_connections_total{how=\"new\"} 2"));
    CHECK(has_line(m, "loom_orchestrator_upstream_connections_total{how=\"reused\"} 0"));
}

TEST_CASE("a reused connection closed as its request arrives is replaced by a new one, once", "[upstream]") {
    Fixture f;
    // Connection 1 answers, then reads the second request and closes without an answer (a worker's
    // idle timeout racing the reuse); connection 2 answers it.
    ScriptedServer server({{"one", ""}, {"two"}});
    orch::ConnectionPool pool;
    REQUIRE(get(f.ioc, pool, server.port()).body == "one");
    const Result r = get(f.ioc, pool, server.port());
    REQUIRE(r.complete);
    CHECK(r.body == "two");
    CHECK(server.accepted() == 2);
    const std::string m = pool.render_metrics();
    CHECK(has_line(m, "loom_orchestrator_upstream_connections_total{how=\"reused\"} 1"));
    CHECK(has_line(m, "loom_orchestrator_upstream_connections_total{how=\"replaced\"} 1"));
}

TEST_CASE("a new connection that fails before its head is not tried again", "[upstream]") {
    Fixture f;
    ScriptedServer server({{""}});
    orch::ConnectionPool pool;
    const Result r = get(f.ioc, pool, server.port());
    CHECK_FALSE(r.complete);
    CHECK(r.error.find("no response head") != std::string::npos);
    CHECK(server.accepted() == 1);
    CHECK(pool.idle() == 0);
}

TEST_CASE("idle connections are closed after the pool's idle limit", "[upstream]") {
    Fixture f;
    ScriptedServer server({{"one"}});
    orch::ConnectionPool pool(16, std::chrono::milliseconds(200));
    pool.start(f.ioc);
    REQUIRE(get(f.ioc, pool, server.port()).body == "one");
    CHECK(pool.idle() == 1);
    for (int i = 0; i < 100 && pool.idle() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    CHECK(pool.idle() == 0);
    pool.stop();
    f.finish();  // the sweep's last wait ends before the pool goes
}
