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
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "orchestrator/connection_pool.h"
#include "orchestrator/metrics.h"
#include "orchestrator/options.h"

namespace loom::orchestrator {

enum class WorkerState { ready, loading, draining, unhealthy };
const char* state_name(WorkerState s);

// Device memory a worker holds for one purpose (weights, kv_cache, workspace), from its /health.
struct VramUse {
    std::string purpose;
    int64_t reserved = 0, used = 0;
};

struct WorkerStatus {
    std::string id;  // "w0", "w1", ...: stable for the admin API (a restarted local worker keeps its own)
    std::string url;
    std::string origin;    // static (--worker), spawned (--spawn) or registered (joined later)
    bool drained = false;  // by the admin API: no new requests
    WorkerState state = WorkerState::unhealthy;
    std::string model, backend, device;  // from its last /health that carried them
    int device_index = -1;               // a CUDA worker's GPU, as its /health says (-1: none)
    std::string device_uuid;             // that GPU's UUID ("" for none)
    int running = 0, waiting = 0;
    int context_size = 0;            // tokens per sequence, 0 until known
    int sequences_max = 0;           // the worker's --max-seqs, 0 until known
    int requests_here = 0;           // requests this orchestrator has running there (its Leases)
    int64_t outstanding_tokens = 0;  // routed here by this orchestrator and not produced yet
    std::vector<VramUse> vram;       // its /health's vram_bytes (none on a CPU worker)
};

// Why no worker was chosen.
enum class NoWorker { unknown_model, none_ready, all_full };

class WorkerPool {
public:
    static constexpr std::chrono::milliseconds kPollInterval{200};
    static constexpr std::chrono::milliseconds kHealthTimeout{300};
    // Timed-out polls in a row that eject a ready worker: one slow answer on a busy host is not a
    // failure, two (about 800 ms) are. A refused or reset connection or an error status ejects at once.
    static constexpr int kTimeoutsToEject = 2;

    WorkerPool(boost::asio::io_context& ioc, const std::vector<WorkerUrl>& workers, Routing routing, Metrics& metrics);
    ~WorkerPool();

    // A registered worker joining after construction; polled from the next round on. False when that
    // URL is already in the pool (a retired one joins again as a new entry: true).
    bool add(const WorkerUrl& url);
    // add() with its origin; `id` given: the worker takes that id and its drain flag (a restarted
    // local worker on its new port). Returns the worker's id, "" when that URL is already in the pool.
    std::string join(const WorkerUrl& url, const std::string& origin, const std::string& id = {});
    // The worker leaves routing, health polls and the status lists for good (a local worker that
    // exited, a registered one whose heartbeats stopped). Its entry is reused by a later join once no
    // Lease holds it; the same URL may join again as a new entry. False when it was not in the pool.
    bool retire(const std::string& url);
    // Drained workers get no new requests and finish the ones they run. By id, so that it holds for a
    // worker that joins later under that id (a spawned worker still starting or restarting).
    void set_drained(const std::string& id, bool drained);
    std::set<std::string> drained_ids() const;
    // An id for a worker that joins later (a spawned worker is named before it listens).
    std::string new_id();

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
        int context_size() const;       // the worker's, as its /health last said (0: unknown)
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
    // A say in the choice beyond the pool's own policy (prefix routing, sessions): given the eligible
    // workers and the position among them of the pool's own pick, the position taken and the reason
    // that labels the decision. Called with the pool's lock held: it must not call the pool.
    struct Candidate {
        std::string_view url, model;
        int64_t load;  // outstanding tokens
    };
    struct Pick {
        size_t position;
        const char* reason;
    };
    using Preference = std::function<Pick(const std::vector<Candidate>& eligible, size_t own_pick)>;

    // A ready worker serving `model` (empty: any) not in `exclude` (URLs), by the policy (or `prefer`);
    // `tokens` is the load the request adds; `reason` labels the decision in /metrics (initial, retry,
    // failover) unless `prefer` gives one. With `room`, only workers whose requests_here are below
    // sequences_max + *room (all_full when every ready one is at it); without, capacity is not looked
    // at (retries and failovers).
    Choice choose(const std::string& model, const std::set<std::string>& exclude, int64_t tokens,
                  const std::string& reason, std::optional<int> room = std::nullopt, const Preference& prefer = {});

    // Called (no lock held) whenever a Lease ends: room on a worker for a queued request. Before start().
    void on_released(std::function<void()> listener) { on_released_ = std::move(listener); }

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
    // One kept-alive connection per worker for its polls: five a second per worker would otherwise
    // each cost a connect, an accept and a socket left in TIME_WAIT. A reused one the worker closed
    // (its idle timeout, a restart) is replaced by a new one within the same poll (call_upstream).
    ConnectionPool health_connections_{1};
    std::mt19937_64 rng_;
    size_t next_ = 0;                // round-robin position
    int next_id_ = 0;                // "w<n>" for the next worker without an id
    std::set<std::string> drained_;  // ids, so a restarted worker stays drained
    std::function<void(const std::string& url)> on_ejected_;
    std::function<void()> on_released_;
    bool stopped_ = false;
};

}  // namespace loom::orchestrator
