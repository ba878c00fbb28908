// Health polling, load accounting and the choice of a worker.
#include "orchestrator/worker_pool.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "http/secure_random.h"
#include "orchestrator/upstream.h"

namespace loom::orchestrator {

using nlohmann::json;

namespace {

std::shared_ptr<spdlog::logger> log() {
    if (auto l = spdlog::get("orchestrator")) return l;
    return spdlog::default_logger();
}

}  // namespace

const char* state_name(WorkerState s) {
    switch (s) {
        case WorkerState::ready: return "ready";
        case WorkerState::loading: return "loading";
        case WorkerState::draining: return "draining";
        case WorkerState::unhealthy: return "unhealthy";
    }
    return "unhealthy";
}

struct WorkerPool::Worker {
    WorkerUrl url;
    WorkerStatus status;
    bool polling = false;  // a /health call is in flight
    int timeouts = 0;      // timed-out polls in a row
    bool retired = false;  // gone for good (retire()); its index stays while Leases hold it
    std::chrono::steady_clock::time_point last_tokens{};  // tokens last relayed from it
};

WorkerPool::WorkerPool(boost::asio::io_context& ioc, const std::vector<WorkerUrl>& workers, Routing routing,
                       Metrics& metrics)
    : ioc_(ioc), routing_(routing), metrics_(metrics), timer_(ioc), rng_(http::random_u64()) {
    for (const auto& u : workers) {
        auto w = std::make_shared<Worker>();
        w->url = u;
        w->status.url = u.text;
        w->status.id = "w" + std::to_string(next_id_++);
        w->status.origin = "static";
        workers_.push_back(std::move(w));
    }
}

WorkerPool::~WorkerPool() { stop(); }

bool WorkerPool::add(const WorkerUrl& url) { return !join(url, "registered").empty(); }

std::string WorkerPool::join(const WorkerUrl& url, const std::string& origin, const std::string& id) {
    std::lock_guard lock(mu_);
    for (const auto& w : workers_)
        if (!w->retired && w->url.text == url.text) return {};
    auto w = std::make_shared<Worker>();
    w->url = url;
    w->status.url = url.text;
    w->status.origin = origin;
    w->status.id = id.empty() ? "w" + std::to_string(next_id_++) : id;
    // Leases hold indexes: an entry is replaced only once retired and free, never removed.
    const auto free = std::find_if(workers_.begin(), workers_.end(), [](const auto& old) {
        return old->retired && old->status.requests_here == 0 && !old->polling;
    });
    if (free != workers_.end())
        *free = w;
    else
        workers_.push_back(w);
    return w->status.id;
}

bool WorkerPool::retire(const std::string& url) {
    std::lock_guard lock(mu_);
    for (const auto& w : workers_)
        if (!w->retired && w->url.text == url) {
            w->retired = true;
            w->status.state = WorkerState::unhealthy;
            log()->info("worker {} ({}): retired", url, w->status.id);
            return true;
        }
    return false;
}

void WorkerPool::set_drained(const std::string& id, bool drained) {
    std::lock_guard lock(mu_);
    if (drained)
        drained_.insert(id);
    else
        drained_.erase(id);
}

std::set<std::string> WorkerPool::drained_ids() const {
    std::lock_guard lock(mu_);
    return drained_;
}

std::string WorkerPool::new_id() {
    std::lock_guard lock(mu_);
    return "w" + std::to_string(next_id_++);
}

void WorkerPool::start() {
    health_connections_.start(ioc_);  // closes a retired worker's connection
    poll_all();
}

void WorkerPool::stop() {
    std::lock_guard lock(mu_);
    stopped_ = true;
    timer_.cancel();
    health_connections_.stop();
}

void WorkerPool::poll_all() {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    for (const auto& w : workers_)
        if (!w->polling && !w->retired) poll(w);
    timer_.expires_after(kPollInterval);
    timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) poll_all();
    });
}

