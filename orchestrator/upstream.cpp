// The Beast client behind call_upstream: resolve, connect, write, read the head, then the body in
// pieces; every step on one strand, the timeouts through beast::tcp_stream.
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

namespace loom::orchestrator {

namespace {

namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

class Call : public UpstreamCall, public std::enable_shared_from_this<Call> {
public:
    Call(net::io_context& ioc, UpstreamRequest r, UpstreamHandlers h)
        : stream_(net::make_strand(ioc)), resolver_(stream_.get_executor()), r_(std::move(r)), h_(std::move(h)) {
        req_ = {bhttp::string_to_verb(r_.method), r_.target, 11};
        req_.set(bhttp::field::host, r_.worker.host + ":" + std::to_string(r_.worker.port));
        req_.set(bhttp::field::connection, "close");
        if (r_.method == "POST") req_.set(bhttp::field::content_type, "application/json");
        for (const auto& [k, v] : r_.headers) req_.set(k, v);
        req_.body() = r_.body;
        req_.prepare_payload();
        parser_.body_limit(std::numeric_limits<std::uint64_t>::max());  // streams have no size bound
    }

    // On the strand, so a cancel() from another thread is ordered with every step.
    void run() {
        if (r_.total_timeout.count() > 0) deadline_ = std::chrono::steady_clock::now() + r_.total_timeout;
        net::post(stream_.get_executor(), [self = shared_from_this()] { self->resolve(); });
    }

    void cancel() override {
        cancelled_ = true;
        net::post(stream_.get_executor(), [self = shared_from_this()] { self->close(); });
    }

private:
    // An IP address is used as it is: asio resolves names on one thread of its own (getaddrinfo,
    // which also lists the interfaces), and at a thousand calls a second every request and health
    // poll would queue behind it (bench/orchestrator_overhead).
    void resolve() {
        beast::error_code ec;
        const auto address = net::ip::make_address(r_.worker.host, ec);
        if (!ec) return connect(std::array{tcp::endpoint(address, r_.worker.port)});
        resolver_.async_resolve(r_.worker.host, std::to_string(r_.worker.port),
                                [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type res) {
                                    if (ec) return self->fail(ec, "cannot resolve: ");
                                    self->connect(res);
                                });
    }

    template <class Endpoints>
    void connect(const Endpoints& endpoints) {
        expire(r_.connect_timeout);
        stream_.async_connect(endpoints, [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
            if (ec) return self->fail(ec, "cannot connect: ");
            self->write();
        });
    }

    // The step's timeout (zero: none of its own), never beyond the whole call's deadline; none at all
    // for a generation's reads.
    void expire(std::chrono::milliseconds step) {
        if (deadline_ && step.count() == 0) {
            stream_.expires_at(*deadline_);
        } else if (deadline_) {
            stream_.expires_at(std::min(*deadline_, std::chrono::steady_clock::now() + step));
        } else if (step.count() > 0) {
            stream_.expires_after(step);
        } else {
            stream_.expires_never();
        }
    }

    void write() {
        expire(std::chrono::milliseconds(10'000));
        bhttp::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec) return self->fail(ec, "cannot send the request: ");
            if (!self->cancelled_ && self->h_.on_written) self->h_.on_written();
            self->expire(std::chrono::milliseconds(0));
            bhttp::async_read_header(self->stream_, self->buf_, self->parser_, [self](beast::error_code ec, size_t) {
                if (ec) return self->fail(ec, "no response head: ");
                self->head();
            });
        });
    }

    void head() {
        http::HttpHeaders headers;
        for (const auto& f : parser_.get()) {
            std::string name(f.name_string());
            for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            headers.emplace_back(std::move(name), std::string(f.value()));
        }
        if (!cancelled_ && h_.on_head) h_.on_head(parser_.get().result_int(), headers);
        read_body();
    }

    void read_body() {
        deliver();
        if (parser_.is_done()) return end(UpstreamEnd{true, false, {}});
        bhttp::async_read_some(stream_, buf_, parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec) {
                self->deliver();
                return self->fail(ec, "the response broke off: ");
            }
            self->read_body();
        });
    }

    // Hands over the body bytes parsed so far.
    void deliver() {
        std::string& body = parser_.get().body();
        if (body.empty()) return;
        std::string data = std::move(body);
        body.clear();
        if (!cancelled_ && h_.on_data) h_.on_data(std::move(data));
    }

    void fail(beast::error_code ec, const std::string& what) {
        end(UpstreamEnd{false, ec == beast::error::timeout, what + ec.message()});
    }

    void end(const UpstreamEnd& how) {
        if (ended_) return;
        ended_ = true;
        close();
        if (!cancelled_ && h_.on_end) h_.on_end(how);
    }

    void close() {
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
        stream_.close();
    }

    beast::tcp_stream stream_;
    tcp::resolver resolver_;
    UpstreamRequest r_;
    UpstreamHandlers h_;
    bhttp::request<bhttp::string_body> req_;
    bhttp::response_parser<bhttp::string_body> parser_;
    beast::flat_buffer buf_;
    std::optional<std::chrono::steady_clock::time_point> deadline_;
    std::atomic<bool> cancelled_{false};
    bool ended_ = false;
};

}  // namespace

std::shared_ptr<UpstreamCall> call_upstream(net::io_context& ioc, UpstreamRequest request, UpstreamHandlers handlers) {
    auto call = std::make_shared<Call>(ioc, std::move(request), std::move(handlers));
    call->run();
    return call;
}

}  // namespace loom::orchestrator
