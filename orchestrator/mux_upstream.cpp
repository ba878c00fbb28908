// Upstreams: calls over loom-mux/1 connections (one per io_context and worker, opened on first use,
// closed after 5 s without calls), falling back to call_upstream's HTTP/1.1 for workers that refuse.
#include <atomic>
#include <boost/asio.hpp>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "http/mux_frame.h"
#include "orchestrator/connection_pool.h"
#include "orchestrator/upstreams.h"

namespace loom::orchestrator {

namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using http::MuxType;

constexpr auto kIdleClose = std::chrono::seconds(5);    // before the worker's 30 s idle close
constexpr auto kRefusedFor = std::chrono::seconds(30);  // then the upgrade is tried again
constexpr size_t kMaxFrame = size_t{64} << 20;          // a whole answer may be large; a chunk never is

class MuxConnection;

// One call: where it runs now (a mux connection, or an HTTP call after a refused upgrade).
struct MuxCall : UpstreamCall, std::enable_shared_from_this<MuxCall> {
    MuxCall(net::io_context& ioc, UpstreamRequest r, UpstreamHandlers h)
        : ioc(ioc), request(std::move(r)), handlers(std::move(h)) {}
    void cancel() override;

    net::io_context& ioc;
    UpstreamRequest request;
    UpstreamHandlers handlers;
    std::atomic<bool> cancelled{false};
    std::mutex mu;  // guards the two below, set on the connection's strand, read by cancel()
    std::shared_ptr<MuxConnection> conn;
    std::shared_ptr<UpstreamCall> fallback;
    // On the connection's strand:
    uint32_t id = 0;
    std::optional<net::steady_timer> deadline;
};

}  // namespace

struct Upstreams::Impl : std::enable_shared_from_this<Upstreams::Impl> {
    explicit Impl(Transport t) : transport(t) {}

    void dispatch(const std::shared_ptr<MuxCall>& call);
    void fall_back(const std::shared_ptr<MuxCall>& call);
    void refused(const std::string& worker);
    bool is_refused(const std::string& worker);
    void retire(MuxConnection* c);

    const Transport transport;
    ConnectionPool pool;
    std::mutex mu;
    std::map<std::pair<net::io_context*, std::string>, std::shared_ptr<MuxConnection>> connections;
    std::map<std::string, std::chrono::steady_clock::time_point> refused_until;
    bool stopped = false;
    std::atomic<uint64_t> mux_calls{0}, http_calls{0}, opened{0}, refusals{0};
    std::atomic<int64_t> open_now{0};
};

namespace {

// A connection to one worker carrying many calls; every member runs on its strand.
class MuxConnection : public std::enable_shared_from_this<MuxConnection> {
public:
    MuxConnection(net::io_context& ioc, WorkerUrl worker, std::weak_ptr<Upstreams::Impl> owner)
        : strand_(net::make_strand(ioc)),
          socket_(strand_),
          idle_timer_(strand_),
          connect_timer_(strand_),
          worker_(std::move(worker)),
          owner_(std::move(owner)) {}

    const net::strand<net::io_context::executor_type>& strand() const { return strand_; }
    const WorkerUrl& worker() const { return worker_; }

    void open(const std::shared_ptr<MuxCall>& call) {
        if (call->cancelled) return;
        if (retired_) return redispatch(call);
        const uint32_t id = next_id_++;
        call->id = id;
        calls_[id] = call;
        http::append_frame(
            out_, MuxType::open, id,
            http::encode_open(call->request.method, call->request.target, request_headers(*call), call->request.body));
        opening_.push_back(id);
        if (call->request.total_timeout.count() > 0) start_deadline(call);
        idle_timer_.cancel();
        if (state_ == State::fresh) return connect(call->request.connect_timeout);
        flush();
    }

    void cancel(const std::shared_ptr<MuxCall>& call) {
        const auto it = calls_.find(call->id);
        if (it == calls_.end() || it->second != call) return;
        calls_.erase(it);
        if (state_ == State::ready) {
            http::append_frame(out_, MuxType::cancel, call->id);
            flush();
        }
        became_idle_maybe();
    }

    void close() {
        retire();
        error_code ec;
        socket_.shutdown(tcp::socket::shutdown_both, ec);
        socket_.close(ec);
        idle_timer_.cancel();
        connect_timer_.cancel();
    }

private:
    enum class State { fresh, connecting, ready, closed };