// One GET /health (mu_ held), on the worker's kept connection: 200 is ready; a 503 that says loading
// or draining is that; anything else, a timeout or a refused connection is unhealthy (a kept
// connection that broke before the answer counts only once a new one failed too).
void WorkerPool::poll(const std::shared_ptr<Worker>& w) {
    w->polling = true;
    auto status = std::make_shared<int>(0);
    auto body = std::make_shared<std::string>();
    UpstreamHandlers h;
    h.on_head = [status](int s, const http::HttpHeaders&) { *status = s; };
    h.on_data = [body](std::string d) { *body += d; };
    h.on_end = [this, w, status, body](const UpstreamEnd& end) {
        WorkerState state = WorkerState::unhealthy;
        json j;
        if (end.complete) j = json::parse(*body, nullptr, false);
        const std::string said = j.is_object() ? j.value("status", "") : "";
        if (end.complete && *status == 200)
            state = WorkerState::ready;
        else if (end.complete && said == "loading")
            state = WorkerState::loading;
        else if (end.complete && said == "draining")
            state = WorkerState::draining;
        std::unique_lock lock(mu_);
        w->polling = false;
        if (w->retired) return;
        w->timeouts = end.timed_out ? w->timeouts + 1 : 0;
        // A worker whose streams still deliver tokens is alive, however late its /health answers (a
        // host busy with a thousand streams answered after 300 ms and lost them all; bench/orchestrator_overhead).
        const bool streaming = std::chrono::steady_clock::now() - w->last_tokens < kTimeoutsToEject * kHealthTimeout;
        if (end.timed_out && (w->timeouts < kTimeoutsToEject || streaming)) return;  // keep the state it had
        if (state != w->status.state)
            log()->info("worker {}: {} -> {}{}", w->url.text, state_name(w->status.state), state_name(state),
                        end.complete ? "" : " (" + end.error + ")");
        const bool ejected = w->status.state == WorkerState::ready && state == WorkerState::unhealthy;
        w->status.state = state;
        if (ejected && on_ejected_) {
            lock.unlock();
            on_ejected_(w->url.text);
            return;
        }
        if (!j.is_object()) return;
        if (j.contains("model") && j["model"].is_string()) w->status.model = j["model"];
        if (j.contains("backend") && j["backend"].is_string()) w->status.backend = j["backend"];
        if (j.contains("device") && j["device"].is_string()) w->status.device = j["device"];
        w->status.device_index =
            j.contains("device_index") && j["device_index"].is_number_integer() ? j["device_index"].get<int>() : -1;
        w->status.device_uuid = j.contains("device_uuid") && j["device_uuid"].is_string() ? j["device_uuid"] : "";
        w->status.running = j.value("sequences_running", 0);
        w->status.waiting = j.value("queue_length", 0);
        w->status.context_size = j.value("context_size", 0);
        w->status.sequences_max = j.value("sequences_max", 0);
        w->status.vram.clear();
        if (j.contains("vram_bytes") && j["vram_bytes"].is_object())
            for (const auto& [purpose, v] : j["vram_bytes"].items())
                if (v.is_object() && v.contains("reserved") && v["reserved"].is_number_integer() &&
                    v.contains("used") && v["used"].is_number_integer())
                    w->status.vram.push_back({purpose, v["reserved"].get<int64_t>(), v["used"].get<int64_t>()});
    };
    call_upstream(ioc_, UpstreamRequest{w->url, "GET", "/health", {}, {}, kHealthTimeout, kHealthTimeout}, std::move(h),
                  &health_connections_);
}

const char* WorkerPool::policy_name() const { return routing_name(routing_); }

