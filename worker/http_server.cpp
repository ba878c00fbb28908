// HttpServer: one Beast session per connection on its own strand; produced responses are pulled
// one write at a time, and a read kept pending while a response is produced notices the client leaving.
#include "worker/http_server.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <spdlog/spdlog.h>
#include <stdexcept>
#include <thread>
#include <unordered_set>

namespace loom::worker {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

std::shared_ptr<spdlog::logger> log() {
    if (auto l = spdlog::get("http")) return l;
    return spdlog::default_logger();
}

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

}  // namespace

std::string HttpRequest::header(std::string_view name) const {
    const std::string key = lower(name);
    for (const auto& [k, v] : headers)
        if (k == key) return v;
    return {};
}

HttpResponse error_response(int status, const std::string& message, const std::string& type, const std::string& param,
                            const std::string& code) {
    HttpResponse r;
    r.status = status;
    const auto or_null = [](const std::string& s) { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); };
    const nlohmann::json err = {
        {"error", {{"message", message}, {"type", type}, {"param", or_null(param)}, {"code", or_null(code)}}}};
    r.body = err.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return r;
}

class Session;

struct HttpServer::Impl {
    explicit Impl(HttpLimits l) : limits(l) {}

    HttpLimits limits;
    std::map<std::pair<std::string, std::string>, Handler> routes;  // (path, method)
    std::map<std::pair<std::string, std::string>, Handler> prefix_routes;  // (path prefix, method)
    std::atomic<bool> stopping{false};

    // The live sessions (for stop()); declared before the io_context so they outlive the handlers
    // that the io_context destroys.
    mutable std::mutex sessions_mutex;
    std::condition_variable sessions_changed;
    std::unordered_set<Session*> sessions;

    net::io_context ioc;
    // Keeps the threads running while no connection is open (until stop()).
    std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
    std::optional<tcp::acceptor> acceptor;
    bool accepting = false;
    std::vector<std::thread> threads;

    void accept();
    HttpResponse dispatch(const HttpRequest& req) const;
};

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(tcp::socket&& socket, HttpServer::Impl& server) : stream_(std::move(socket)), server_(server) {
        beast::error_code ec;
        stream_.socket().set_option(tcp::no_delay(true), ec);
        const auto ep = stream_.socket().remote_endpoint(ec);
        if (!ec) peer_ = ep.address().to_string() + ":" + std::to_string(ep.port());
        std::lock_guard lock(server_.sessions_mutex);
        server_.sessions.insert(this);
    }

    ~Session() {
        if (producer_ && !response_complete_) producer_->abandoned();
        std::lock_guard lock(server_.sessions_mutex);
        server_.sessions.erase(this);
        server_.sessions_changed.notify_all();
    }

    void run() {
        net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_request(); });
    }

    // From stop(): a connection waiting for its next request closes now; one in a response closes
    // when it is sent.
    void close_if_idle() {
        net::post(stream_.get_executor(), [self = shared_from_this()] {
            if (self->idle_) self->close();
        });
    }

