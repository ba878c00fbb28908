// BENCHMARK TOOL ONLY (orchestrator_overhead): the closed-loop stream client. Every slot runs one
// stream after another on a fresh connection; slots start spread over one stream's length so the
// requests arrive evenly, and only streams started after that ramp are recorded.
#include "bench/stream_load.h"

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <memory>
#include <optional>
#include <string_view>

#include "bench/monotonic_clock.h"

namespace loom::bench {

namespace {

namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

class Stream;

struct Run {
    const LoadSpec& spec;
    net::io_context ioc;
    tcp::endpoint endpoint;
    std::string request;  // the raw HTTP request, the same for every stream
    int64_t ramp_end = 0, window_end = 0;
    LoadResult result;
    std::vector<std::shared_ptr<Stream>> slots;
    std::vector<std::unique_ptr<tcp::socket>> sockets;  // each slot's connection, kept between its streams
    std::vector<std::unique_ptr<net::steady_timer>> timers;
    std::optional<net::steady_timer> deadline;

    explicit Run(const LoadSpec& s) : spec(s), endpoint(net::ip::make_address("127.0.0.1"), s.port) {
        request = "POST " + s.target +
                  " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  "Content-Length: " +
                  std::to_string(s.body.size()) + "\r\nConnection: " + (s.keep_alive ? "keep-alive" : "close") +
                  "\r\n\r\n" + s.body;
    }
    void start_stream(size_t slot);
    void stream_ended(size_t slot, bool failed);
};

class Stream : public std::enable_shared_from_this<Stream> {
public:
    Stream(Run& run, size_t slot) : run_(run), slot_(slot), socket_(*run.sockets[slot]) {
        parser_.body_limit(std::numeric_limits<std::uint64_t>::max());
    }

    void start() {
        started_ = monotonic_ns();
        recorded_ = started_ >= run_.ramp_end && started_ < run_.window_end;
        if (socket_.is_open()) return send();
        socket_.async_connect(run_.endpoint, [self = shared_from_this()](beast::error_code ec) {
            if (ec) return self->end("connect: " + ec.message());
            if (self->recorded_) self->run_.result.connect_us.push_back((monotonic_ns() - self->started_) / 1e3);
            beast::error_code ignored;
            self->socket_.set_option(tcp::no_delay(true), ignored);
            self->send();
        });
    }

    // The window is over: endless streams end here (not a failure); at the deadline, a stream still
    // running is one.
    void cut(bool failure) {
        cut_ = !failure;
        beast::error_code ec;
        socket_.close(ec);
    }

private:
    void send() {
        net::async_write(socket_, net::buffer(run_.request), [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec) return self->end("write: " + ec.message());
            bhttp::async_read_header(self->socket_, self->buf_, self->parser_, [self](beast::error_code ec, size_t) {
                if (ec) return self->end("head: " + ec.message());
                self->status_ = self->parser_.get().result_int();
                if (self->recorded_) self->run_.result.head_us.push_back((monotonic_ns() - self->started_) / 1e3);
                self->read();
            });
        });
    }

