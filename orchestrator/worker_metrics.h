// The workers' load gauges (vllm:num_requests_running, vllm:num_requests_waiting,
// vllm:kv_cache_usage_perc), read from each worker's /metrics every second and relayed in the
// orchestrator's /metrics with a `worker` label.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "orchestrator/connection_pool.h"
#include "orchestrator/worker_pool.h"

namespace loom::orchestrator {

class WorkerMetrics {
public:
    static constexpr std::chrono::milliseconds kInterval{1000};
    static constexpr std::chrono::milliseconds kTimeout{500};
    static constexpr size_t kMaxBytes = 1 << 20;  // a larger /metrics answer is dropped

    // `interval`: between the rounds of scrapes (tests make it shorter).
    WorkerMetrics(boost::asio::io_context& ioc, WorkerPool& pool, std::chrono::milliseconds interval = kInterval);
    ~WorkerMetrics();

    void start();
    void stop();

    // The relayed gauges in the text format: name{worker="URL",<the worker's labels>} value. A worker
    // whose last scrape failed has none (no stale values).
    std::string render() const;

    struct Sample {
        std::string name;
        std::vector<std::pair<std::string, std::string>> labels;  // unescaped values
        double value = 0;
    };
    // The samples of the relayed gauges in a /metrics text; malformed lines are skipped.
    static std::vector<Sample> parse(const std::string& text);

private:
    void scrape_all();
    void scrape(const WorkerUrl& url);

    boost::asio::io_context& ioc_;
    WorkerPool& pool_;
    const std::chrono::milliseconds interval_;
    // One kept-alive connection per worker for its scrapes (one in flight at a time), as for the
    // health polls: a scrape a second would otherwise each cost a connect, an accept and a socket in
    // TIME_WAIT. A kept one the worker closed is replaced within the same scrape (call_upstream).
    ConnectionPool connections_{1};
    mutable std::mutex mu_;
    boost::asio::steady_timer timer_;
    bool stopped_ = false;
    std::set<std::string> in_flight_;                     // workers whose scrape has not ended
    std::map<std::string, std::vector<Sample>> samples_;  // by worker URL
};

}  // namespace loom::orchestrator