private:
    void read_request() {
        if (closed_) return;
        if (server_.stopping) return close();
        parser_.emplace();
        parser_->body_limit(server_.limits.body_bytes);
        parser_->header_limit(static_cast<uint32_t>(server_.limits.header_bytes));
        idle_ = true;
        stream_.expires_after(server_.limits.request_timeout);
        http::async_read_header(stream_, buffer_, *parser_,
                                [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
    }

    // Clients such as curl send "Expect: 100-continue" before a larger body and wait for the go-ahead.
    void on_header(beast::error_code ec) {
        idle_ = false;
        if (closed_) return;
        if (ec) return on_read(ec);
        const auto read_body = [self = shared_from_this()] {
            http::async_read(self->stream_, self->buffer_, *self->parser_,
                             [self](beast::error_code ec, size_t) { self->on_read(ec); });
        };
        if (!beast::iequals(parser_->get()[http::field::expect], "100-continue")) return read_body();
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        net::async_write(stream_, net::buffer(kContinue.data(), kContinue.size()),
                         [self = shared_from_this(), read_body](beast::error_code ec, size_t) {
                             if (ec) return self->close();
                             read_body();
                         });
    }

    void on_read(beast::error_code ec) {
        if (closed_) return;
        if (ec == http::error::body_limit)
            return send_fatal(error_response(413, "the request body exceeds " + std::to_string(server_.limits.body_bytes) +
                                                      " bytes", "invalid_request_error"));
        if (ec == http::error::header_limit)
            return send_fatal(error_response(431, "the request head exceeds " +
                                                      std::to_string(server_.limits.header_bytes) + " bytes",
                                             "invalid_request_error"));
        if (ec && ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
            ec != http::error::end_of_stream && ec != http::error::partial_message)
            return send_fatal(error_response(400, "malformed HTTP request: " + ec.message(), "invalid_request_error"));
        if (ec) {  // end of stream, timeout, reset: nothing to answer
            if (ec == beast::error::timeout) log()->debug("{}: closed after the request timeout", peer_);
            return close();
        }

        const auto& msg = parser_->get();
        HttpRequest req;
        req.method = std::string(msg.method_string());
        const std::string_view target = msg.target();
        const size_t q = target.find('?');
        req.path = std::string(target.substr(0, q));
        if (q != std::string_view::npos) req.query = std::string(target.substr(q + 1));
        for (const auto& field : msg) req.headers.emplace_back(lower(field.name_string()), std::string(field.value()));
        req.body = msg.body();
        req.peer = peer_;
        keep_alive_ = msg.keep_alive();
        started_ = std::chrono::steady_clock::now();
        method_ = req.method;
        path_ = req.path;

        HttpResponse resp;
        try {
            resp = server_.dispatch(req);
        } catch (const std::exception& e) {
            log()->error("{} {}: handler failed: {}", req.method, req.path, e.what());
            resp = error_response(500, std::string("internal error: ") + e.what(), "server_error");
        }
        send(std::move(resp));
    }

    void send(HttpResponse r) {
        if (!r.producer) return write_whole(std::move(r), keep_alive_);
        producer_ = std::move(r.producer);
        streaming_ = r.stream;
        response_complete_ = false;
        producer_done_ = false;
        watch_client();
        std::weak_ptr<Session> weak = weak_from_this();
        auto ex = stream_.get_executor();
        auto posted = pump_posted_;
        producer_->start([weak, ex, posted] {
            if (posted->exchange(true)) return;  // a pump is already on its way
            net::post(ex, [weak, posted] {
                posted->store(false);
                if (auto self = weak.lock()) self->pump();
            });
        });
        if (!streaming_) return pump();

        head_.emplace(static_cast<http::status>(r.status), 11);
        head_->set(http::field::server, "loom-worker");
        head_->set(http::field::content_type, r.content_type);
        head_->set(http::field::cache_control, "no-cache");
        for (const auto& [k, v] : r.headers) head_->set(k, v);
        head_->keep_alive(keep_alive_);
        head_->chunked(true);
        serializer_.emplace(*head_);
        writing_ = true;
        stream_.expires_after(server_.limits.write_timeout);
        http::async_write_header(stream_, *serializer_, [self = shared_from_this()](beast::error_code ec, size_t) {
            self->writing_ = false;
            if (ec) return self->lost(ec);
            self->log_response(self->head_->result_int());
            self->pump();
        });
    }

    // Pulls what the producer has and writes it; called after every write and every notify.
    void pump() {
        if (closed_ || !producer_ || writing_ || response_complete_) return;
        if (!producer_done_) {
            ResponseProducer::Progress p = producer_->poll();
            if (p.done) producer_done_ = true;
            if (!streaming_) {
                if (p.done) {
                    response_complete_ = true;
                    write_whole(std::move(p.whole), keep_alive_);
                }
                return;
            }
            if (!p.data.empty()) {
                chunk_ = std::move(p.data);
                writing_ = true;
                stream_.expires_after(server_.limits.write_timeout);
                net::async_write(stream_, http::make_chunk(net::buffer(chunk_)),
                                 [self = shared_from_this()](beast::error_code ec, size_t) {
                                     self->writing_ = false;
                                     if (ec) return self->lost(ec);
                                     self->pump();
                                 });
                return;
            }
        }
        if (!producer_done_) return;  // wait for notify()
        writing_ = true;
        stream_.expires_after(server_.limits.write_timeout);
        net::async_write(stream_, http::make_chunk_last(), [self = shared_from_this()](beast::error_code ec, size_t) {
            self->writing_ = false;
            if (ec) return self->lost(ec);
            self->response_complete_ = true;
            self->finish_response();
        });
    }

    void write_whole(HttpResponse r, bool keep_alive) {
        auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(r.status), 11);
        res->set(http::field::server, "loom-worker");
        res->set(http::field::content_type, r.content_type);
        for (const auto& [k, v] : r.headers) res->set(k, v);
        res->keep_alive(keep_alive && !server_.stopping);
        res->body() = std::move(r.body);
        res->prepare_payload();
        log_response(r.status);
        writing_ = true;
        stream_.expires_after(server_.limits.write_timeout);
        http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, size_t) {
            self->writing_ = false;
            if (ec) return self->lost(ec);
            self->response_complete_ = true;
            if (!res->keep_alive()) return self->linger_close();
            self->finish_response();
        });
    }

    // An error the connection cannot recover from (413, 431, unparseable request): answer, then close.
    void send_fatal(HttpResponse r) {
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
        stream_.socket().async_read_some(buffer_.prepare(4096),
                                         [self = shared_from_this()](beast::error_code ec, size_t n) {
                                             self->on_watch(ec, n);
                                         });
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
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started_).count();
        log()->debug("{} {} {} -> {} ({:.1f} ms)", peer_, method_, path_, status, ms);
    }

    beast::tcp_stream stream_;
    HttpServer::Impl& server_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::optional<http::response<http::empty_body>> head_;
    std::optional<http::response_serializer<http::empty_body>> serializer_;
    std::string chunk_;
    std::string discard_;
    std::shared_ptr<ResponseProducer> producer_;
    std::shared_ptr<std::atomic<bool>> pump_posted_ = std::make_shared<std::atomic<bool>>(false);
    std::string peer_ = "?";
    std::string method_, path_;
    std::chrono::steady_clock::time_point started_{};
    bool keep_alive_ = false;
    bool streaming_ = false;
    bool writing_ = false;
    bool watching_ = false;
    bool watch_cancelled_ = false;
    bool producer_done_ = false;
    bool response_complete_ = true;
    bool closed_ = false;
    std::atomic<bool> idle_{false};
};

