// ConnectionPool: idle kept-alive worker connections per io_context and worker, most recent first out.
#include "orchestrator/connection_pool.h"

#include <algorithm>
#include <cerrno>
#include <sys/socket.h>

#include "http/prometheus.h"
#include "orchestrator/upstream_connection.h"

namespace loom::orchestrator {

bool UpstreamConnection::open() {
    auto& socket = stream.socket();
    if (!socket.is_open()) return false;
    char byte;
    const ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    // 0: the worker closed it; > 0: bytes nobody asked for (the connection's framing is lost).
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

ConnectionPool::ConnectionPool(size_t per_worker, std::chrono::milliseconds max_idle)
    : per_worker_(per_worker), max_idle_(max_idle) {}

ConnectionPool::~ConnectionPool() = default;

// Moves the connections idle for too long out of `list` (mu_ held); they are closed after it is released.
void ConnectionPool::drop_expired(Idle& list, std::vector<std::unique_ptr<UpstreamConnection>>& closing) const {
    const auto oldest_kept = std::chrono::steady_clock::now() - max_idle_;
    const auto fresh =
        std::find_if(list.begin(), list.end(), [&](const auto& c) { return c->idle_since >= oldest_kept; });
    std::move(list.begin(), fresh, std::back_inserter(closing));
    list.erase(list.begin(), fresh);
}

std::unique_ptr<UpstreamConnection> ConnectionPool::take(boost::asio::io_context& ioc, const std::string& worker) {
    std::vector<std::unique_ptr<UpstreamConnection>> closing;
    std::unique_ptr<UpstreamConnection> c;
    {
        std::lock_guard lock(mu_);
        const auto it = idle_.find(Key{&ioc, worker});
        if (it == idle_.end()) return nullptr;
        drop_expired(it->second, closing);
        while (!c && !it->second.empty()) {
            c = std::move(it->second.back());
            it->second.pop_back();
            if (!c->open()) closing.push_back(std::move(c));
        }
    }
    return c;
}

void ConnectionPool::put(boost::asio::io_context& ioc, const std::string& worker,
                         std::unique_ptr<UpstreamConnection> c) {
    std::vector<std::unique_ptr<UpstreamConnection>> closing;
    c->idle_since = std::chrono::steady_clock::now();
    std::lock_guard lock(mu_);
    Idle& list = idle_[Key{&ioc, worker}];
    drop_expired(list, closing);
    if (list.size() >= per_worker_) {
        closing.push_back(std::move(list.front()));
        list.erase(list.begin());
    }
    list.push_back(std::move(c));
}

void ConnectionPool::start(boost::asio::io_context& ioc) {
    sweeper_.emplace(ioc);
    sweep();
}

// Only the sweep's own handler touches the timer (it may run on any of the io_context's threads).
void ConnectionPool::stop() { stopping_ = true; }

void ConnectionPool::sweep() {
    std::vector<std::unique_ptr<UpstreamConnection>> closing;
    {
        std::lock_guard lock(mu_);
        for (auto& [key, list] : idle_) drop_expired(list, closing);
    }
    sweeper_->expires_after(max_idle_ / 4);
    sweeper_->async_wait([this](boost::system::error_code ec) {
        if (!ec && !stopping_) sweep();
    });
}

void ConnectionPool::count(Got how) { (how == Got::reused ? reused_ : how == Got::replaced ? replaced_ : opened_)++; }

std::string ConnectionPool::render_metrics() const {
    namespace prom = http::prometheus;
    std::string out;
    prom::header(out, "loom_orchestrator_upstream_connections_idle", "gauge",
                 "Kept-alive connections to workers waiting for their next request.");
    prom::sample(out, "loom_orchestrator_upstream_connections_idle", "", static_cast<double>(idle()));
    prom::header(out, "loom_orchestrator_upstream_connections_total", "counter",
                 "Connections generations and relayed requests used, by how they got them.");
    prom::sample(out, "loom_orchestrator_upstream_connections_total", "how=\"new\"", static_cast<double>(opened_));
    prom::sample(out, "loom_orchestrator_upstream_connections_total", "how=\"reused\"", static_cast<double>(reused_));
    prom::sample(out, "loom_orchestrator_upstream_connections_total", "how=\"replaced\"",
                 static_cast<double>(replaced_));
    return out;
}

size_t ConnectionPool::idle() const {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (const auto& [key, list] : idle_) n += list.size();
    return n;
}

}  // namespace loom::orchestrator
