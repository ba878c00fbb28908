// The wait queue's order, the token buckets, and handing freed workers to queued requests.
#include "orchestrator/admission.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>
#include <spdlog/spdlog.h>
#include <vector>

#include "http/prometheus.h"

namespace loom::orchestrator {

using http::HttpResponse;
using nlohmann::json;

namespace {

std::shared_ptr<spdlog::logger> log() {
    if (auto l = spdlog::get("orchestrator")) return l;
    return spdlog::default_logger();
}

constexpr double kMaxTimeoutS = 86'400;  // a day: longer is surely a unit mistake
constexpr std::chrono::milliseconds kDispatchInterval{200};

HttpResponse too_many(const std::string& message, const std::string& code, int retry_after_s) {
    HttpResponse r = http::error_response(429, message, "rate_limit_error", {}, code);
    r.headers.emplace_back("Retry-After", std::to_string(retry_after_s));
    return r;
}

}  // namespace

HttpResponse no_worker_response(NoWorker why, const std::string& model) {
    if (why == NoWorker::unknown_model)
        return http::error_response(404, "the model '" + model + "' does not exist on any worker",
                                    "invalid_request_error", "model", "model_not_found");
    HttpResponse r = http::error_response(503, "no worker is ready", "service_unavailable");
    r.headers.emplace_back("Retry-After", "1");
    return r;
}

const char* priority_name(Priority p) { return p == Priority::interactive ? "interactive" : "batch"; }

AdmissionFields take_admission_fields(json& body) {
    AdmissionFields f;
    if (body.contains("priority") && !body["priority"].is_null()) {
        const json& p = body["priority"];
        if (p == "batch")
            f.priority = Priority::batch;
        else if (p != "interactive")
            throw BadField("priority", "priority must be \"interactive\" (the default) or \"batch\"");
    }
    if (body.contains("timeout") && !body["timeout"].is_null()) {
        const json& t = body["timeout"];
        if (!t.is_number() || !(t.get<double>() > 0) || t.get<double>() > kMaxTimeoutS)
            throw BadField("timeout", "timeout must be a number of seconds > 0 and at most 86400");
        f.timeout_s = t.get<double>();
    }
    body.erase("priority");  // the orchestrator's own: the worker is not told
    body.erase("timeout");
    return f;
}

bool WaitQueue::push(uint64_t ticket, Priority p, Clock::time_point now) {
    if (interactive_.size() + batch_.size() >= capacity_) return false;
    (p == Priority::interactive ? interactive_ : batch_).push_back({ticket, now});
    return true;
}

std::optional<uint64_t> WaitQueue::front(Clock::time_point now) const {
    const bool promoted = !batch_.empty() && now - batch_.front().since >= promote_after_;
    if (!interactive_.empty() && !(promoted && batch_.front().since < interactive_.front().since))
        return interactive_.front().ticket;
    if (!batch_.empty()) return batch_.front().ticket;
    return std::nullopt;
}

bool WaitQueue::remove(uint64_t ticket) {
    for (auto* q : {&interactive_, &batch_}) {
        auto it = std::find_if(q->begin(), q->end(), [&](const Entry& e) { return e.ticket == ticket; });
        if (it != q->end()) {
            q->erase(it);
            return true;
        }
    }
    return false;
}

RateLimiter::Verdict RateLimiter::take(const KeyEntry& key, int64_t tokens, Clock::time_point now) {
    std::lock_guard lock(mu_);
    auto& [requests, token_bucket] = buckets_[key.name];
    // Level after refilling at per_minute / 60 per second, at most per_minute.
    const auto refill = [now](Bucket& b, double per_minute) {
        if (b.level < 0) b.level = per_minute;
        const double s = std::chrono::duration<double>(now - b.at).count();
        b.level = std::min(per_minute, b.level + std::max(0.0, s) * per_minute / 60);
        b.at = now;
    };
    Verdict v;
    double wait_s = 0;
    const double need_tokens = std::min<double>(static_cast<double>(tokens), key.tokens_per_minute);
    if (key.requests_per_minute > 0) {
        refill(requests, key.requests_per_minute);
        if (requests.level < 1) wait_s = (1 - requests.level) * 60 / key.requests_per_minute, v.limit = "requests";
    }
    if (key.tokens_per_minute > 0) {
        refill(token_bucket, key.tokens_per_minute);
        const double w = (need_tokens - token_bucket.level) * 60 / key.tokens_per_minute;
        if (w > wait_s) wait_s = w, v.limit = "tokens";
    }
    if (wait_s > 0) {
        v.allowed = false;
        v.retry_after_s = std::max(1, static_cast<int>(std::ceil(wait_s)));
        return v;
    }
    if (key.requests_per_minute > 0) requests.level -= 1;
    if (key.tokens_per_minute > 0) token_bucket.level -= need_tokens;
    return v;
}

Admission::Admission(boost::asio::io_context& ioc, WorkerPool& pool, AdmissionOptions o)
    : ioc_(ioc), pool_(pool), o_(o), timer_(ioc) {}

void Admission::start() {
    pool_.on_released([this] { boost::asio::post(ioc_, [this] { dispatch(); }); });
    std::lock_guard lock(mu_);
    schedule();
}

// Every 200 ms, besides every lease's end: a worker that turned ready, or one that stopped being so
// (its queued requests then get the 503 a new one would) (mu_ held).
void Admission::schedule() {
    if (stopped_) return;
    timer_.expires_after(kDispatchInterval);
    timer_.async_wait([this](boost::system::error_code ec) {
        if (ec) return;
        dispatch();
        std::lock_guard lock(mu_);
        schedule();
    });
}

void Admission::stop() {
    std::lock_guard lock(mu_);
    stopped_ = true;
    timer_.cancel();
}

WaitQueue& Admission::queue_of(const std::string& model) {
    return queues_.try_emplace(model, o_.queue_size, o_.promote_after).first->second;
}

Admission::Decision Admission::admit(const std::shared_ptr<Waiter>& waiter, const std::string& model, Priority p,
                                     int64_t tokens, WorkerPool::Preference prefer) {
    Decision d;
    std::lock_guard lock(mu_);
    WaitQueue& q = queue_of(model);
    if (q.empty()) {
        auto c = pool_.choose(model, {}, tokens, "initial", o_.worker_queue, prefer);
        if (c.lease) {
            d.lease = std::move(c.lease);
            return d;
        }
        if (c.why != NoWorker::all_full && !(will_load_ && will_load_(model))) {
            d.refusal = no_worker_response(c.why, model);
            return d;
        }
    }
    const uint64_t ticket = ++next_ticket_;
    if (!q.push(ticket, p, Clock::now())) {
        ++rejected_["queue_full"];
        d.refusal = too_many("every worker" + (model.empty() ? "" : " serving '" + model + "'") + " is full and " +
                                 std::to_string(o_.queue_size) + " requests are waiting already; retry later",
                             "queue_full", 1);
        return d;
    }
    pending_[ticket] = Pending{model, p, tokens, waiter, std::move(prefer)};
    d.ticket = ticket;
    return d;
}

void Admission::withdraw(uint64_t ticket) {
    std::lock_guard lock(mu_);
    auto it = pending_.find(ticket);
    if (it == pending_.end()) return;
    queue_of(it->second.model).remove(ticket);
    pending_.erase(it);
}

void Admission::dispatch() {
    std::vector<std::pair<std::shared_ptr<Waiter>, std::unique_ptr<WorkerPool::Lease>>> go;
    std::vector<std::pair<std::shared_ptr<Waiter>, HttpResponse>> no;
    {
        std::lock_guard lock(mu_);
        const auto now = Clock::now();
        for (auto& [model, q] : queues_) {
            while (auto ticket = q.front(now)) {
                const Pending& p = pending_.at(*ticket);
                auto c = pool_.choose(model, {}, p.tokens, "queued", o_.worker_queue, p.prefer);
                // This model waits for a lease to end, or for its worker to load.
                if (!c.lease && (c.why == NoWorker::all_full || (will_load_ && will_load_(model)))) break;
                if (auto w = p.waiter.lock()) {
                    if (c.lease)
                        go.emplace_back(std::move(w), std::move(c.lease));
                    else
                        no.emplace_back(std::move(w), no_worker_response(c.why, model));
                }
                q.remove(*ticket);
                pending_.erase(*ticket);
            }
        }
    }
    // Outside mu_: a waiter takes its own lock, and may give the lease straight back.
    for (auto& [w, lease] : go) w->admitted(std::move(lease));
    for (auto& [w, r] : no) w->refused(std::move(r));
}

size_t Admission::queued(const std::string& model) const {
    std::lock_guard lock(mu_);
    const auto it = queues_.find(model);
    return it == queues_.end() ? 0 : it->second.size(Priority::interactive) + it->second.size(Priority::batch);
}

void Admission::refuse_all(const std::string& model, const HttpResponse& response) {
    std::vector<std::shared_ptr<Waiter>> no;
    {
        std::lock_guard lock(mu_);
        const auto q = queues_.find(model);
        if (q == queues_.end()) return;
        while (auto ticket = q->second.front(Clock::now())) {
            if (auto w = pending_.at(*ticket).waiter.lock()) no.push_back(std::move(w));
            q->second.remove(*ticket);
            pending_.erase(*ticket);
        }
    }
    for (auto& w : no) w->refused(response);
}

std::optional<HttpResponse> Admission::limit(const KeyEntry& key, int64_t tokens) {
    const RateLimiter::Verdict v = limiter_.take(key, tokens, Clock::now());
    if (v.allowed) return std::nullopt;
    {
        std::lock_guard lock(mu_);
        ++rejected_["rate_limit_" + v.limit];
        ++rate_limited_[{key.name, v.limit}];
    }
    log()->info("key '{}' is over its {} per minute; retry after {} s", key.name, v.limit, v.retry_after_s);
    return too_many("the " + v.limit + "-per-minute limit of this API key is reached; retry after " +
                        std::to_string(v.retry_after_s) + " s",
                    "rate_limit_exceeded", v.retry_after_s);
}

void Admission::count_timeout() {
    std::lock_guard lock(mu_);
    ++timeouts_;
}

std::string Admission::render_metrics() const {
    std::lock_guard lock(mu_);
    size_t depth[2] = {0, 0};
    for (const auto& [model, q] : queues_)
        for (Priority p : {Priority::interactive, Priority::batch}) depth[static_cast<int>(p)] += q.size(p);
    std::ostringstream o;
    o << "# HELP loom_orchestrator_queue_depth Requests waiting for a worker with room, by class.\n"
      << "# TYPE loom_orchestrator_queue_depth gauge\n";
    for (Priority p : {Priority::interactive, Priority::batch})
        o << "loom_orchestrator_queue_depth{class=\"" << priority_name(p) << "\"} " << depth[static_cast<int>(p)]
          << "\n";
    o << "# HELP loom_orchestrator_rejected_total Requests answered 429, by reason.\n"
      << "# TYPE loom_orchestrator_rejected_total counter\n";
    for (const auto& [reason, n] : rejected_)
        o << "loom_orchestrator_rejected_total{reason=\"" << reason << "\"} " << n << "\n";
    o << "# HELP loom_orchestrator_rate_limited_total Requests over an API key's limit, by key name and limit.\n"
      << "# TYPE loom_orchestrator_rate_limited_total counter\n";
    for (const auto& [key, n] : rate_limited_)
        o << "loom_orchestrator_rate_limited_total{key=\"" << http::prometheus::escape(key.first) << "\",limit=\""
          << key.second << "\"} " << n << "\n";
    o << "# HELP loom_orchestrator_timeouts_total Requests ended by their timeout.\n"
      << "# TYPE loom_orchestrator_timeouts_total counter\n"
      << "loom_orchestrator_timeouts_total " << timeouts_ << "\n";
    return o.str();
}

}  // namespace loom::orchestrator
