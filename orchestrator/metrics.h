// The orchestrator's Prometheus counters: requests by status, retries, failovers, routing decisions.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace loom::orchestrator {

class Metrics {
public:
    void count_request(int status);
    void count_retry();
    void count_failover(bool succeeded);
    void count_routing(const std::string& policy, const std::string& reason);
    // A spawned worker restarted after it exited; `cause` as "exit_1" or "SIGKILL".
    void count_restart(const std::string& cause);

    // The text exposition format; `workers_by_state` comes from the pool at the moment of the scrape.
    std::string render(const std::map<std::string, int>& workers_by_state) const;

private:
    mutable std::mutex mu_;
    std::map<int, double> requests_;
    double retries_ = 0;
    double failovers_ = 0;
    double failovers_failed_ = 0;
    std::map<std::pair<std::string, std::string>, double> routing_;
    std::map<std::string, double> restarts_;
};

}  // namespace loom::orchestrator
