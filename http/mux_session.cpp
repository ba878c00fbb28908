// MuxSession: one upgraded connection serving many requests at once. Producers notify from any thread;
// the session polls every notified stream in one pass and sends what they produced in one write, so a
// decode step's chunks for a hundred streams cost one system call instead of a hundred.
#include "http/mux_session.h"

#include <boost/asio.hpp>
#include <spdlog/spdlog.h>
#include <unordered_map>
#include <vector>

#include "http/mux_frame.h"

namespace loom::http {

namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

constexpr size_t kMaxStreams = 1 << 16;  // per connection; more: 503 for the request, not a closed connection
constexpr size_t kHighWater = 1 << 20;   // bytes queued for the client before the session stops polling
constexpr size_t kReadBytes = 64 << 10;

std::shared_ptr<spdlog::logger> log() {
    if (auto l = spdlog::get("http")) return l;
    return spdlog::default_logger();
}

class MuxSession : public ServerConnection {
public:
    MuxSession(tcp::socket socket, std::string leftover, ServerContext& server, std::string peer)
        : socket_(std::move(socket)),
          server_(server),
          peer_(std::move(peer)),
          in_(std::move(leftover)),
          idle_timer_(socket_.get_executor()),
          write_timer_(socket_.get_executor()) {
        server_.add(this);
    }

    ~MuxSession() override {
        for (auto& [id, s] : streams_) s.producer->abandoned();
        server_.remove(this);
    }

    void run(std::string switching) {
        out_ = std::move(switching);
        net::dispatch(socket_.get_executor(), [self = shared()] {
            self->handle_input();
            self->read();
            self->flush();
        });
    }

    void close_if_idle() override {
        net::post(socket_.get_executor(), [self = shared()] {
            if (self->streams_.empty() && !self->writing_) self->close();
        });
    }

private:
    struct Stream {
        std::shared_ptr<ResponseProducer> producer;
        bool streaming = false;
        bool dirty = false;  // listed in dirty_
        std::shared_ptr<std::atomic<bool>> posted = std::make_shared<std::atomic<bool>>(false);
    };

    std::shared_ptr<MuxSession> shared() { return std::static_pointer_cast<MuxSession>(shared_from_this()); }

    size_t max_payload() const { return server_.limits.body_bytes + server_.limits.header_bytes; }

    void read() {
        if (closed_) return;
        rbuf_.resize(kReadBytes);
        socket_.async_read_some(net::buffer(rbuf_), [self = shared()](error_code ec, size_t n) {
            if (self->closed_) return;
            if (ec) return self->lost(ec);
            self->in_.append(self->rbuf_.data(), n);
            self->handle_input();
            self->read();
            self->flush();
        });
    }

    void handle_input() {
        std::string_view rest(in_);
        try {
            while (!closed_) {
                const auto f = next_frame(rest, max_payload());
                if (!f) break;
                handle(*f);
            }
        } catch (const MuxProtocolError& e) {
            log()->warn("{}: mux protocol error, closing: {}", peer_, e.what());
            return close();
        }
        in_.erase(0, in_.size() - rest.size());
        arm_idle();
    }

    void handle(const MuxFrame& f) {
        if (f.type == MuxType::open) return open(f.id, decode_open(f.payload, peer_));
        if (f.type == MuxType::cancel) return cancel(f.id);
        throw MuxProtocolError("a client may send only open and cancel frames");
    }

    void open(uint32_t id, const HttpRequest& req) {
        if (streams_.contains(id)) throw MuxProtocolError("stream " + std::to_string(id) + " is already open");
        if (server_.stopping) return answer(id, error_response(503, "the server is stopping", "server_error"));
        if (streams_.size() >= kMaxStreams)
            return answer(
                id, error_response(
                        503, "too many requests on one mux connection (at most " + std::to_string(kMaxStreams) + ")",
                        "server_error"));
        HttpResponse r;
        try {
            r = dispatch(server_.routes, req);
        } catch (const std::exception& e) {
            log()->error("{} {}: handler failed: {}", req.method, req.path, e.what());
            r = error_response(500, std::string("internal error: ") + e.what(), "server_error");
        }
        if (!r.producer) return answer(id, std::move(r));
        Stream& s = streams_[id];
        s.producer = std::move(r.producer);
        s.streaming = r.stream;
        s.producer->start(notifier(id, s.posted));
        if (s.streaming) append_frame(out_, MuxType::head, id, encode_head(r.status, r.content_type, r.headers));
        mark_dirty(id);
    }

    // The client no longer wants it; its end may already be on the way (then nothing is left to do).
    void cancel(uint32_t id) {
        const auto it = streams_.find(id);
        if (it == streams_.end()) return;
        const auto producer = std::move(it->second.producer);
        streams_.erase(it);
        producer->abandoned();
    }

    void answer(uint32_t id, HttpResponse r) {
        append_frame(out_, MuxType::head, id, encode_head(r.status, r.content_type, r.headers));
        if (!r.body.empty()) append_frame(out_, MuxType::data, id, r.body);
        append_frame(out_, MuxType::end, id);
    }

    // One post per stream until it runs; the pump it schedules serves every stream notified meanwhile.
    std::function<void()> notifier(uint32_t id, std::shared_ptr<std::atomic<bool>> posted) {
        std::weak_ptr<MuxSession> weak = shared();
        auto ex = socket_.get_executor();
        return [weak, ex, id, posted] {
            if (posted->exchange(true)) return;
            net::post(ex, [weak, id, posted] {
                posted->store(false);
                if (auto self = weak.lock()) self->mark_dirty(id);
            });
        };
    }

