// RequestLog: the ring of ended requests and the per-second token counts, under one mutex.
#include "orchestrator/request_log.h"

#include <vector>

namespace loom::orchestrator {

using nlohmann::json;

namespace {

json optional_number(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

double unix_now() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

}  // namespace

int64_t RequestLog::second_now() const {
    return std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - origin_).count();
}

void RequestLog::add(RequestRecord r) {
    std::lock_guard lock(mu_);
    records_.emplace_back(std::move(r), unix_now());
    while (records_.size() > kCapacity) records_.pop_front();
}

void RequestLog::count_tokens(const std::string& worker, int64_t tokens) {
    if (tokens <= 0) return;
    const int64_t now = second_now();
    std::lock_guard lock(mu_);
    tokens_[worker][now] += tokens;
    // Seconds older than the window go; so does a worker with none left.
    for (auto it = tokens_.begin(); it != tokens_.end();) {
        auto& s = it->second;
        s.erase(s.begin(), s.lower_bound(now - kSeconds));
        it = s.empty() ? tokens_.erase(it) : std::next(it);
    }
}

json RequestLog::recent() const {
    std::lock_guard lock(mu_);
    json out = json::array();
    for (auto it = records_.rbegin(); it != records_.rend(); ++it) {
        const RequestRecord& r = it->first;
        out.push_back({{"id", r.id},
                       {"ended_at", it->second},
                       {"model", r.model},
                       {"endpoint", r.endpoint},
                       {"stream", r.stream},
                       {"status", r.status},
                       {"worker", r.worker},
                       {"backend", r.backend},
                       {"prompt_tokens", r.prompt_tokens},
                       {"completion_tokens", r.completion_tokens},
                       {"ttft_s", optional_number(r.ttft_s)},
                       {"tokens_per_s", optional_number(r.tokens_per_s)},
                       {"duration_s", r.duration_s},
                       {"finish_reason", r.finish_reason}});
    }
    return out;
}

double RequestLog::tokens_per_s(const std::string& worker, int seconds) const {
    const int64_t now = second_now();
    std::lock_guard lock(mu_);
    const auto w = tokens_.find(worker);
    if (w == tokens_.end() || seconds <= 0) return 0;
    int64_t sum = 0;
    for (auto it = w->second.lower_bound(now - seconds + 1); it != w->second.end(); ++it) sum += it->second;
    return static_cast<double>(sum) / seconds;
}

json RequestLog::throughput() const {
    const int64_t now = second_now();
    const int64_t first = now - kSeconds;  // [first, now): whole seconds only
    std::vector<int64_t> cluster(kSeconds, 0);
    json workers = json::object();
    std::lock_guard lock(mu_);
    for (const auto& [worker, seconds] : tokens_) {
        std::vector<int64_t> counts(kSeconds, 0);
        for (auto it = seconds.lower_bound(first); it != seconds.end() && it->first < now; ++it) {
            counts[static_cast<size_t>(it->first - first)] = it->second;
            cluster[static_cast<size_t>(it->first - first)] += it->second;
        }
        workers[worker] = counts;
    }
    return {{"interval_s", 1}, {"seconds", kSeconds}, {"workers", workers}, {"cluster", cluster}};
}

}  // namespace loom::orchestrator
