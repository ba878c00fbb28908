// Rendering the orchestrator's counters in Prometheus' text format.
#include "orchestrator/metrics.h"

#include <sstream>

namespace loom::orchestrator {

void Metrics::count_request(int status) {
    std::lock_guard lock(mu_);
    ++requests_[status];
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
    o << "# HELP loom_orchestrator_requests_total Generation requests answered, by HTTP status.\n"
      << "# TYPE loom_orchestrator_requests_total counter\n";
    for (const auto& [status, n] : requests_)
        o << "loom_orchestrator_requests_total{status=\"" << status << "\"} " << n << "\n";
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
    return o.str();
}

}  // namespace loom::orchestrator
