// Admission: the bounded per-model queue for requests that find every worker full (interactive before
// batch, FIFO within a class, batch promoted after a while), and the per-API-key rate limits.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <nlohmann/json_fwd.hpp>

#include "http/http_server.h"
#include "orchestrator/key_file.h"
#include "orchestrator/worker_pool.h"

namespace loom::orchestrator {

using Clock = std::chrono::steady_clock;

// The answer when the pool chose no worker: 404 model_not_found for a model no worker has, else 503
// with Retry-After.
http::HttpResponse no_worker_response(NoWorker why, const std::string& model);

enum class Priority { interactive, batch };
const char* priority_name(Priority p);

// A request field with a value the orchestrator refuses: 400 naming `param`.
class BadField : public std::invalid_argument {
public:
    BadField(std::string param, const std::string& message) : std::invalid_argument(message), param(std::move(param)) {}
    std::string param;
};

// What the orchestrator itself reads from a request body and removes before forwarding it:
// `priority` ("interactive", the default, or "batch") and `timeout` (seconds, a number > 0).
struct AdmissionFields {
    Priority priority = Priority::interactive;
    std::optional<double> timeout_s;
};
AdmissionFields take_admission_fields(nlohmann::json& body);  // BadField

// The waiting requests of one model, by ticket. Interactive ones first, each class first come first
// served; a batch request that has waited `promote_after` counts as interactive from then on (by its
// arrival time), so batch work is never starved by a steady interactive load.
class WaitQueue {
public:
    WaitQueue(size_t capacity, std::chrono::milliseconds promote_after)
        : capacity_(capacity), promote_after_(promote_after) {}
    bool push(uint64_t ticket, Priority p, Clock::time_point now);  // false when full
    std::optional<uint64_t> front(Clock::time_point now) const;     // the next to run
    bool remove(uint64_t ticket);
    size_t size(Priority p) const { return (p == Priority::interactive ? interactive_ : batch_).size(); }
    bool empty() const { return interactive_.empty() && batch_.empty(); }

private:
    struct Entry {
        uint64_t ticket;
        Clock::time_point since;
    };
    size_t capacity_;
    std::chrono::milliseconds promote_after_;
    std::deque<Entry> interactive_, batch_;
};

// Token buckets per key name: requests per minute and tokens per minute, each refilled continuously
// (a full minute's budget may be spent at once). A request is charged its load estimate when it is
// admitted (max_tokens or 256, plus 32 for the prompt; capped at the bucket's size so that one large
// request is not refused forever) and never refunded.
class RateLimiter {
public:
    struct Verdict {
        bool allowed = true;
        int retry_after_s = 0;  // whole seconds until the budget allows it
        std::string limit;      // "requests" or "tokens": the one that refused
    };
    Verdict take(const KeyEntry& key, int64_t tokens, Clock::time_point now);

private:
    struct Bucket {
        double level = -1;  // < 0: not used yet (full)
        Clock::time_point at;
    };
    std::mutex mu_;
    std::map<std::string, std::pair<Bucket, Bucket>> buckets_;  // name -> requests, tokens
};

// A queued request: told when it gets a worker or when none can serve it any more.
class Waiter {
public:
    virtual ~Waiter() = default;
    virtual void admitted(std::unique_ptr<WorkerPool::Lease> lease) = 0;
    virtual void refused(http::HttpResponse response) = 0;
};

struct AdmissionOptions {
    size_t queue_size = 1024;  // per model; 0: full workers answer 429 at once
    std::chrono::milliseconds promote_after{10'000};
    int worker_queue = 0;  // requests placed on a worker beyond its sequences_max
};

class Admission {
public:
    Admission(boost::asio::io_context& ioc, WorkerPool& pool, AdmissionOptions o);

    // Starts the periodic dispatch (workers that turned ready) and listens for released leases.
    void start();
    void stop();

    struct Decision {
        std::unique_ptr<WorkerPool::Lease> lease;   // run now
        std::optional<uint64_t> ticket;             // queued: wait for admitted()/refused()
        std::optional<http::HttpResponse> refusal;  // 404, 503 or 429
    };
    // A worker with room for a new request, or a place in the model's queue (behind those already
    // waiting, so none is overtaken), or the reason there is neither.
    Decision admit(const std::shared_ptr<Waiter>& waiter, const std::string& model, Priority p, int64_t tokens,
                   WorkerPool::Preference prefer = {});
    // A queued request that left (client gone, timeout): out of the queue at once.
    void withdraw(uint64_t ticket);

    // Models with no ready worker that will have one (the model registry loads them on demand): their
    // requests wait in the queue instead of a 404 or 503. Called with the queue's lock held: it must
    // not call back into Admission. Before start().
    void on_missing(std::function<bool(const std::string& model)> will_load) { will_load_ = std::move(will_load); }
    // Requests waiting for `model`.
    size_t queued(const std::string& model) const;
    // Answers every request waiting for `model` with `response` (its load failed or found no room).
    void refuse_all(const std::string& model, const http::HttpResponse& response);

    // Hands free workers to the queued requests in order; answers those no worker can serve any more.
    void dispatch();

    // 429 with Retry-After when `key` is over its budget (counted by key name and limit).
    std::optional<http::HttpResponse> limit(const KeyEntry& key, int64_t tokens);
    void count_timeout();

    // loom_orchestrator_queue_depth{class}, …_rejected_total{reason}, …_rate_limited_total{key,limit},
    // …_timeouts_total.
    std::string render_metrics() const;

private:
    struct Pending {
        std::string model;
        Priority priority;
        int64_t tokens;
        std::weak_ptr<Waiter> waiter;
        WorkerPool::Preference prefer;  // prefix routing and sessions, applied when a worker frees up
    };
    WaitQueue& queue_of(const std::string& model);
    void schedule();

    boost::asio::io_context& ioc_;
    WorkerPool& pool_;
    AdmissionOptions o_;
    RateLimiter limiter_;
    mutable std::mutex mu_;
    std::map<std::string, WaitQueue> queues_;  // by model ("" for requests that name none)
    std::map<uint64_t, Pending> pending_;
    uint64_t next_ticket_ = 0;
    std::map<std::string, double> rejected_;
    std::map<std::pair<std::string, std::string>, double> rate_limited_;
    double timeouts_ = 0;
    boost::asio::steady_timer timer_;
    bool stopped_ = false;
    std::function<bool(const std::string& model)> will_load_;
};

}  // namespace loom::orchestrator