    void mark_dirty(uint32_t id) {
        const auto it = streams_.find(id);
        if (it == streams_.end() || it->second.dirty) return;
        it->second.dirty = true;
        dirty_.push_back(id);
        if (pump_posted_) return;
        pump_posted_ = true;
        net::post(socket_.get_executor(), [self = shared()] {
            self->pump_posted_ = false;
            self->pump();
        });
    }

    // Polls the notified streams while the queued bytes stay under the high-water mark (the rest wait
    // for the write to drain: a slow reader slows its producers), then writes.
    void pump() {
        if (closed_) return;
        std::vector<uint32_t> ids;
        ids.swap(dirty_);
        size_t i = 0;
        for (; i < ids.size() && out_.size() < kHighWater; ++i) poll(ids[i]);
        dirty_.insert(dirty_.end(), ids.begin() + static_cast<std::ptrdiff_t>(i), ids.end());
        flush();
    }

    void poll(uint32_t id) {
        const auto it = streams_.find(id);
        if (it == streams_.end()) return;
        Stream& s = it->second;
        s.dirty = false;
        ResponseProducer::Progress p = s.producer->poll();
        if (!s.streaming) {
            if (!p.done) return;
            if (p.whole.producer && p.whole.stream) return start_late_stream(id, s, std::move(p.whole));
            streams_.erase(it);
            return answer(id, std::move(p.whole));
        }
        if (!p.data.empty()) append_frame(out_, MuxType::data, id, p.data);
        if (p.done) {
            append_frame(out_, MuxType::end, id);
            streams_.erase(it);
            return;
        }
        if (!p.data.empty()) mark_dirty(id);  // as over HTTP/1.1: polled again after what it gave is sent
    }

    // A whole answer that turned out to be a stream (a proxy learns its upstream's status first).
    void start_late_stream(uint32_t id, Stream& s, HttpResponse r) {
        s.producer = std::move(r.producer);
        s.streaming = true;
        s.producer->start(notifier(id, s.posted));
        append_frame(out_, MuxType::head, id, encode_head(r.status, r.content_type, r.headers));
        mark_dirty(id);
    }

    void flush() {
        if (closed_ || writing_) return;
        if (out_.empty()) {
            if (server_.stopping && streams_.empty()) close();
            return;
        }
        writing_ = true;
        wbuf_.swap(out_);
        out_.clear();
        write_timer_.expires_after(server_.limits.write_timeout);
        write_timer_.async_wait([self = shared()](error_code ec) {
            if (!ec && self->writing_) self->lost(make_error_code(boost::asio::error::timed_out));
        });
        net::async_write(socket_, net::buffer(wbuf_), [self = shared()](error_code ec, size_t) {
            self->writing_ = false;
            self->write_timer_.cancel();
            if (self->closed_) return;
            if (ec) return self->lost(ec);
            self->wbuf_.clear();
            self->arm_idle();
            if (!self->dirty_.empty()) return self->pump();
            self->flush();
        });
    }

    // A connection with nothing in flight is closed after the request timeout, as an idle keep-alive
    // connection is.
    void arm_idle() {
        if (closed_ || !streams_.empty() || writing_) {
            if (idle_armed_) idle_timer_.cancel();
            idle_armed_ = false;
            return;
        }
        idle_armed_ = true;
        idle_timer_.expires_after(server_.limits.request_timeout);
        idle_timer_.async_wait([self = shared()](error_code ec) {
            if (ec || !self->idle_armed_) return;
            if (self->streams_.empty() && !self->writing_) {
                log()->debug("{}: mux connection closed after the request timeout", self->peer_);
                self->close();
            }
        });
    }

    void lost(error_code ec) {
        if (closed_) return;
        if (ec != net::error::eof) log()->info("{}: mux connection lost ({})", peer_, ec.message());
        close();
    }

    void close() {
        if (closed_) return;
        closed_ = true;
        auto streams = std::move(streams_);
        streams_.clear();
        for (auto& [id, s] : streams) s.producer->abandoned();
        idle_timer_.cancel();
        write_timer_.cancel();
        error_code ec;
        socket_.shutdown(tcp::socket::shutdown_both, ec);
        socket_.close(ec);
    }

    tcp::socket socket_;
    ServerContext& server_;
    const std::string peer_;
    std::string in_;    // bytes read, not yet a whole frame
    std::string rbuf_;  // one read
    std::string out_;   // frames waiting for the write in progress
    std::string wbuf_;  // the write in progress
    net::steady_timer idle_timer_;
    net::steady_timer write_timer_;
    std::unordered_map<uint32_t, Stream> streams_;
    std::vector<uint32_t> dirty_;  // notified streams not polled yet
    bool pump_posted_ = false;
    bool writing_ = false;
    bool idle_armed_ = false;
    bool closed_ = false;
};

}  // namespace

void start_mux_session(tcp::socket socket, std::string switching, std::string leftover, ServerContext& server,
                       std::string peer) {
    std::make_shared<MuxSession>(std::move(socket), std::move(leftover), server, std::move(peer))
        ->run(std::move(switching));
}

}  // namespace loom::http
