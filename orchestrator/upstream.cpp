// The Beast client behind call_upstream: a pooled connection or resolve and connect, write, read the
// head, then the body in pieces; every step on the connection's strand, the timeouts through
// beast::tcp_stream.
#include "orchestrator/upstream.h"

#include <array>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <limits>
#include <optional>

#include "orchestrator/upstream_connection.h"

namespace loom::orchestrator {

namespace {

namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using tcp_stream = beast::tcp_stream;

class Call : public UpstreamCall, public std::enable_shared_from_this<Call> {
public:
    Call(net::io_context& ioc, UpstreamRequest r, UpstreamHandlers h, ConnectionPool* pool)
        : ioc_(ioc),
          pool_(pool),
          r_(std::move(r)),
          h_(std::move(h)),
          conn_(pool_ ? pool_->take(ioc_, r_.worker.text) : nullptr),
          reused_(conn_ != nullptr),
          executor_(conn_ ? conn_->stream.get_executor() : net::make_strand(ioc_)) {
        if (!conn_) conn_ = std::make_unique<UpstreamConnection>(executor_);
        if (pool_) pool_->count(reused_ ? ConnectionPool::Got::reused : ConnectionPool::Got::fresh);
        req_ = {bhttp::string_to_verb(r_.method), r_.target, 11};
        req_.set(bhttp::field::host, r_.worker.host + ":" + std::to_string(r_.worker.port));
        if (!pool_) req_.set(bhttp::field::connection, "close");
        if (r_.method == "POST") req_.set(bhttp::field::content_type, "application/json");
        for (const auto& [k, v] : r_.headers) req_.set(k, v);
        req_.body() = r_.body;
        req_.prepare_payload();
        new_parser();
    }

    // On the strand, so a cancel() from another thread is ordered with every step.
    void run() {
        if (r_.total_timeout.count() > 0) deadline_ = std::chrono::steady_clock::now() + r_.total_timeout;
        net::post(executor_, [self = shared_from_this()] { self->reused_ ? self->write() : self->resolve(); });
    }

    void cancel() override {
        cancelled_ = true;
        net::post(executor_, [self = shared_from_this()] { self->close(); });
    }

private:
    tcp_stream& stream() { return conn_->stream; }

    void new_parser() {
        parser_.emplace();
        parser_->body_limit(std::numeric_limits<std::uint64_t>::max());  // streams have no size bound
        buf_.clear();
    }

    // An IP address is used as it is: asio resolves names on one thread of its own (getaddrinfo,
    // which also lists the interfaces), and at a thousand calls a second every request and health
    // poll would queue behind it (bench/orchestrator_overhead).
    void resolve() {
        beast::error_code ec;
        const auto address = net::ip::make_address(r_.worker.host, ec);
        if (!ec) return connect(std::array{tcp::endpoint(address, r_.worker.port)});
        resolver_.emplace(executor_);
        resolver_->async_resolve(r_.worker.host, std::to_string(r_.worker.port),
                                 [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type res) {
                                     if (ec) return self->fail(ec, "cannot resolve: ");
                                     self->connect(res);
                                 });
    }

    template <class Endpoints>
    void connect(const Endpoints& endpoints) {
        if (!conn_) return;  // cancelled
        expire(r_.connect_timeout);
        stream().async_connect(endpoints, [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
            if (ec) return self->fail(ec, "cannot connect: ");
            beast::error_code ignored;
            self->stream().socket().set_option(tcp::no_delay(true), ignored);
            self->write();
        });
    }

    // The step's timeout (zero: none of its own), never beyond the whole call's deadline; none at all
    // for a generation's reads.
    void expire(std::chrono::milliseconds step) {
        if (deadline_ && step.count() == 0) {
            stream().expires_at(*deadline_);
        } else if (deadline_) {
            stream().expires_at(std::min(*deadline_, std::chrono::steady_clock::now() + step));
        } else if (step.count() > 0) {
            stream().expires_after(step);
        } else {
            stream().expires_never();
        }
    }

