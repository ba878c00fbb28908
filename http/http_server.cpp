// HttpServer: one io_context per thread, one Beast session per connection on its own strand; produced
// responses are pulled one write at a time, and a read kept pending while a response is produced
// notices the client leaving.
#include "http/http_server.h"

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <spdlog/spdlog.h>
#include <stdexcept>
#include <sys/resource.h>
#include <thread>
#include <unordered_set>

#include "http/http_message.h"
#include "http/mux_frame.h"
#include "http/mux_session.h"
#include "http/server_connection.h"

namespace loom::http {

namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

std::shared_ptr<spdlog::logger> log() {
    if (auto l = spdlog::get("http")) return l;
    return spdlog::default_logger();
}

// Each connection holds a descriptor: a soft limit below the hard one (often 1024) caps the
// clients for no reason, so raise it and say what it is.
void raise_fd_limit() {
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
    if (lim.rlim_cur < lim.rlim_max) {
        rlimit raised = lim;
        raised.rlim_cur = lim.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
    }
    const auto text = [](rlim_t v) { return v == RLIM_INFINITY ? std::string("unlimited") : std::to_string(v); };
    log()->info("file descriptors: soft limit {} (hard {})", text(lim.rlim_cur), text(lim.rlim_max));
}

}  // namespace

HttpResponse json_response(int status, const nlohmann::json& body) {
    HttpResponse r;
    r.status = status;
    r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return r;
}

HttpResponse error_response(int status, const std::string& message, const std::string& type, const std::string& param,
                            const std::string& code) {
    const auto or_null = [](const std::string& s) { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); };
    const nlohmann::json err = {
        {"error", {{"message", message}, {"type", type}, {"param", or_null(param)}, {"code", or_null(code)}}}};
    return json_response(status, err);
}

class Session;

struct HttpServer::Impl : ServerContext {
    using ServerContext::ServerContext;

    // One io_context per thread, each run by its thread alone: a connection and whatever its
    // handlers start on serving_io_context() (the orchestrator's upstream calls) share one thread,
    // so a relayed chunk crosses no thread. The first also holds the acceptor.
    std::vector<std::unique_ptr<net::io_context>> contexts;
    size_t next_context = 0;  // round robin over contexts, on the acceptor's strand
    // Keep the threads running while no connection is open (until stop()).
    std::vector<net::executor_work_guard<net::io_context::executor_type>> work;
    std::optional<tcp::acceptor> acceptor;
    bool accepting = false;
    std::vector<std::thread> threads;

    // Accept failures (out of descriptors): the pause before the next try, on the acceptor's strand.
    std::optional<net::steady_timer> accept_timer;
    std::chrono::milliseconds accept_backoff{0};
    int accept_failures = 0;  // since the last report
    std::optional<std::chrono::steady_clock::time_point> accept_reported;

    void accept();
    void accept_failed(const beast::error_code& ec);
};

class Session : public ServerConnection {
public:
    Session(tcp::socket&& socket, HttpServer::Impl& server) : stream_(std::move(socket)), server_(server) {
        beast::error_code ec;
        stream_.socket().set_option(tcp::no_delay(true), ec);
        const auto ep = stream_.socket().remote_endpoint(ec);
        if (!ec) peer_ = ep.address().to_string() + ":" + std::to_string(ep.port());
        server_.add(this);
    }

    ~Session() override {
        if (producer_ && !response_complete_) producer_->abandoned();
        server_.remove(this);
    }

    void run() {
        net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_request(); });
    }

    // From stop(): a connection waiting for its next request closes now; one in a response closes
    // when it is sent.
    void close_if_idle() override {
        net::post(stream_.get_executor(), [self = shared_from_this()] {
            if (self->idle_) self->close();
        });
    }