WorkerPool::Choice WorkerPool::choose(const std::string& model, const std::set<std::string>& exclude, int64_t tokens,
                                      const std::string& reason, std::optional<int> room, const Preference& prefer) {
    std::unique_lock lock(mu_);
    std::vector<size_t> eligible;
    bool known = model.empty(), full = false;  // naming none, with no worker: 503, not "model '' does not exist"
    for (size_t i = 0; i < workers_.size(); ++i) {
        if (workers_[i]->retired) continue;
        const WorkerStatus& s = workers_[i]->status;
        if (workers_[i]->retired) continue;
        const bool serves = model.empty() || s.model == model;
        known = known || serves || s.model.empty();  // a worker never heard from may serve it
        if (!serves || s.state != WorkerState::ready || exclude.contains(s.url) || drained_.contains(s.id)) continue;
        const bool at_capacity = room && s.sequences_max > 0 && s.requests_here >= s.sequences_max + *room;
        full = full || at_capacity;
        if (!at_capacity) eligible.push_back(i);
    }
    Choice c;
    if (eligible.empty()) {
        c.why = full ? NoWorker::all_full : known ? NoWorker::none_ready : NoWorker::unknown_model;
        lock.unlock();
        metrics_.count_routing(policy_name(), c.why == NoWorker::all_full     ? "all_full"
                                              : c.why == NoWorker::none_ready ? "no_ready_worker"
                                                                              : "unknown_model");
        return c;
    }
    size_t pick = eligible[0];
    if (routing_ == Routing::round_robin) {
        pick = eligible[next_++ % eligible.size()];
    } else {
        // The fewest outstanding tokens; among equals, one at random so equal workers share the load.
        int64_t least = INT64_MAX;
        std::vector<size_t> ties;
        for (size_t i : eligible) {
            const int64_t load = workers_[i]->status.outstanding_tokens;
            if (load < least) ties.clear(), least = load;
            if (load == least) ties.push_back(i);
        }
        pick = ties[std::uniform_int_distribution<size_t>(0, ties.size() - 1)(rng_)];
    }
    std::string why = reason;
    if (prefer) {
        std::vector<Candidate> candidates;
        for (size_t i : eligible) {
            const WorkerStatus& s = workers_[i]->status;
            candidates.push_back({s.url, s.model, s.outstanding_tokens});
        }
        const auto own = static_cast<size_t>(std::find(eligible.begin(), eligible.end(), pick) - eligible.begin());
        const Pick p = prefer(candidates, own);
        pick = eligible.at(p.position);
        why = p.reason;
    }
    workers_[pick]->status.outstanding_tokens += tokens;
    ++workers_[pick]->status.requests_here;
    c.lease = std::make_unique<Lease>(*this, pick, tokens);
    lock.unlock();
    metrics_.count_routing(policy_name(), why);
    return c;
}

WorkerPool::Lease::~Lease() {
    {
        std::lock_guard lock(pool_.mu_);
        pool_.workers_[index_]->status.outstanding_tokens -= tokens_;
        --pool_.workers_[index_]->status.requests_here;
    }
    if (pool_.on_released_) pool_.on_released_();
}

// Under the lock: join() may grow the vector meanwhile. The Worker itself never moves.
const WorkerUrl& WorkerPool::Lease::worker() const {
    std::lock_guard lock(pool_.mu_);
    return pool_.workers_[index_]->url;
}

int WorkerPool::Lease::context_size() const {
    std::lock_guard lock(pool_.mu_);
    return pool_.workers_[index_]->status.context_size;
}

void WorkerPool::Lease::produced(int64_t tokens) {
    std::lock_guard lock(pool_.mu_);
    const int64_t n = std::min(tokens, tokens_);
    tokens_ -= n;
    pool_.workers_[index_]->status.outstanding_tokens -= n;
    if (tokens > 0) pool_.workers_[index_]->last_tokens = std::chrono::steady_clock::now();
}

void WorkerPool::mark_unhealthy(const std::string& url) {
    std::lock_guard lock(mu_);
    for (const auto& w : workers_)
        if (!w->retired && w->url.text == url && w->status.state == WorkerState::ready) {
            log()->warn("worker {}: ready -> unhealthy (a connection to it broke)", url);
            w->status.state = WorkerState::unhealthy;
        }
}

std::vector<WorkerStatus> WorkerPool::status() const {
    std::lock_guard lock(mu_);
    std::vector<WorkerStatus> out;
    for (const auto& w : workers_) {
        if (w->retired) continue;
        out.push_back(w->status);
        out.back().drained = drained_.contains(w->status.id);
    }
    return out;
}

bool WorkerPool::any_ready() const {
    std::lock_guard lock(mu_);
    return std::any_of(workers_.begin(), workers_.end(), [this](const auto& w) {
        return !w->retired && w->status.state == WorkerState::ready && !drained_.contains(w->status.id);
    });
}

std::map<std::string, int> WorkerPool::count_by_state() const {
    std::map<std::string, int> out;
    for (WorkerState s : {WorkerState::ready, WorkerState::loading, WorkerState::draining, WorkerState::unhealthy})
        out[state_name(s)] = 0;
    std::lock_guard lock(mu_);
    for (const auto& w : workers_)
        if (!w->retired) ++out[state_name(w->status.state)];
    return out;
}

}  // namespace loom::orchestrator
