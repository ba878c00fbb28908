// Rendering the orchestrator's counters in Prometheus' text format.
#include "orchestrator/metrics.h"

#include <sstream>
#include <vector>

namespace loom::orchestrator {

namespace {

// From 50 microseconds (a relayed chunk on an idle host) to seconds (a request retried elsewhere).
const std::vector<double> kAddedLatencyBuckets = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                  0.025,   0.05,   0.1,     0.25,   0.5,   1.0,    2.5};

}  // namespace

void Metrics::count_request(const std::string& model, int status) {
    std::lock_guard lock(mu_);
    ++requests_[{model, status}];
}

void Metrics::observe_added_latency(const std::string& stage, double seconds) {
    std::lock_guard lock(mu_);
    auto it = added_latency_.find(stage);
    if (it == added_latency_.end()) it = added_latency_.emplace(stage, kAddedLatencyBuckets).first;
    it->second.observe(seconds);
}

void Metrics::count_retry() {
    std::lock_guard lock(mu_);
    ++retries_;
}

void Metrics::count_failover(bool succeeded) {
    std::lock_guard lock(mu_);
    ++failovers_;
    if (!succeeded) ++failovers_failed_;
}

void Metrics::count_routing(const std::string& policy, const std::string& reason) {
    std::lock_guard lock(mu_);
    ++routing_[{policy, reason}];
}

void Metrics::count_restart(const std::string& cause) {
    std::lock_guard lock(mu_);
    ++restarts_[cause];
}

std::string Metrics::render(const std::map<std::string, int>& workers_by_state) const {
    std::lock_guard lock(mu_);
    std::ostringstream o;
    o << "# HELP loom_orchestrator_requests_total Generation requests answered, by model and HTTP status.\n"
      << "# TYPE loom_orchestrator_requests_total counter\n";
    for (const auto& [key, n] : requests_)
        o << "loom_orchestrator_requests_total{model=\"" << http::prometheus::escape(key.first) << "\",status=\""
          << key.second << "\"} " << n << "\n";
    o << "# HELP loom_orchestrator_retries_total Requests sent again to another worker before their first byte.\n"
      << "# TYPE loom_orchestrator_retries_total counter\n"
      << "loom_orchestrator_retries_total " << retries_ << "\n"
      << "# HELP loom_orchestrator_failovers_total Streams that broke mid-way and were continued elsewhere.\n"
      << "# TYPE loom_orchestrator_failovers_total counter\n"
      << "loom_orchestrator_failovers_total " << failovers_ << "\n"
      << "# HELP loom_orchestrator_failovers_failed_total Failovers that found no worker to continue on.\n"
      << "# TYPE loom_orchestrator_failovers_failed_total counter\n"
      << "loom_orchestrator_failovers_failed_total " << failovers_failed_ << "\n"
      << "# HELP loom_orchestrator_routing_decisions_total Worker choices, by policy and reason.\n"
      << "# TYPE loom_orchestrator_routing_decisions_total counter\n";
    for (const auto& [key, n] : routing_)
        o << "loom_orchestrator_routing_decisions_total{policy=\"" << key.first << "\",reason=\"" << key.second
          << "\"} " << n << "\n";
    o << "# HELP loom_orchestrator_worker_restarts_total Spawned workers restarted after they exited, by cause.\n"
      << "# TYPE loom_orchestrator_worker_restarts_total counter\n";
    for (const auto& [cause, n] : restarts_)
        o << "loom_orchestrator_worker_restarts_total{cause=\"" << cause << "\"} " << n << "\n";
    o << "# HELP loom_orchestrator_workers Workers by their last health state.\n"
      << "# TYPE loom_orchestrator_workers gauge\n";
    for (const auto& [state, n] : workers_by_state)
        o << "loom_orchestrator_workers{state=\"" << state << "\"} " << n << "\n";
    std::string latency;
    http::prometheus::header(latency, "loom_orchestrator_added_latency_seconds", "histogram",
                             "Latency the orchestrator adds: stage=request from arrival to the upstream request "
                             "written, stage=chunk from an upstream chunk's arrival to the client's connection.");
    for (const auto& [stage, h] : added_latency_)
        h.render(latency, "loom_orchestrator_added_latency_seconds", "stage=\"" + stage + "\"");
    return o.str() + latency;
}

}  // namespace loom::orchestrator
