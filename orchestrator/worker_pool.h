// The workers behind the orchestrator: their health (GET /health every 200 ms), the load this
// orchestrator has routed to each, and the routing policies that choose among the ready ones.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "orchestrator/metrics.h"
#include "orchestrator/options.h"

namespace loom::orchestrator {

enum class WorkerState { ready, loading, draining, unhealthy };
const char* state_name(WorkerState s);

struct WorkerStatus {
    std::string url;
    WorkerState state = WorkerState::unhealthy;
    std::string model, backend, device;  // from its last /health that carried them
    int running = 0, waiting = 0;
    int context_size = 0;            // tokens per sequence, 0 until known
    int64_t outstanding_tokens = 0;  // routed here by this orchestrator and not produced yet
};

// Why no worker was chosen.
enum class NoWorker { unknown_model, none_ready };

class WorkerPool {
public:
    static constexpr std::chrono::milliseconds kPollInterval{200};
    static constexpr std::chrono::milliseconds kHealthTimeout{300};
    // Timed-out polls in a row that eject a ready worker: one slow answer on a busy host is not a
    // failure, two (about 800 ms) are. A refused or reset connection or an error status ejects at once.
    static constexpr int kTimeoutsToEject = 2;

    WorkerPool(boost::asio::io_context& ioc, const std::vector<WorkerUrl>& workers, Routing routing, Metrics& metrics);
    ~WorkerPool();

    // A worker joining after construction (spawned or registered); polled from the next round on.
    // False when that URL is already in the pool (a retired one comes back: true).
    bool add(const WorkerUrl& url);
    // A worker leaving (a registered one whose heartbeats stopped): no longer polled, routed to or
    // listed until add() brings it back. False when the URL is not in the pool or already retired.
    bool retire(const std::string& url);

    // Starts polling every worker's /health; stop() ends it.
    void start();
    void stop();

    // Holds a worker's share of the load while a request runs there; released when destroyed.
    class Lease {
    public:
        Lease(WorkerPool& pool, size_t index, int64_t tokens) : pool_(pool), index_(index), tokens_(tokens) {}
        ~Lease();
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        const WorkerUrl& worker() const;
        int context_size() const;  // the worker's, as its /health last said (0: unknown)
        void produced(int64_t tokens);  // tokens streamed: that much less outstanding

    private:
        WorkerPool& pool_;
        size_t index_;
        int64_t tokens_;
    };

    struct Choice {
        std::unique_ptr<Lease> lease;  // null: no worker, for `why`
        NoWorker why = NoWorker::none_ready;
    };
    // A ready worker serving `model` (empty: any) not in `exclude` (URLs), by the policy; `tokens`
    // is the load the request adds; `reason` labels the decision in /metrics (initial, retry, failover).
    Choice choose(const std::string& model, const std::set<std::string>& exclude, int64_t tokens,
                  const std::string& reason);

    // Called (on a client thread, no lock held) when a ready worker stops answering its health polls:
    // its running streams will not end by themselves when it hangs without closing them. Before start().
    void on_ejected(std::function<void(const std::string& url)> listener) { on_ejected_ = std::move(listener); }

    // A worker whose connection broke: out of routing until its /health says ready again.
    void mark_unhealthy(const std::string& url);

    std::vector<WorkerStatus> status() const;
    bool any_ready() const;
    std::map<std::string, int> count_by_state() const;

private:
    struct Worker;
    void poll_all();
    void poll(const std::shared_ptr<Worker>& w);
    const char* policy_name() const;

    boost::asio::io_context& ioc_;
    Routing routing_;
    Metrics& metrics_;
    mutable std::mutex mu_;
    std::vector<std::shared_ptr<Worker>> workers_;
    boost::asio::steady_timer timer_;
    std::mt19937_64 rng_;
    size_t next_ = 0;  // round-robin position
    std::function<void(const std::string& url)> on_ejected_;
    bool stopped_ = false;
};

}  // namespace loom::orchestrator