    static http::HttpHeaders request_headers(const MuxCall& call) {
        http::HttpHeaders h = call.request.headers;
        if (call.request.method == "POST") h.emplace_back("content-type", "application/json");
        return h;
    }

    void redispatch(const std::shared_ptr<MuxCall>& call) {
        if (auto owner = owner_.lock()) return owner->dispatch(call);
        end_call(call, UpstreamEnd{false, false, "the orchestrator is stopping"});
    }

    void retire() {
        if (retired_) return;
        retired_ = true;
        if (auto owner = owner_.lock()) owner->retire(this);
    }

    // An IP address is used as it is (asio's resolver runs on a thread of its own; see upstream.cpp).
    void connect(std::chrono::milliseconds timeout) {
        state_ = State::connecting;
        connect_timer_.expires_after(timeout);
        connect_timer_.async_wait([self = shared_from_this()](error_code ec) {
            if (!ec && self->state_ == State::connecting) self->broken("cannot connect: timed out", true);
        });
        error_code ec;
        const auto address = net::ip::make_address(worker_.host, ec);
        if (!ec) return connect_to(std::vector{tcp::endpoint(address, worker_.port)});
        resolver_.emplace(strand_);
        resolver_->async_resolve(worker_.host, std::to_string(worker_.port),
                                 [self = shared_from_this()](error_code ec, tcp::resolver::results_type res) {
                                     if (ec) return self->broken("cannot resolve: " + ec.message());
                                     self->connect_to(res);
                                 });
    }

    template <class Endpoints>
    void connect_to(const Endpoints& endpoints) {
        if (state_ != State::connecting) return;
        net::async_connect(socket_, endpoints, [self = shared_from_this()](error_code ec, const tcp::endpoint&) {
            if (self->state_ != State::connecting) return;
            if (ec) return self->broken("cannot connect: " + ec.message());
            error_code ignored;
            self->socket_.set_option(tcp::no_delay(true), ignored);
            self->upgrade();
        });
    }

    void upgrade() {
        handshake_ = "GET " + std::string(http::kMuxPath) + " HTTP/1.1\r\nHost: " + worker_.host + ":" +
                     std::to_string(worker_.port) +
                     "\r\nConnection: Upgrade\r\nUpgrade: " + std::string(http::kMuxProtocol) + "\r\n\r\n";
        net::async_write(socket_, net::buffer(handshake_), [self = shared_from_this()](error_code ec, size_t) {
            if (ec) return self->broken("cannot send the upgrade: " + ec.message());
            net::async_read_until(self->socket_, net::dynamic_buffer(self->in_, kMaxFrame), "\r\n\r\n",
                                  [self](error_code ec, size_t head) { self->upgraded(ec, head); });
        });
    }

    // "HTTP/1.1 101 ..." makes the connection ours; any other answer means a worker without mux,
    // which its calls then reach over HTTP/1.1.
    void upgraded(error_code ec, size_t head) {
        connect_timer_.cancel();
        if (state_ != State::connecting) return;
        if (ec) return broken("no answer to the upgrade: " + ec.message());
        const bool switched = in_.compare(0, 13, "HTTP/1.1 101 ") == 0;
        if (!switched) return refused();
        in_.erase(0, head);
        state_ = State::ready;
        read();
        deliver_frames();
        flush();
    }

    void refused() {
        state_ = State::closed;
        const auto owner = owner_.lock();
        if (owner) owner->refused(worker_.text);
        close();
        auto calls = std::move(calls_);
        calls_.clear();
        for (auto& [id, call] : calls) {
            if (owner)
                owner->fall_back(call);
            else
                end_call(call, UpstreamEnd{false, false, "the orchestrator is stopping"});
        }
    }

    void read() {
        rbuf_.resize(64 << 10);
        socket_.async_read_some(net::buffer(rbuf_), [self = shared_from_this()](error_code ec, size_t n) {
            if (self->state_ != State::ready) return;
            if (ec) return self->broken("the worker's connection broke off: " + ec.message());
            self->in_.append(self->rbuf_.data(), n);
            self->deliver_frames();
            if (self->state_ == State::ready) self->read();
        });
    }

    void deliver_frames() {
        std::string_view rest(in_);
        try {
            while (state_ == State::ready) {
                const auto f = http::next_frame(rest, kMaxFrame);
                if (!f) break;
                deliver(*f);
            }
        } catch (const http::MuxProtocolError& e) {
            return broken(std::string("the worker broke the mux protocol: ") + e.what());
        }
        in_.erase(0, in_.size() - rest.size());
    }

