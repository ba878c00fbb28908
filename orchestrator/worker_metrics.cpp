// Scraping the workers' /metrics and relaying their load gauges.
#include "orchestrator/worker_metrics.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <memory>

#include "http/prometheus.h"
#include "orchestrator/upstream.h"

namespace loom::orchestrator {

namespace {

namespace prometheus = http::prometheus;

const std::vector<std::string> kRelayed = {"vllm:num_requests_running", "vllm:num_requests_waiting",
                                           "vllm:kv_cache_usage_perc"};

// `{k="v",...}` at text[at] (at points at '{'); the end past '}', or npos when malformed.
size_t parse_labels(const std::string& text, size_t at, std::vector<std::pair<std::string, std::string>>& out) {
    ++at;
    while (at < text.size() && text[at] != '}') {
        const size_t eq = text.find("=\"", at);
        if (eq == std::string::npos) return std::string::npos;
        std::string key = text.substr(at, eq - at), value;
        if (key.empty() ||
            !std::all_of(key.begin(), key.end(), [](unsigned char c) { return std::isalnum(c) || c == '_'; }))
            return std::string::npos;
        size_t i = eq + 2;
        for (; i < text.size() && text[i] != '"'; ++i) {
            if (text[i] != '\\') {
                value += text[i];
                continue;
            }
            if (++i == text.size()) return std::string::npos;
            value += text[i] == 'n' ? '\n' : text[i];
        }
        if (i == text.size()) return std::string::npos;
        out.emplace_back(std::move(key), std::move(value));
        at = i + 1;
        if (at < text.size() && text[at] == ',') ++at;
    }
    return at < text.size() ? at + 1 : std::string::npos;
}

}  // namespace

std::vector<WorkerMetrics::Sample> WorkerMetrics::parse(const std::string& text) {
    std::vector<Sample> out;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        const std::string line = text.substr(start, end - start);
        start = end + 1;
        const size_t name_end = line.find_first_of("{ ");
        if (name_end == std::string::npos) continue;
        Sample s;
        s.name = line.substr(0, name_end);
        if (std::find(kRelayed.begin(), kRelayed.end(), s.name) == kRelayed.end()) continue;
        size_t at = name_end;
        if (line[at] == '{' && (at = parse_labels(line, at, s.labels)) == std::string::npos) continue;
        if (at >= line.size() || line[at] != ' ') continue;
        const char* begin = line.c_str() + at + 1;
        char* stop = nullptr;
        s.value = std::strtod(begin, &stop);
        if (stop == begin || (*stop != '\0' && *stop != ' ')) continue;
        out.push_back(std::move(s));
    }
    return out;
}

WorkerMetrics::WorkerMetrics(boost::asio::io_context& ioc, WorkerPool& pool, std::chrono::milliseconds interval)
    : ioc_(ioc), pool_(pool), interval_(interval), timer_(ioc) {}

WorkerMetrics::~WorkerMetrics() { stop(); }

void WorkerMetrics::start() {
    connections_.start(ioc_);  // closes a retired worker's connection
    scrape_all();
}

void WorkerMetrics::stop() {
    std::lock_guard lock(mu_);
    stopped_ = true;
    timer_.cancel();
    connections_.stop();
}

void WorkerMetrics::scrape_all() {
    const std::vector<WorkerStatus> workers = pool_.status();
    std::lock_guard lock(mu_);
    if (stopped_) return;
    std::set<std::string> present;
    for (const WorkerStatus& w : workers) {
        present.insert(w.url);
        if (!in_flight_.contains(w.url)) scrape(parse_worker_url(w.url));
    }
    std::erase_if(samples_, [&](const auto& kv) { return !present.contains(kv.first); });  // retired ones
    timer_.expires_after(interval_);
    timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) scrape_all();
    });
}

// One GET /metrics (mu_ held), on the worker's kept connection: a kept one that broke before the
// answer goes again on a new one, so only a worker that cannot be reached anew loses its samples.
void WorkerMetrics::scrape(const WorkerUrl& url) {
    in_flight_.insert(url.text);
    auto status = std::make_shared<int>(0);
    auto body = std::make_shared<std::string>();
    UpstreamHandlers h;
    h.on_head = [status](int s, const http::HttpHeaders&) { *status = s; };
    h.on_data = [body](std::string d) {
        if (body->size() <= kMaxBytes) *body += d;
    };
    h.on_end = [this, url = url.text, status, body](const UpstreamEnd& end) {
        std::vector<Sample> got;
        const bool ok = end.complete && *status == 200 && body->size() <= kMaxBytes;
        if (ok) got = parse(*body);
        std::lock_guard lock(mu_);
        in_flight_.erase(url);
        if (ok)
            samples_[url] = std::move(got);
        else
            samples_.erase(url);
    };
    call_upstream(ioc_, UpstreamRequest{url, "GET", "/metrics", {}, {}, kTimeout, kTimeout}, std::move(h),
                  &connections_);
}

std::string WorkerMetrics::render() const {
    std::lock_guard lock(mu_);
    std::string out;
    for (const std::string& name : kRelayed) {
        prometheus::header(out, name, "gauge", "Relayed from each worker's /metrics (label worker: its URL).");
        for (const auto& [worker, samples] : samples_)
            for (const Sample& s : samples) {
                if (s.name != name) continue;
                std::string labels = "worker=\"" + prometheus::escape(worker) + "\"";
                for (const auto& [k, v] : s.labels)
                    if (k != "worker") labels += "," + k + "=\"" + prometheus::escape(v) + "\"";
                prometheus::sample(out, name, labels, s.value);
            }
    }
    return out;
}

}  // namespace loom::orchestrator
