// Many concurrent streamed requests from one thread (Boost.Beast, asynchronous), for the load test:
// every request on its own connection, each one's outcome recorded (status, [DONE], error events).
#pragma once

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace loom::test {

struct SwarmOutcome {
    int status = 0;            // 0: no response head
    bool done = false;         // the body ended with data: [DONE]
    int events = 0;            // data events before [DONE]
    bool error_event = false;  // an {"error": ...} event
    std::string failure;       // connect/read error, "" when the response arrived whole
    std::string body;          // a whole (non-stream) answer, such as a 429's
};

namespace swarm_detail {

namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

class Call : public std::enable_shared_from_this<Call> {
public:
    Call(net::io_context& ioc, const tcp::endpoint& ep, const std::string& request, SwarmOutcome& out)
        : socket_(ioc), ep_(ep), request_(request), out_(out) {
        parser_.body_limit(std::numeric_limits<std::uint64_t>::max());
    }

    void start() {
        socket_.async_connect(ep_, [self = shared_from_this()](beast::error_code ec) {
            if (ec) return self->fail("connect: " + ec.message());
            net::async_write(self->socket_, net::buffer(self->request_), [self](beast::error_code ec, size_t) {
                if (ec) return self->fail("write: " + ec.message());
                bhttp::async_read_header(self->socket_, self->buf_, self->parser_,
                                         [self](beast::error_code ec, size_t) {
                                             if (ec) return self->fail("head: " + ec.message());
                                             self->out_.status = self->parser_.get().result_int();
                                             self->read();
                                         });
            });
        });
    }

private:
    void read() {
        take();
        if (parser_.is_done()) return close();
        bhttp::async_read_some(socket_, buf_, parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec) return self->fail("read: " + ec.message());
            self->read();
        });
    }

    void take() {
        std::string& body = parser_.get().body();
        if (out_.status != 200) {
            out_.body += body;
            body.clear();
            return;
        }
        pending_ += body;
        body.clear();
        size_t end;
        while ((end = pending_.find("\n\n")) != std::string::npos) {
            std::string ev = pending_.substr(0, end);
            pending_.erase(0, end + 2);
            if (ev.rfind("data: ", 0) == 0) ev.erase(0, 6);
            if (ev == "[DONE]")
                out_.done = true;
            else if (out_.done)
                out_.failure = "an event after [DONE]";
            else if (ev.rfind("{\"error\"", 0) == 0)
                out_.error_event = true;
            else
                ++out_.events;
        }
    }

    void fail(const std::string& why) {
        out_.failure = why;
        close();
    }

    void close() {
        beast::error_code ec;
        socket_.shutdown(tcp::socket::shutdown_both, ec);
        socket_.close(ec);
    }

    tcp::socket socket_;
    tcp::endpoint ep_;
    const std::string& request_;
    SwarmOutcome& out_;
    beast::flat_buffer buf_;
    bhttp::response_parser<bhttp::string_body> parser_;
    std::string pending_;
};

}  // namespace swarm_detail

// POSTs `body` to 127.0.0.1:port `target` on `n` connections at once and waits for every answer.
inline std::vector<SwarmOutcome> run_swarm(int port, const std::string& target, const std::string& body, int n) {
    namespace net = swarm_detail::net;
    const std::string request = "POST " + target +
                                " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                "Content-Length: " +
                                std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    std::vector<SwarmOutcome> out(static_cast<size_t>(n));
    net::io_context ioc;
    const swarm_detail::tcp::endpoint ep(net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port));
    for (auto& o : out) std::make_shared<swarm_detail::Call>(ioc, ep, request, o)->start();
    ioc.run();
    return out;
}

}  // namespace loom::test
