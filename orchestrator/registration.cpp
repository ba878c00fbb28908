// Registry: the secret check, admission into the pool and the heartbeat sweep.
#include "orchestrator/registration.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <vector>

#include "http/api_keys.h"
#include "http/url.h"

namespace loom::orchestrator {

using http::error_response;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::shared_ptr<spdlog::logger> log() {
    if (auto l = spdlog::get("orchestrator")) return l;
    return spdlog::default_logger();
}

}  // namespace

Registry::Registry(boost::asio::io_context& ioc, WorkerPool& pool, std::string secret)
    : pool_(pool), secret_(std::move(secret)), timer_(ioc) {}

Registry::~Registry() { stop(); }

http::HttpResponse Registry::handle(const http::HttpRequest& req) {
    if (secret_.empty())
        return error_response(403, "registration is off: start the orchestrator with --register-secret",
                              "permission_error");
    const json body = json::parse(req.body, nullptr, false);
    const json* secret = body.is_object() && body.contains("secret") ? &body["secret"] : nullptr;
    const std::string given = secret && secret->is_string() ? secret->get<std::string>() : "";
    if (!http::same_secret(given, secret_)) {
        log()->warn("registration from {} refused: {} secret", req.peer, given.empty() ? "no" : "a wrong");
        return error_response(401, "a missing or wrong registration secret", "authentication_error", "secret");
    }
    if (!body.contains("url") || !body["url"].is_string())
        return error_response(400, "url must be the worker's http://HOST:PORT", "invalid_request_error", "url");
    WorkerUrl url;
    try {
        http::HostPort u = http::parse_http_url(body["url"].get<std::string>());
        url = WorkerUrl{std::move(u.host), u.port, std::move(u.text)};
    } catch (const std::invalid_argument& e) {
        return error_response(400, std::string("url: ") + e.what() + " (expected http://HOST:PORT)",
                              "invalid_request_error", "url");
    }
    std::lock_guard lock(mu_);
    const auto known = last_seen_.find(url.text);
    if (known == last_seen_.end() && last_seen_.size() >= kMaxWorkers)
        return error_response(503, "too many registered workers", "service_unavailable");
    // A worker given with --worker is the pool's already and never retired: its heartbeats change nothing.
    if (pool_.add(url)) {
        log()->info("worker {} registered (from {})", url.text, req.peer);
        last_seen_[url.text] = Clock::now();
    } else if (known != last_seen_.end()) {
        known->second = Clock::now();
    }
    return http::json_response(
        200, {{"url", url.text}, {"registered", true}, {"heartbeat_timeout_ms", kHeartbeatLoss.count()}});
}

void Registry::start() {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    timer_.expires_after(kSweepInterval);
    timer_.async_wait([this](boost::system::error_code ec) {
        if (ec) return;
        sweep();
        start();
    });
}

void Registry::stop() {
    std::lock_guard lock(mu_);
    stopped_ = true;
    timer_.cancel();
}

// A worker silent for kHeartbeatLoss leaves the pool once it is not ready either: one that still
// answers its health checks keeps serving (its heartbeats may only be lost on the way).
void Registry::sweep() {
    std::map<std::string, bool> ready;
    for (const WorkerStatus& w : pool_.status()) ready[w.url] = w.state == WorkerState::ready;
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    for (auto it = last_seen_.begin(); it != last_seen_.end();) {
        if (now - it->second > kHeartbeatLoss && !ready[it->first] && pool_.retire(it->first)) {
            log()->warn("worker {}: no heartbeat for {} ms and not ready; removed", it->first,
                        std::chrono::duration_cast<std::chrono::milliseconds>(now - it->second).count());
            it = last_seen_.erase(it);
        } else {
            ++it;
        }
    }
}

}  // namespace loom::orchestrator