HttpResponse HttpServer::Impl::dispatch(const HttpRequest& req) const {
    const auto exact = routes.find({req.path, req.method});
    if (exact != routes.end()) return exact->second(req);
    std::string allowed;
    for (const auto& [key, handler] : routes)
        if (key.first == req.path) allowed += (allowed.empty() ? "" : ", ") + key.second;
    if (allowed.empty())
        for (const auto& [key, handler] : prefix_routes) {
            if (req.path.size() <= key.first.size() || req.path.compare(0, key.first.size(), key.first) != 0) continue;
            if (key.second == req.method) return handler(req);
            allowed += (allowed.empty() ? "" : ", ") + key.second;
        }
    if (allowed.empty()) return error_response(404, "no route " + req.path, "not_found_error");
    HttpResponse r = error_response(405, req.method + " is not allowed on " + req.path + " (allowed: " + allowed + ")",
                                    "invalid_request_error");
    r.headers.emplace_back("Allow", allowed);
    return r;
}

void HttpServer::Impl::accept() {
    acceptor->async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
        if (ec == net::error::operation_aborted || !acceptor->is_open()) return;
        if (ec) {
            log()->warn("accept failed: {}", ec.message());
        } else if (!stopping) {
            std::make_shared<Session>(std::move(socket), *this)->run();
        }
        accept();
    });
}

HttpServer::HttpServer(HttpLimits limits) : impl_(std::make_shared<Impl>(limits)) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::route(const std::string& method, const std::string& path, Handler handler) {
    impl_->routes[{path, method}] = std::move(handler);
}

void HttpServer::route_prefix(const std::string& method, const std::string& prefix, Handler handler) {
    impl_->prefix_routes[{prefix, method}] = std::move(handler);
}

uint16_t HttpServer::listen(const std::string& host, uint16_t port) {
    beast::error_code ec;
    const auto address = net::ip::make_address(host, ec);
    if (ec) throw std::runtime_error("cannot listen on " + host + ": not an IP address (" + ec.message() + ")");
    const tcp::endpoint endpoint(address, port);
    auto& acc = impl_->acceptor.emplace(net::make_strand(impl_->ioc));
    const auto fail = [&](const char* what) {
        throw std::runtime_error(std::string("cannot listen on ") + host + ":" + std::to_string(port) + ": " + what +
                                 ": " + ec.message());
    };
    if (acc.open(endpoint.protocol(), ec); ec) fail("open");
    if (acc.set_option(net::socket_base::reuse_address(true), ec); ec) fail("SO_REUSEADDR");
    if (acc.bind(endpoint, ec); ec) fail("bind");
    if (acc.listen(net::socket_base::max_listen_connections, ec); ec) fail("listen");
    return acc.local_endpoint().port();
}

void HttpServer::start(int threads) {
    if (!impl_->acceptor) throw std::logic_error("HttpServer::start before listen");
    impl_->work.emplace(impl_->ioc.get_executor());
    impl_->accepting = true;
    impl_->accept();
    for (int i = 0; i < std::max(threads, 1); ++i)
        impl_->threads.emplace_back([impl = impl_.get()] {
            for (;;) {
                try {
                    impl->ioc.run();
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
        closed.set_value();
    });
    closed.get_future().wait();
}

void HttpServer::stop(std::chrono::milliseconds grace) {
    if (impl_->threads.empty()) return;
    stop_accepting();
    {
        std::unique_lock lock(impl_->sessions_mutex);
        std::vector<std::shared_ptr<Session>> live;
        for (Session* s : impl_->sessions)
            if (auto p = s->weak_from_this().lock()) live.push_back(std::move(p));
        lock.unlock();
        for (auto& s : live) s->close_if_idle();
        live.clear();
        lock.lock();
        impl_->sessions_changed.wait_for(lock, grace, [&] { return impl_->sessions.empty(); });
    }
    impl_->work.reset();
    impl_->ioc.stop();
    for (auto& t : impl_->threads) t.join();
    impl_->threads.clear();
}

int HttpServer::connections() const {
    std::lock_guard lock(impl_->sessions_mutex);
    return static_cast<int>(impl_->sessions.size());
}

}  // namespace loom::worker