    void deliver(const http::MuxFrame& f) {
        const auto it = calls_.find(f.id);
        if (f.type == MuxType::open || f.type == MuxType::cancel)
            throw http::MuxProtocolError("a server may not send open or cancel frames");
        if (it == calls_.end()) return;  // cancelled: its frames were already on the way
        const std::shared_ptr<MuxCall> call = it->second;
        const UpstreamHandlers& h = call->handlers;
        if (f.type == MuxType::head) {
            const auto [status, headers] = http::decode_head(f.payload);
            if (!call->cancelled && h.on_head) h.on_head(status, headers);
        } else if (f.type == MuxType::data) {
            if (!call->cancelled && h.on_data) h.on_data(std::string(f.payload));
        } else {
            calls_.erase(it);
            end_call(call, UpstreamEnd{true, false, {}});
            became_idle_maybe();
        }
    }

    void flush() {
        if (writing_ || state_ != State::ready || out_.empty()) return;
        writing_ = true;
        wbuf_.swap(out_);
        out_.clear();
        written_.swap(opening_);
        opening_.clear();
        net::async_write(socket_, net::buffer(wbuf_), [self = shared_from_this()](error_code ec, size_t) {
            self->writing_ = false;
            if (self->state_ != State::ready) return;
            if (ec) return self->broken("cannot send to the worker: " + ec.message());
            for (const uint32_t id : self->written_) {
                const auto it = self->calls_.find(id);
                if (it != self->calls_.end() && !it->second->cancelled && it->second->handlers.on_written)
                    it->second->handlers.on_written();
            }
            self->written_.clear();
            self->flush();
        });
    }

    void start_deadline(const std::shared_ptr<MuxCall>& call) {
        call->deadline.emplace(strand_, call->request.total_timeout);
        std::weak_ptr<MuxCall> weak = call;
        call->deadline->async_wait([self = shared_from_this(), weak](error_code ec) {
            const auto call = weak.lock();
            if (ec || !call) return;
            const auto it = self->calls_.find(call->id);
            if (it == self->calls_.end() || it->second != call) return;
            self->cancel(call);
            end_call(call, UpstreamEnd{false, true, "the worker did not answer in time"});
        });
    }

    // Every call still open ends with the cause; the connection is not used again.
    void broken(const std::string& why, bool timed_out = false) {
        state_ = State::closed;
        close();
        auto calls = std::move(calls_);
        calls_.clear();
        for (auto& [id, call] : calls) end_call(call, UpstreamEnd{false, timed_out, why});
    }

    void became_idle_maybe() {
        if (!calls_.empty() || retired_) return;
        idle_timer_.expires_after(kIdleClose);
        idle_timer_.async_wait([self = shared_from_this()](error_code ec) {
            if (!ec && self->calls_.empty()) self->close();
        });
    }

    static void end_call(const std::shared_ptr<MuxCall>& call, const UpstreamEnd& end) {
        if (call->deadline) call->deadline->cancel();
        if (!call->cancelled && call->handlers.on_end) call->handlers.on_end(end);
    }

    net::strand<net::io_context::executor_type> strand_;
    tcp::socket socket_;
    net::steady_timer idle_timer_;
    net::steady_timer connect_timer_;
    std::optional<tcp::resolver> resolver_;
    const WorkerUrl worker_;
    const std::weak_ptr<Upstreams::Impl> owner_;
    State state_ = State::fresh;
    bool retired_ = false;  // new calls go to a new connection
    bool writing_ = false;
    uint32_t next_id_ = 1;
    std::unordered_map<uint32_t, std::shared_ptr<MuxCall>> calls_;
    std::vector<uint32_t> opening_;  // open frames in out_
    std::vector<uint32_t> written_;  // open frames in the write in progress
    std::string handshake_, in_, rbuf_, out_, wbuf_;
};

void MuxCall::cancel() {
    cancelled = true;
    std::lock_guard lock(mu);
    if (fallback) return fallback->cancel();
    if (!conn) return;
    net::post(conn->strand(), [c = conn, self = shared_from_this()] { c->cancel(self); });
}

}  // namespace

