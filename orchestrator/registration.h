// Workers that announce themselves (loom-worker --register): POST /admin/register {url, secret}
// checked against --register-secret, the worker added to the pool, and retired from it once its
// heartbeats stop and its health checks fail.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <string>

#include "http/http_server.h"
#include "orchestrator/worker_pool.h"

namespace loom::orchestrator {

class Registry {
public:
    // A worker heartbeats every second; three missed ones (with its /health failing too) retire it.
    static constexpr std::chrono::milliseconds kHeartbeatLoss{3000};
    static constexpr std::chrono::milliseconds kSweepInterval{250};
    static constexpr size_t kMaxWorkers = 1024;  // registered ones; more are refused

    // `secret` empty: registration is refused (403).
    Registry(boost::asio::io_context& ioc, WorkerPool& pool, std::string secret);
    ~Registry();

    // POST /admin/register: 200 {"url", "registered"}; 401 for a missing or wrong secret, 403 when
    // the orchestrator has none, 400 for a body that is no {"url": "http://HOST:PORT", "secret"}.
    http::HttpResponse handle(const http::HttpRequest& req);

    // Starts and stops the sweep that retires silent workers.
    void start();
    void stop();

private:
    void sweep();

    WorkerPool& pool_;
    const std::string secret_;
    std::mutex mu_;
    std::map<std::string, std::chrono::steady_clock::time_point> last_seen_;  // workers this registry added
    boost::asio::steady_timer timer_;
    bool stopped_ = false;
};

}  // namespace loom::orchestrator