private:
    std::shared_ptr<Session> shared_from_this() {
        return std::static_pointer_cast<Session>(ServerConnection::shared_from_this());
    }

    void read_request() {
        if (closed_) return;
        if (server_.stopping) return close();
        limit_parser(parser_.emplace(), server_.limits);
        idle_ = true;
        stream_.expires_after(server_.limits.request_timeout);
        bhttp::async_read_header(stream_, buffer_, *parser_,
                                 [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
    }

    // Clients such as curl send "Expect: 100-continue" before a larger body and wait for the go-ahead.
    // The framing is checked first: a body whose end is unclear must not be read as the next request.
    void on_header(beast::error_code ec) {
        idle_ = false;
        if (closed_) return;
        if (ec) return on_read(ec);
        if (const std::string problem = framing_problem(parser_->get()); !problem.empty())
            return send_fatal(error_response(400, "malformed HTTP request: " + problem, "invalid_request_error"));
        const auto read_body = [self = shared_from_this()] {
            bhttp::async_read(self->stream_, self->buffer_, *self->parser_,
                              [self](beast::error_code ec, size_t) { self->on_read(ec); });
        };
        if (!beast::iequals(parser_->get()[bhttp::field::expect], "100-continue")) return read_body();
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        net::async_write(stream_, net::buffer(kContinue.data(), kContinue.size()),
                         [self = shared_from_this(), read_body](beast::error_code ec, size_t) {
                             if (ec) return self->close();
                             read_body();
                         });
    }

    void on_read(beast::error_code ec) {
        if (closed_) return;
        if (auto answer = read_failure_response(ec, server_.limits)) return send_fatal(std::move(*answer));
        if (ec) {  // end of stream, timeout, reset: nothing to answer
            if (ec == beast::error::timeout) log()->debug("{}: closed after the request timeout", peer_);
            return close();
        }

        const HttpRequest req = to_http_request(parser_->get(), peer_);
        if (wants_mux(req)) return upgrade_to_mux();
        keep_alive_ = parser_->get().keep_alive();
        version_ = parser_->get().version();
        head_only_ = req.method == "HEAD";
        started_ = std::chrono::steady_clock::now();
        method_ = req.method;
        path_ = req.path;

        HttpResponse resp;
        try {
            resp = dispatch(server_.routes, req);
        } catch (const std::exception& e) {
            log()->error("{} {}: handler failed: {}", req.method, req.path, e.what());
            resp = error_response(500, std::string("internal error: ") + e.what(), "server_error");
        }
        send(std::move(resp));
    }

    bool wants_mux(const HttpRequest& req) const {
        return !server_.mux_path.empty() && req.path == server_.mux_path && req.method == "GET" &&
               beast::iequals(req.header("upgrade"), kMuxProtocol);
    }

    // The connection leaves HTTP/1.1: the mux session owns the socket (and any bytes read past the
    // upgrade request) from here on.
    void upgrade_to_mux() {
        closed_ = true;
        idle_ = false;
        std::string leftover(static_cast<const char*>(buffer_.data().data()), buffer_.size());
        std::string switching =
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + std::string(kMuxProtocol) +
            "\r\nServer: " + server_.name + "\r\n\r\n";
        stream_.expires_never();
        log()->debug("{}: upgraded to {}", peer_, kMuxProtocol);
        start_mux_session(stream_.release_socket(), std::move(switching), std::move(leftover), server_, peer_);
    }

    void send(HttpResponse r) {
        if (!r.producer) return write_whole(std::move(r), keep_alive_);
        producer_ = std::move(r.producer);
        streaming_ = r.stream;
        response_complete_ = false;
        producer_done_ = false;
        watch_client();
        producer_->start(notifier());
        if (!streaming_) return pump();
        write_stream_head(r);
    }

    // The producer's notify(): posts one pump to this connection's strand at a time.
    std::function<void()> notifier() {
        std::weak_ptr<Session> weak = shared_from_this();
        auto ex = stream_.get_executor();
        auto posted = pump_posted_;
        return [weak, ex, posted] {
            if (posted->exchange(true)) return;  // a pump is already on its way
            net::post(ex, [weak, posted] {
                posted->store(false);
                if (auto self = weak.lock()) self->pump();
            });
        };
    }

    // Sends a stream's head, then pulls its body.
    void write_stream_head(const HttpResponse& r) {
        head_.emplace(stream_head(r, keep_alive_, version_, server_.name));
        keep_alive_ = head_->keep_alive();
        unframed_ = !head_->chunked();
        serializer_.emplace(*head_);
        writing_ = true;
        stream_.expires_after(server_.limits.write_timeout);
        bhttp::async_write_header(stream_, *serializer_, [self = shared_from_this()](beast::error_code ec, size_t) {
            self->writing_ = false;
            if (ec) return self->lost(ec);
            self->log_response(self->head_->result_int());
            if (self->head_only_) return self->end_head_only_stream();
            self->pump();
        });
    }

    // A whole answer that turned out to be a stream (a proxy learns its upstream's status first): its
    // producer takes over; start() is called on it even when it is the same object.
    void start_late_stream(HttpResponse r) {
        producer_ = std::move(r.producer);
        streaming_ = true;
        producer_done_ = false;
        producer_->start(notifier());
        write_stream_head(r);
    }

    // HEAD on a streaming route: the head is the answer; the stream is not wanted.
    void end_head_only_stream() {
        response_complete_ = true;
        const auto producer = std::move(producer_);
        producer->abandoned();
        finish_response();
    }

    // Pulls what the producer has and writes it; called after every write and every notify.
    void pump() {
        if (closed_ || !producer_ || writing_ || response_complete_) return;
        if (!producer_done_) {
            ResponseProducer::Progress p = producer_->poll();
            if (p.done) producer_done_ = true;
            if (!streaming_) {
                if (p.done && p.whole.producer && p.whole.stream) return start_late_stream(std::move(p.whole));
                if (p.done) {
                    response_complete_ = true;
                    write_whole(std::move(p.whole), keep_alive_);
                }
                return;
            }
            if (!p.data.empty()) return write_data(std::move(p.data));
        }
        if (!producer_done_) return;  // wait for notify()
        if (unframed_) {              // the end of the body is the end of the connection
            response_complete_ = true;
            producer_.reset();
            return linger_close();
        }
        writing_ = true;
        stream_.expires_after(server_.limits.write_timeout);
        net::async_write(stream_, bhttp::make_chunk_last(), [self = shared_from_this()](beast::error_code ec, size_t) {
            self->writing_ = false;
            if (ec) return self->lost(ec);
            self->response_complete_ = true;
            self->finish_response();
        });
    }

    void write_data(std::string data) {
        chunk_ = std::move(data);
        writing_ = true;
        stream_.expires_after(server_.limits.write_timeout);
        const auto written = [self = shared_from_this()](beast::error_code ec, size_t) {
            self->writing_ = false;
            if (ec) return self->lost(ec);
            self->pump();
        };
        if (unframed_) return net::async_write(stream_, net::buffer(chunk_), written);
        net::async_write(stream_, bhttp::make_chunk(net::buffer(chunk_)), written);
    }

    void write_whole(HttpResponse r, bool keep_alive) {
        const int status = r.status;
        auto res = std::make_shared<bhttp::response<bhttp::string_body>>(
            whole_response(std::move(r), keep_alive && !server_.stopping, head_only_, version_, server_.name));
        log_response(status);
        writing_ = true;
        stream_.expires_after(server_.limits.write_timeout);
        bhttp::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, size_t) {
            self->writing_ = false;
            if (ec) return self->lost(ec);
            self->response_complete_ = true;
            if (!res->keep_alive()) return self->linger_close();
            self->finish_response();
        });
    }

    // An error the connection cannot recover from (413, 431, unparseable request): answer, then close.
    void send_fatal(HttpResponse r) {
        head_only_ = false;
        method_ = "-";
        path_ = "-";
        started_ = std::chrono::steady_clock::now();
        write_whole(std::move(r), false);
    }

    void finish_response() {
        producer_.reset();
        if (watching_) {  // its handler continues once the read is cancelled
            watch_cancelled_ = true;
            beast::error_code ec;
            stream_.socket().cancel(ec);
            return;
        }
        next_request();
    }

    void next_request() {
        if (keep_alive_ && !server_.stopping) return read_request();
        close();
    }

    // While a response is produced the client sends nothing (HTTP/1.1 without pipelining), so a
    // pending read completes only when it leaves (EOF, reset) or pipelines its next request.
    void watch_client() {
        if (closed_ || watching_ || buffer_.size() >= server_.limits.pipelined_bytes) return;
        watching_ = true;
        watch_cancelled_ = false;
        stream_.socket().async_read_some(
            buffer_.prepare(4096),
            [self = shared_from_this()](beast::error_code ec, size_t n) { self->on_watch(ec, n); });
    }

    void on_watch(beast::error_code ec, size_t n) {
        watching_ = false;
        if (closed_) return;
        if (!ec) buffer_.commit(n);
        if (response_complete_) {
            if (ec && ec != net::error::operation_aborted) return close();
            if (watch_cancelled_) next_request();
            return;
        }
        if (ec) return lost(ec);
        watch_client();
    }

    void lost(beast::error_code ec) {
        if (closed_) return;
        log()->info("{} {} {}: the client went away ({})", peer_, method_, path_, ec.message());
        if (producer_ && !response_complete_) {
            response_complete_ = true;
            auto p = std::move(producer_);
            p->abandoned();
        }
        close();
    }

    // Closing with unread request bytes makes the kernel reset the connection, which can destroy
    // the response in flight (a 413 for a body still being sent): stop sending, then read and drop
    // what the client still sends until it closes or a second passes.
    void linger_close() {
        if (closed_) return;
        beast::error_code ec;
        if (watching_) stream_.socket().cancel(ec);  // one reader at a time: the watch ends here
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
        stream_.expires_after(std::chrono::seconds(1));
        discard_.resize(16 << 10);
        discard_until_closed();
    }
    void discard_until_closed() {
        stream_.async_read_some(net::buffer(discard_), [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec || self->closed_) return self->close();
            self->discard_until_closed();
        });
    }

    void close() {
        if (closed_) return;
        closed_ = true;
        idle_ = false;
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
        stream_.close();
    }

    void log_response(int status) {
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started_).count();
        log()->debug("{} {} {} -> {} ({:.1f} ms)", peer_, method_, path_, status, ms);
    }

    beast::tcp_stream stream_;
    HttpServer::Impl& server_;
    beast::flat_buffer buffer_;
    std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
    std::optional<bhttp::response<bhttp::empty_body>> head_;
    std::optional<bhttp::response_serializer<bhttp::empty_body>> serializer_;
    std::string chunk_;
    std::string discard_;
    std::shared_ptr<ResponseProducer> producer_;
    std::shared_ptr<std::atomic<bool>> pump_posted_ = std::make_shared<std::atomic<bool>>(false);
    std::string peer_ = "?";
    std::string method_, path_;
    std::chrono::steady_clock::time_point started_{};
    bool keep_alive_ = false;
    unsigned version_ = 11;   // the request's HTTP version (10 or 11)
    bool head_only_ = false;  // a HEAD request: the response's head without its body
    bool unframed_ = false;   // a stream to an HTTP/1.0 client: raw bytes, then close
    bool streaming_ = false;
    bool writing_ = false;
    bool watching_ = false;
    bool watch_cancelled_ = false;
    bool producer_done_ = false;
    bool response_complete_ = true;
    bool closed_ = false;
    std::atomic<bool> idle_{false};
};

