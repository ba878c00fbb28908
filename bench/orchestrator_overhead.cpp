// BENCHMARK TOOL ONLY: orchestrator_overhead, the latency loom-orchestrator adds to streams (time
// to first token, per-chunk transit and inter-chunk gaps, direct from sse_loadgen versus through
// the orchestrator, same client, same run) and the chunks per second one orchestrator relays.
#include <CLI/CLI.hpp>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>

#include "bench/child_process.h"
#include "bench/stream_load.h"

namespace {

using namespace loom::bench;
namespace fs = std::filesystem;

struct Config {
    std::string loadgen_bin, orchestrator_bin;
    std::vector<std::string> orchestrator_args;
    std::vector<int> levels{1, 100, 1000};
    std::vector<double> intervals_ms;  // per level; default max(10, N / 20)
    int chunks = 20;
    double seconds = 10;
    int throughput_streams = 64;
    double throughput_seconds = 5;
    std::string target = "/v1/completions";
    bool keep_alive = true;
};

// The soft descriptor limit raised to the hard one (the children inherit it); both printed.
void raise_fd_limit() {
    rlimit lim{};
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    getrlimit(RLIMIT_NOFILE, &lim);
    std::printf(
        "RLIMIT_NOFILE: soft %llu, hard %llu (the orchestrator needs about 1 per stream; 2 with --upstream http)\n",
        static_cast<unsigned long long>(lim.rlim_cur), static_cast<unsigned long long>(lim.rlim_max));
}

// The orchestrator's peak descriptors and memory while a run goes on, sampled every 50 ms.
class Sampler {
public:
    explicit Sampler(pid_t pid) : pid_(pid), cpu0_(cpu_seconds(pid)) {
        thread_ = std::thread([this] {
            while (!stop_) {
                peak_fds_ = std::max(peak_fds_.load(), open_fds(pid_));
                peak_rss_ = std::max(peak_rss_.load(), rss_kib(pid_));
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
        });
    }
    ~Sampler() { finish(); }
    void finish() {
        if (!thread_.joinable()) return;
        stop_ = true;
        thread_.join();
        cpu_ = cpu_seconds(pid_) - cpu0_;
    }
    int peak_fds() const { return peak_fds_; }
    long peak_rss_kib() const { return peak_rss_; }
    double cpu_s() const { return cpu_; }

private:
    pid_t pid_;
    double cpu0_, cpu_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> peak_fds_{0};
    std::atomic<long> peak_rss_{0};
    std::thread thread_;
};

std::string body(int chunks, double interval_ms) {
    return nlohmann::json{{"model", "loadgen"}, {"prompt", "Once upon a time"}, {"max_tokens", chunks},
                          {"stream", true},     {"return_token_ids", true},     {"loadgen_interval_ms", interval_ms}}
        .dump();
}

int failed(const LoadResult& r) {
    int n = 0;
    for (const auto& [why, count] : r.failures) n += count;
    return n;
}

std::string failures(const LoadResult& r) {
    std::string s;
    for (const auto& [why, n] : r.failures) s += " [" + std::to_string(n) + "x " + why + "]";
    return s;
}

void print_row(const char* path, const LoadResult& r) {
    const auto ms = [](const std::vector<double>& v, double p) { return percentile(v, p) / 1e3; };
    std::printf(
        "  %-7s %6d ok %4d fail | TTFT %7.3f %7.3f | transit %7.3f %7.3f | gap %7.3f %7.3f ms |"
        " %zu streams, %zu ticks%s\n",
        path, r.streams_ok, failed(r), ms(r.ttft_us, 50), ms(r.ttft_us, 99), ms(r.transit_us, 50), ms(r.transit_us, 99),
        ms(r.gap_us, 50), ms(r.gap_us, 99), r.ttft_us.size(), r.transit_us.size(), failures(r).c_str());
    std::printf("  %-7s %24s connect %7.3f %7.3f | head    %7.3f %7.3f ms\n", "", "", ms(r.connect_us, 50),
                ms(r.connect_us, 99), ms(r.head_us, 50), ms(r.head_us, 99));
}

void print_added(const LoadResult& d, const LoadResult& v) {
    const auto added = [&](const std::vector<double>& a, const std::vector<double>& b, double p) {
        return (percentile(b, p) - percentile(a, p)) / 1e3;
    };
    std::printf("  %-7s                  | TTFT %+7.3f %+7.3f | transit %+7.3f %+7.3f | gap %+7.3f %+7.3f ms\n",
                "added", added(d.ttft_us, v.ttft_us, 50), added(d.ttft_us, v.ttft_us, 99),
                added(d.transit_us, v.transit_us, 50), added(d.transit_us, v.transit_us, 99),
                added(d.gap_us, v.gap_us, 50), added(d.gap_us, v.gap_us, 99));
}

// One concurrency level: the same load straight to the generator, then through the orchestrator.
void latency_level(const Config& c, int n, double interval_ms, uint16_t loadgen, uint16_t orch, pid_t orch_pid) {
    LoadSpec spec;
    spec.target = c.target;
    spec.body = body(c.chunks, interval_ms);
    spec.concurrency = n;
    spec.keep_alive = c.keep_alive;
    spec.stream_s = c.chunks * interval_ms / 1e3;
    spec.measure_s = c.seconds;
    std::printf("%d concurrent streams, %d chunks every %.1f ms (%.0f chunks/s), %.0f s window; p50 p99:\n", n,
                c.chunks, interval_ms, n * 1e3 / interval_ms, c.seconds);
    std::fflush(stdout);
    spec.port = loadgen;
    const LoadResult direct = run_load(spec);
    print_row("direct", direct);
    std::fflush(stdout);
    spec.port = orch;
    Sampler sampler(orch_pid);
    const LoadResult via = run_load(spec);
    sampler.finish();
    print_row("via", via);
    print_added(direct, via);
    const auto relayed = static_cast<double>(via.events);
    std::printf("  orchestrator: peak %d fds, peak RSS %.1f MiB, %.2f CPU s (about %.1f us per relayed event)\n",
                sampler.peak_fds(), sampler.peak_rss_kib() / 1024.0, sampler.cpu_s(),
                relayed > 0 ? sampler.cpu_s() * 1e6 / relayed : 0.0);
    std::fflush(stdout);
}

// Endless streams read as fast as possible: events per second direct and relayed.
void throughput(const Config& c, uint16_t loadgen, uint16_t orch, pid_t orch_pid) {
    LoadSpec spec;
    spec.target = c.target;
    spec.body = body(10'000'000, 0);
    spec.concurrency = c.throughput_streams;
    spec.stream_s = 0.5;
    spec.measure_s = c.throughput_seconds;
    spec.cut_at_end = true;
    std::printf("throughput: %d endless streams, chunks as fast as they are read, %.0f s window\n",
                c.throughput_streams, c.throughput_seconds);
    spec.port = loadgen;
    const LoadResult direct = run_load(spec);
    std::printf("  direct  %10.0f chunks/s\n", static_cast<double>(direct.window_events) / direct.window_s);
    spec.port = orch;
    Sampler sampler(orch_pid);
    const LoadResult via = run_load(spec);
    sampler.finish();
    std::printf("  via     %10.0f chunks/s (orchestrator %.2f CPU s over the run: %.1f us per chunk)\n",
                static_cast<double>(via.window_events) / via.window_s, sampler.cpu_s(),
                via.events > 0 ? sampler.cpu_s() * 1e6 / static_cast<double>(via.events) : 0.0);
}

int run(const Config& c) {
    raise_fd_limit();
    const fs::path logs = fs::temp_directory_path() / ("orchestrator_overhead-" + std::to_string(getpid()));
    fs::create_directories(logs);
    ChildProcess loadgen({c.loadgen_bin, "--port", "0"}, logs / "sse_loadgen.log");
    std::vector<std::string> args = {c.orchestrator_bin,
                                     "--port",
                                     "0",
                                     "--worker",
                                     "http://127.0.0.1:" + std::to_string(loadgen.port()),
                                     "--log",
                                     "info"};
    args.insert(args.end(), c.orchestrator_args.begin(), c.orchestrator_args.end());
    ChildProcess orch(args, logs / "loom-orchestrator.log");
    for (int i = 0; i < 250 && http_get_status(orch.port(), "/health") != 200; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::printf("sse_loadgen on %u, loom-orchestrator on %u (pid %d); logs in %s\n", loadgen.port(), orch.port(),
                orch.pid(), logs.c_str());
    for (size_t i = 0; i < c.levels.size(); ++i) {
        const int n = c.levels[i];
        const double interval = i < c.intervals_ms.size() ? c.intervals_ms[i] : std::max(10.0, n / 20.0);
        latency_level(c, n, interval, loadgen.port(), orch.port(), orch.pid());
    }
    if (c.throughput_streams > 0) throughput(c, loadgen.port(), orch.port(), orch.pid());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "orchestrator_overhead: BENCHMARK TOOL ONLY. Starts sse_loadgen and loom-orchestrator in front of "
        "it, runs the same closed-loop SSE load straight to the generator and through the orchestrator "
        "at each concurrency level, and prints TTFT, per-chunk transit (receive time minus the "
        "generator's CLOCK_MONOTONIC stamp) and inter-chunk gaps, p50/p99, direct, via and added; then "
        "the chunks per second relayed with endless streams. Method: docs/PERFORMANCE.md."};
    Config c;
    const fs::path here = fs::canonical("/proc/self/exe").parent_path();
    c.loadgen_bin = (here / "sse_loadgen").string();
    c.orchestrator_bin = (here / ".." / "orchestrator" / "loom-orchestrator").lexically_normal().string();
    app.add_option("--loadgen", c.loadgen_bin, "sse_loadgen binary (default: next to this one)");
    app.add_option("--orchestrator", c.orchestrator_bin, "loom-orchestrator binary (default: ../orchestrator/)");
    app.add_option("--orchestrator-arg", c.orchestrator_args, "An extra loom-orchestrator flag (repeatable)");
    app.add_option("--levels", c.levels, "Concurrent streams per level (default 1 100 1000)")->delimiter(',');
    app.add_option("--interval-ms", c.intervals_ms, "Chunk interval per level (default max(10, N/20))")->delimiter(',');
    app.add_option("--chunks", c.chunks, "Token chunks per stream (default 20)")->check(CLI::Range(2, 100000));
    app.add_option("--seconds", c.seconds, "Measurement window per level and path (default 10)")
        ->check(CLI::Range(0.5, 3600.0));
    app.add_option("--throughput-streams", c.throughput_streams, "Streams of the throughput run (default 64; 0: none)")
        ->check(CLI::Range(0, 100000));
    app.add_option("--throughput-seconds", c.throughput_seconds, "Its window (default 5)")
        ->check(CLI::Range(0.5, 3600.0));
    app.add_option("--target", c.target, "/v1/completions (default) or /v1/chat/completions")
        ->check(CLI::IsMember({"/v1/completions", "/v1/chat/completions"}));
    bool close = false;
    app.add_flag("--close", close, "A new client connection per stream (default: each slot keeps its connection)");
    try {
        app.parse(argc, argv);
        c.keep_alive = !close;
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }
    try {
        return run(c);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "orchestrator_overhead: %s\n", e.what());
        return 1;
    }
}