void Upstreams::Impl::dispatch(const std::shared_ptr<MuxCall>& call) {
    if (is_refused(call->request.worker.text)) return fall_back(call);
    std::shared_ptr<MuxConnection> c;
    {
        std::lock_guard lock(mu);
        if (stopped) {
            c.reset();
        } else {
            auto& slot = connections[{&call->ioc, call->request.worker.text}];
            if (!slot) {
                slot = std::make_shared<MuxConnection>(call->ioc, call->request.worker, weak_from_this());
                ++opened;
                ++open_now;
            }
            c = slot;
        }
    }
    if (!c) {  // posted: the caller may hold the lock its own on_end takes
        net::post(call->ioc, [call] {
            if (!call->cancelled && call->handlers.on_end)
                call->handlers.on_end(UpstreamEnd{false, false, "the orchestrator is stopping"});
        });
        return;
    }
    {
        std::lock_guard lock(call->mu);
        call->conn = c;
    }
    net::post(c->strand(), [c, call] { c->open(call); });
}

void Upstreams::Impl::fall_back(const std::shared_ptr<MuxCall>& call) {
    std::lock_guard lock(call->mu);
    if (call->cancelled) return;
    ++http_calls;
    call->fallback = call_upstream(call->ioc, call->request, call->handlers, &pool);
}

void Upstreams::Impl::refused(const std::string& worker) {
    ++refusals;
    std::lock_guard lock(mu);
    refused_until[worker] = std::chrono::steady_clock::now() + kRefusedFor;
}

bool Upstreams::Impl::is_refused(const std::string& worker) {
    std::lock_guard lock(mu);
    const auto it = refused_until.find(worker);
    if (it == refused_until.end()) return false;
    if (std::chrono::steady_clock::now() < it->second) return true;
    refused_until.erase(it);
    return false;
}

void Upstreams::Impl::retire(MuxConnection* c) {
    std::lock_guard lock(mu);
    for (auto it = connections.begin(); it != connections.end(); ++it)
        if (it->second.get() == c) {
            connections.erase(it);
            --open_now;
            return;
        }
}

Upstreams::Upstreams(Transport transport) : impl_(std::make_shared<Impl>(transport)) {}

Upstreams::~Upstreams() { stop(); }

std::shared_ptr<UpstreamCall> Upstreams::call(net::io_context& ioc, UpstreamRequest request,
                                              UpstreamHandlers handlers) {
    if (impl_->transport == Transport::http || impl_->is_refused(request.worker.text)) {
        ++impl_->http_calls;
        return call_upstream(ioc, std::move(request), std::move(handlers), &impl_->pool);
    }
    ++impl_->mux_calls;
    auto call = std::make_shared<MuxCall>(ioc, std::move(request), std::move(handlers));
    impl_->dispatch(call);
    return call;
}

void Upstreams::start(net::io_context& ioc) { impl_->pool.start(ioc); }

void Upstreams::stop() {
    std::map<std::pair<net::io_context*, std::string>, std::shared_ptr<MuxConnection>> live;
    {
        std::lock_guard lock(impl_->mu);
        impl_->stopped = true;
        live.swap(impl_->connections);
    }
    for (auto& entry : live) {
        std::shared_ptr<MuxConnection> c = entry.second;
        net::post(c->strand(), [c] { c->close(); });
    }
    impl_->pool.stop();
}

std::string Upstreams::render_metrics() const {
    const Impl& i = *impl_;
    std::string s =
        "# HELP loom_orchestrator_upstream_calls_total Calls to workers by transport (mux: loom-mux/1; http: "
        "HTTP/1.1).\n# TYPE loom_orchestrator_upstream_calls_total counter\n";
    s += "loom_orchestrator_upstream_calls_total{transport=\"mux\"} " + std::to_string(i.mux_calls.load()) + "\n";
    s += "loom_orchestrator_upstream_calls_total{transport=\"http\"} " + std::to_string(i.http_calls.load()) + "\n";
    s += "# HELP loom_orchestrator_upstream_mux_connections Open loom-mux/1 connections to workers.\n"
         "# TYPE loom_orchestrator_upstream_mux_connections gauge\nloom_orchestrator_upstream_mux_connections " +
         std::to_string(i.open_now.load()) + "\n";
    s += "# HELP loom_orchestrator_upstream_mux_refused_total Workers that answered the upgrade with something "
         "else (then called over HTTP/1.1).\n# TYPE loom_orchestrator_upstream_mux_refused_total counter\n"
         "loom_orchestrator_upstream_mux_refused_total " +
         std::to_string(i.refusals.load()) + "\n";
    return s + i.pool.render_metrics();
}

}  // namespace loom::orchestrator