    void read() {
        take_events();
        if (parser_.is_done())
            return end(done_ ? "" : status_ != 200 ? "status " + std::to_string(status_) : "no [DONE]");
        bhttp::async_read_some(socket_, buf_, parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec) {
                self->take_events();
                return self->end("broken: " + ec.message());
            }
            self->read();
        });
    }

    void take_events() {
        std::string& body = parser_.get().body();
        if (body.empty()) return;
        pending_ += body;
        body.clear();
        const int64_t now = monotonic_ns();
        size_t at = 0, end;
        while ((end = pending_.find("\n\n", at)) != std::string::npos) {
            event(std::string_view(pending_).substr(at, end - at), now);
            at = end + 2;
        }
        pending_.erase(0, at);
    }

    void event(std::string_view ev, int64_t now) {
        if (ev.starts_with("data: ")) ev.remove_prefix(6);
        const bool in_window = now >= run_.ramp_end && now < run_.window_end;
        if (in_window) ++run_.result.window_events;
        ++run_.result.events;
        if (ev == "[DONE]") {
            done_ = true;
            return;
        }
        if (ev.starts_with("{\"error\"")) error_ = true;
        if (status_ != 200) return;
        if (!first_seen_ && recorded_) run_.result.ttft_us.push_back((now - started_) / 1e3);
        first_seen_ = true;
        static constexpr std::string_view kStamp = "\"loadgen_sent_ns\":";
        const size_t at = ev.find(kStamp);
        if (at == std::string_view::npos) return;
        int64_t sent = 0;
        std::from_chars(ev.data() + at + kStamp.size(), ev.data() + ev.size(), sent);
        if (sent == last_sent_) return;  // one tick's chunks (the last token, finish, usage) count once
        if (recorded_) {
            run_.result.transit_us.push_back((now - sent) / 1e3);
            if (last_sent_ != 0) run_.result.gap_us.push_back((now - last_recv_) / 1e3);
        }
        last_sent_ = sent;
        last_recv_ = now;
    }

    void end(std::string why) {
        beast::error_code ec;
        if (error_ && why.empty()) why = "error event";
        if (!why.empty() || !run_.spec.keep_alive || !parser_.keep_alive()) socket_.close(ec);
        if (recorded_ && !cut_) {
            if (why.empty())
                ++run_.result.streams_ok;
            else
                ++run_.result.failures[why];
        }
        run_.stream_ended(slot_, !why.empty() && !cut_);
    }

    Run& run_;
    size_t slot_;
    tcp::socket& socket_;
    beast::flat_buffer buf_;
    bhttp::response_parser<bhttp::string_body> parser_;
    std::string pending_;
    int64_t started_ = 0, last_sent_ = 0, last_recv_ = 0;
    int status_ = 0;
    bool recorded_ = false, first_seen_ = false, done_ = false, error_ = false, cut_ = false;
};

void Run::start_stream(size_t slot) {
    slots[slot] = std::make_shared<Stream>(*this, slot);
    slots[slot]->start();
}

// The slot's next stream, until the window ends; after a failure a short pause (a refused connect
// must not spin).
void Run::stream_ended(size_t slot, bool failed) {
    slots[slot].reset();
    if (monotonic_ns() >= window_end) {
        if (std::none_of(slots.begin(), slots.end(), [](const auto& s) { return s != nullptr; })) deadline->cancel();
        return;
    }
    if (!failed) return start_stream(slot);
    timers[slot]->expires_after(std::chrono::milliseconds(10));
    timers[slot]->async_wait([this, slot](beast::error_code ec) {
        if (!ec) start_stream(slot);
    });
}

}  // namespace

LoadResult run_load(const LoadSpec& spec) {
    Run run(spec);
    const auto n = static_cast<size_t>(std::max(spec.concurrency, 1));
    const int64_t t0 = monotonic_ns();
    const auto ramp_ns = static_cast<int64_t>(spec.stream_s * 1e9);
    run.ramp_end = t0 + ramp_ns;
    run.window_end = run.ramp_end + static_cast<int64_t>(spec.measure_s * 1e9);
    run.slots.resize(n);
    for (size_t i = 0; i < n; ++i) run.sockets.push_back(std::make_unique<tcp::socket>(run.ioc));
    for (size_t i = 0; i < n; ++i) {
        run.timers.push_back(std::make_unique<net::steady_timer>(run.ioc));
        run.timers[i]->expires_after(
            std::chrono::nanoseconds(ramp_ns * static_cast<int64_t>(i) / static_cast<int64_t>(n)));
        run.timers[i]->async_wait([&run, i](beast::error_code ec) {
            if (!ec) run.start_stream(i);
        });
    }
    net::steady_timer window(run.ioc);
    if (spec.cut_at_end) {
        window.expires_after(std::chrono::nanoseconds(run.window_end - t0));
        window.async_wait([&run](beast::error_code ec) {
            if (ec) return;
            for (auto& s : run.slots)
                if (s) s->cut(false);
        });
    }
    // Streams that hang past their length (and a minute more) fail rather than hang the benchmark.
    run.deadline.emplace(run.ioc);
    run.deadline->expires_after(std::chrono::nanoseconds(run.window_end - t0 + 3 * ramp_ns) + std::chrono::seconds(60));
    run.deadline->async_wait([&run](beast::error_code ec) {
        if (ec) return;
        for (auto& s : run.slots)
            if (s) s->cut(true);
    });
    run.ioc.run();
    run.result.window_s = spec.measure_s;
    return std::move(run.result);
}

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
    return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

}  // namespace loom::bench