    void write() {
        if (!conn_) return;  // cancelled
        expire(std::chrono::milliseconds(10'000));
        bhttp::async_write(stream(), req_, [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec) return self->failed_before_head(ec, "cannot send the request: ");
            if (!self->cancelled_ && self->h_.on_written) self->h_.on_written();
            self->expire(std::chrono::milliseconds(0));
            bhttp::async_read_header(self->stream(), self->buf_, *self->parser_, [self](beast::error_code ec, size_t) {
                if (ec) return self->failed_before_head(ec, "no response head: ");
                self->head();
            });
        });
    }

    // A kept-alive connection the worker closed just as it was reused (its idle timeout, a restart):
    // the worker never saw this request, so it goes again on a new connection, once.
    void failed_before_head(beast::error_code ec, const std::string& what) {
        if (!reused_ || cancelled_ || ec == beast::error::timeout) return fail(ec, what);
        reused_ = false;
        pool_->count(ConnectionPool::Got::replaced);
        beast::error_code ignored;
        stream().socket().close(ignored);
        conn_ = std::make_unique<UpstreamConnection>(executor_);
        new_parser();
        resolve();
    }

    void head() {
        http::HttpHeaders headers;
        for (const auto& f : parser_->get()) {
            std::string name(f.name_string());
            for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            headers.emplace_back(std::move(name), std::string(f.value()));
        }
        if (!cancelled_ && h_.on_head) h_.on_head(parser_->get().result_int(), headers);
        read_body();
    }

    void read_body() {
        deliver();
        if (parser_->is_done()) return end(UpstreamEnd{true, false, {}});
        if (!conn_) return;  // cancelled
        bhttp::async_read_some(stream(), buf_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec) {
                self->deliver();
                return self->fail(ec, "the response broke off: ");
            }
            self->read_body();
        });
    }

    // Hands over the body bytes parsed so far.
    void deliver() {
        std::string& body = parser_->get().body();
        if (body.empty()) return;
        std::string data = std::move(body);
        body.clear();
        if (!cancelled_ && h_.on_data) h_.on_data(std::move(data));
    }

    void fail(beast::error_code ec, const std::string& what) {
        end(UpstreamEnd{false, ec == beast::error::timeout, what + ec.message()});
    }

    // A complete response on a connection the worker keeps open goes back to the pool for the next
    // request; any other ending closes it.
    void end(const UpstreamEnd& how) {
        if (ended_) return;
        ended_ = true;
        if (how.complete && pool_ && conn_ && !cancelled_ && parser_->get().keep_alive() && buf_.size() == 0) {
            stream().expires_never();
            pool_->put(ioc_, r_.worker.text, std::move(conn_));
        } else {
            close();
        }
        if (!cancelled_ && h_.on_end) h_.on_end(how);
    }

    void close() {
        if (!conn_) return;  // back in the pool, or never connected again
        beast::error_code ec;
        stream().socket().shutdown(tcp::socket::shutdown_both, ec);
        stream().close();
        conn_.reset();
    }

    net::io_context& ioc_;
    ConnectionPool* pool_;
    UpstreamRequest r_;
    UpstreamHandlers h_;
    std::unique_ptr<UpstreamConnection> conn_;  // null once closed or back in the pool
    bool reused_;                               // conn_ came from the pool
    net::any_io_executor executor_;             // the connection's strand: every step runs on it
    std::optional<tcp::resolver> resolver_;
    bhttp::request<bhttp::string_body> req_;
    std::optional<bhttp::response_parser<bhttp::string_body>> parser_;
    beast::flat_buffer buf_;
    std::optional<std::chrono::steady_clock::time_point> deadline_;
    std::atomic<bool> cancelled_{false};
    bool ended_ = false;
};

}  // namespace

std::shared_ptr<UpstreamCall> call_upstream(net::io_context& ioc, UpstreamRequest request, UpstreamHandlers handlers,
                                            ConnectionPool* pool) {
    auto call = std::make_shared<Call>(ioc, std::move(request), std::move(handlers), pool);
    call->run();
    return call;
}

}  // namespace loom::orchestrator
