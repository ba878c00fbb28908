// BENCHMARK TOOL ONLY (sse_loadgen): one fake generation streamed in loom-worker's SSE chunk format
// at a set interval; no test and no user path may use it.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "bench/monotonic_clock.h"
#include "http/http_server.h"

namespace loom::bench {

// What one request asks the load generator for.
struct StreamPlan {
    std::string id;          // "cmpl-…" / "chatcmpl-…"
    std::string model_json;  // the model name as a JSON string (quoted, escaped)
    bool chat = false;
    int64_t chunks = 16;      // token chunks, one token each
    double interval_ms = 10;  // between token chunks; 0: as fast as the client reads
    bool token_ids = false;   // return_token_ids
    bool usage = false;       // stream_options.include_usage
    std::vector<int> prompt_ids;
    int64_t created = 0;
};

// The stream as a producer for loom's HttpServer. With an interval, a timer on `timers` makes each
// token chunk when it is due (and notifies the server); without one, every poll makes the next chunk.
class LoadgenStream : public http::ResponseProducer, public std::enable_shared_from_this<LoadgenStream> {
public:
    LoadgenStream(boost::asio::io_context& timers, StreamPlan plan, std::function<void(int)> running_delta);
    ~LoadgenStream() override;

    void start(std::function<void()> notify) override;
    Progress poll() override;
    void abandoned() override;

private:
    void tick();      // the next chunk(s) into out_ (mu_ held)
    void schedule();  // the timer for the next tick
    std::string chunk(const std::string& choice, int64_t stamp, bool with_prompt);
    std::string token_choice(int64_t k) const;
    std::string finish_choice() const;

    boost::asio::steady_timer timer_;
    StreamPlan plan_;
    std::function<void(int)> running_delta_;
    std::mutex mu_;
    std::function<void()> notify_;
    std::string out_;
    int64_t sent_ = 0;  // token chunks made
    bool started_ = false, done_ = false, ended_ = false;
    bool prompt_sent_ = false;
    std::chrono::steady_clock::time_point next_due_{};
};

}  // namespace loom::bench
