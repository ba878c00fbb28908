// BENCHMARK TOOL ONLY (orchestrator_overhead): many concurrent SSE streams from one thread, each
// event timed against the "loadgen_sent_ns" stamp sse_loadgen puts in it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace loom::bench {

struct LoadSpec {
    uint16_t port = 0;  // 127.0.0.1:port, the load generator or the orchestrator in front of it
    std::string target = "/v1/completions";
    std::string body;         // the JSON request (stream: true)
    int concurrency = 1;      // streams open at once; each slot starts its next stream when one ends
    double stream_s = 1;      // a stream's expected length: slots start spread over it (the ramp)
    double measure_s = 10;    // after the ramp: streams started in this window are recorded
    bool cut_at_end = false;  // close every stream when the window ends (endless streams)
    bool keep_alive = true;   // a slot's streams share its connection (as HTTP clients pool them)
};

// Microseconds, one entry per recorded stream (ttft) or per token tick (transit, gap).
struct LoadResult {
    std::vector<double> ttft_us;          // request start (before connect) to the first event
    std::vector<double> connect_us;       // request start to the connection's establishment (new ones)
    std::vector<double> head_us;          // request start to the response head
    std::vector<double> transit_us;       // receive time - loadgen_sent_ns, per tick
    std::vector<double> gap_us;           // receive time - the previous tick's receive time
    int64_t window_events = 0;            // events received during the window (throughput)
    int64_t events = 0;                   // events received in the whole run
    int streams_ok = 0;                   // recorded streams that ended with [DONE]
    std::map<std::string, int> failures;  // recorded streams that did not, by reason
    double window_s = 0;
};

// Runs the load until the window's streams have ended; throws std::runtime_error when nothing can connect.
LoadResult run_load(const LoadSpec& spec);

// p in [0, 100], nearest rank; 0 for no samples.
double percentile(std::vector<double> v, double p);

}  // namespace loom::bench