void HttpServer::Impl::accept() {
    net::io_context& ioc = *contexts[next_context++ % contexts.size()];
    acceptor->async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
        if (ec == net::error::operation_aborted || !acceptor->is_open()) return;
        if (ec) return accept_failed(ec);
        accept_backoff = std::chrono::milliseconds(0);
        if (!stopping) std::make_shared<Session>(std::move(socket), *this)->run();
        accept();
    });
}

// Out of descriptors (EMFILE, ENFILE) or memory, accept fails again at once while the connection
// waits in the backlog: retrying at once spins a core and floods the log. Pause (10 ms, doubling
// up to 1 s) and report at most every 5 s; open connections are served meanwhile.
void HttpServer::Impl::accept_failed(const beast::error_code& ec) {
    using namespace std::chrono;
    constexpr milliseconds kFirstPause{10}, kLongestPause{1000};
    constexpr seconds kReportEvery{5};
    accept_backoff = std::clamp(accept_backoff * 2, kFirstPause, kLongestPause);
    ++accept_failures;
    const auto now = steady_clock::now();
    if (!accept_reported || now - *accept_reported >= kReportEvery) {
        if (accept_reported)
            log()->warn("accept failed: {} ({} times in the last {:.0f} s); retrying", ec.message(), accept_failures,
                        duration<double>(now - *accept_reported).count());
        else
            log()->warn("accept failed: {}; retrying, pausing up to {} ms between tries", ec.message(),
                        kLongestPause.count());
        accept_reported = now;
        accept_failures = 0;
    }
    accept_timer->expires_after(accept_backoff);
    accept_timer->async_wait([this](beast::error_code wait_ec) {
        if (wait_ec == net::error::operation_aborted || !acceptor->is_open()) return;
        accept();
    });
}

