// Kept-alive connections to workers, idle between requests: a generation reuses one instead of
// paying a connect and an accept on both sides (and leaving a socket in TIME_WAIT) per request.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace loom::orchestrator {

struct UpstreamConnection;  // a connected socket (upstream_connection.h)

// Keyed by io_context and worker: a socket is used only on the io_context it was made on. Destroy
// the pool before those io_contexts (its idle sockets are registered with them).
class ConnectionPool {
public:
    // At most `per_worker` idle connections per io_context and worker; one idle longer than
    // `max_idle` is closed rather than reused (the worker closes idle connections after its request
    // timeout, 30 s by default: a reused connection must not race that close).
    explicit ConnectionPool(size_t per_worker = 1024, std::chrono::milliseconds max_idle = std::chrono::seconds(5));
    ~ConnectionPool();
    ConnectionPool(const ConnectionPool&) = delete;
    ConnectionPool& operator=(const ConnectionPool&) = delete;

    // The most recently used idle connection to `worker` that is still open, or null.
    std::unique_ptr<UpstreamConnection> take(boost::asio::io_context& ioc, const std::string& worker);
    // A connection whose last response ended cleanly, for the next request to `worker`.
    void put(boost::asio::io_context& ioc, const std::string& worker, std::unique_ptr<UpstreamConnection> c);
    // Idle connections now (all workers).
    size_t idle() const;

    // How calls got their connection: connected anew, taken from the pool, or connected again after
    // a reused one turned out closed by the worker.
    enum class Got { fresh, reused, replaced };
    void count(Got how);
    // The idle gauge and the counters above, in Prometheus' text format.
    std::string render_metrics() const;

    // Closes the connections idle longer than max_idle every max_idle / 4 on `ioc`, so a quiet
    // orchestrator holds no descriptors it does not use. After stop() no sweep follows.
    void start(boost::asio::io_context& ioc);
    void stop();

private:
    using Key = std::pair<boost::asio::io_context*, std::string>;
    using Idle = std::vector<std::unique_ptr<UpstreamConnection>>;  // oldest first
    void drop_expired(Idle& list, std::vector<std::unique_ptr<UpstreamConnection>>& closing) const;
    void sweep();

    const size_t per_worker_;
    const std::chrono::milliseconds max_idle_;
    mutable std::mutex mu_;
    std::map<Key, Idle> idle_;
    std::optional<boost::asio::steady_timer> sweeper_;
    std::atomic<bool> stopping_{false};
    std::atomic<uint64_t> opened_{0}, reused_{0}, replaced_{0};
};

}  // namespace loom::orchestrator
