// The orchestrator's Prometheus metrics: requests by model and status, retries, failovers, routing
// decisions, and the latency the orchestrator adds (histograms).
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "http/prometheus.h"

namespace loom::orchestrator {

class Metrics {
public:
    // `model`: the model a routed request named ("" when it named none or none serves it, so that
    // clients cannot grow the label set).
    void count_request(const std::string& model, int status);
    void count_retry();
    void count_failover(bool succeeded);
    void count_routing(const std::string& policy, const std::string& reason);
    // A spawned worker restarted after it exited; `cause` as "exit_1" or "SIGKILL".
    void count_restart(const std::string& cause);
    // Seconds the orchestrator added: "request" from a request's arrival to its upstream request
    // written, "chunk" from a stream's upstream piece arriving to it being handed to the client's connection.
    void observe_added_latency(const std::string& stage, double seconds);

    // The text exposition format; `workers_by_state` comes from the pool at the moment of the scrape.
    std::string render(const std::map<std::string, int>& workers_by_state) const;

private:
    mutable std::mutex mu_;
    std::map<std::pair<std::string, int>, double> requests_;
    double retries_ = 0;
    double failovers_ = 0;
    double failovers_failed_ = 0;
    std::map<std::pair<std::string, std::string>, double> routing_;
    std::map<std::string, double> restarts_;
    std::map<std::string, http::prometheus::Histogram> added_latency_;  // by stage
};

}  // namespace loom::orchestrator