namespace {
thread_local net::io_context* serving_context = nullptr;
}  // namespace

net::io_context* serving_io_context() { return serving_context; }

HttpServer::HttpServer(std::string name, HttpLimits limits) : impl_(std::make_shared<Impl>(std::move(name), limits)) {
    impl_->contexts.push_back(std::make_unique<net::io_context>());
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::route(const std::string& method, const std::string& path, Handler handler) {
    impl_->routes.exact[{path, method}] = std::move(handler);
}

void HttpServer::enable_mux() { impl_->mux_path = kMuxPath; }

void HttpServer::route_prefix(const std::string& method, const std::string& prefix, Handler handler) {
    impl_->routes.prefix[{prefix, method}] = std::move(handler);
}

uint16_t HttpServer::listen(const std::string& host, uint16_t port) {
    raise_fd_limit();
    beast::error_code ec;
    const auto address = net::ip::make_address(host, ec);
    if (ec) throw std::runtime_error("cannot listen on " + host + ": not an IP address (" + ec.message() + ")");
    const tcp::endpoint endpoint(address, port);
    auto& acc = impl_->acceptor.emplace(net::make_strand(*impl_->contexts.front()));
    const auto fail = [&](const char* what) {
        throw std::runtime_error(std::string("cannot listen on ") + host + ":" + std::to_string(port) + ": " + what +
                                 ": " + ec.message());
    };
    if (acc.open(endpoint.protocol(), ec); ec) fail("open");
    if (acc.set_option(net::socket_base::reuse_address(true), ec); ec) fail("SO_REUSEADDR");
    if (acc.bind(endpoint, ec); ec) fail("bind");
    if (acc.listen(net::socket_base::max_listen_connections, ec); ec) fail("listen");
    impl_->accept_timer.emplace(acc.get_executor());
    return acc.local_endpoint().port();
}

void HttpServer::start(int threads) {
    if (!impl_->acceptor) throw std::logic_error("HttpServer::start before listen");
    while (impl_->contexts.size() < static_cast<size_t>(std::max(threads, 1)))
        impl_->contexts.push_back(std::make_unique<net::io_context>());
    for (auto& ioc : impl_->contexts) impl_->work.push_back(net::make_work_guard(*ioc));
    impl_->accepting = true;
    impl_->accept();
    for (auto& context : impl_->contexts)
        impl_->threads.emplace_back([ioc = context.get()] {
            serving_context = ioc;
            for (;;) {
                try {
                    ioc->run();
                    return;
                } catch (const std::exception& e) {  // a handler threw past its session: keep serving
                    log()->error("io thread: {}", e.what());
                }
            }
        });
}

void HttpServer::stop_accepting() {
    impl_->stopping = true;
    if (!impl_->accepting) return;  // accepting implies running threads (start())
    impl_->accepting = false;
    // The acceptor belongs to its strand: close it there and wait.
    std::promise<void> closed;
    net::post(impl_->acceptor->get_executor(), [this, &closed] {
        beast::error_code ec;
        impl_->acceptor->close(ec);
        impl_->accept_timer->cancel();
        closed.set_value();
    });
    closed.get_future().wait();
}

void HttpServer::stop(std::chrono::milliseconds grace) {
    if (impl_->threads.empty()) return;
    stop_accepting();
    {
        std::unique_lock lock(impl_->sessions_mutex);
        std::vector<std::shared_ptr<ServerConnection>> live;
        for (ServerConnection* s : impl_->sessions)
            if (auto p = s->weak_from_this().lock()) live.push_back(std::move(p));
        lock.unlock();
        for (auto& s : live) s->close_if_idle();
        live.clear();
        lock.lock();
        impl_->sessions_changed.wait_for(lock, grace, [&] { return impl_->sessions.empty(); });
    }
    impl_->work.clear();
    for (auto& ioc : impl_->contexts) ioc->stop();
    for (auto& t : impl_->threads) t.join();
    impl_->threads.clear();
}

int HttpServer::connections() const {
    std::lock_guard lock(impl_->sessions_mutex);
    return static_cast<int>(impl_->sessions.size());
}

}  // namespace loom::http
