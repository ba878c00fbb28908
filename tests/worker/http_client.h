// A small synchronous HTTP/1.1 client for the worker tests (Boost.Beast): whole requests, and SSE
// streams read event by event so a test can stop reading or drop the connection mid-stream.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace loom::test {

namespace http_client {
namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
}  // namespace http_client

struct HttpReply {
    int status = 0;
    std::map<std::string, std::string> headers;  // names in lower case
    std::string body;
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

inline http_client::http::request<http_client::http::string_body> make_request(const std::string& method,
                                                                               const std::string& target,
                                                                               const std::string& body,
                                                                               const HeaderList& headers) {
    namespace http = http_client::http;
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!body.empty() || method == "POST") {
        req.set(http::field::content_type, "application/json");
        req.body() = body;
    }
    for (const auto& [k, v] : headers) req.set(k, v);
    req.prepare_payload();
    return req;
}

template <class Fields>
std::map<std::string, std::string> lower_headers(const Fields& fields) {
    std::map<std::string, std::string> out;
    for (const auto& f : fields) {
        std::string name(f.name_string());
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        out[name] = std::string(f.value());
    }
    return out;
}

// One connection; requests on it reuse it (keep-alive). `host`: an IP address.
class HttpConnection {
public:
    explicit HttpConnection(int port, const std::string& host = "127.0.0.1") : socket_(ioc_) {
        socket_.connect({http_client::net::ip::make_address(host), static_cast<unsigned short>(port)});
    }

    HttpReply request(const std::string& method, const std::string& target, const std::string& body = {},
                      const HeaderList& headers = {}) {
        namespace http = http_client::http;
        http::write(socket_, make_request(method, target, body, headers));
        http::response_parser<http::string_body> parser;
        parser.body_limit(64 << 20);
        http::read(socket_, buffer_, parser);
        HttpReply r;
        r.status = parser.get().result_int();
        r.headers = lower_headers(parser.get());
        r.body = parser.get().body();
        return r;
    }

    // Sends a request without reading the answer (a client that leaves before it comes).
    void send(const std::string& method, const std::string& target, const std::string& body = {}) {
        http_client::http::write(socket_, make_request(method, target, body, {}));
    }

    void disconnect() {
        http_client::beast::error_code ec;
        socket_.shutdown(http_client::tcp::socket::shutdown_both, ec);
        socket_.close(ec);
    }

    // Sends raw bytes and reads one response (for malformed requests).
    HttpReply raw(const std::string& bytes) {
        namespace http = http_client::http;
        http_client::net::write(socket_, http_client::net::buffer(bytes));
        http::response_parser<http::string_body> parser;
        http::read(socket_, buffer_, parser);
        HttpReply r;
        r.status = parser.get().result_int();
        r.headers = lower_headers(parser.get());
        r.body = parser.get().body();
        return r;
    }

    // Whether the server closed the connection (a read sees EOF).
    bool closed_by_server() {
        http_client::beast::error_code ec;
        char c;
        socket_.read_some(http_client::net::buffer(&c, 1), ec);
        return ec == http_client::net::error::eof || ec == http_client::net::error::connection_reset;
    }

private:
    http_client::net::io_context ioc_;
    http_client::tcp::socket socket_;
    http_client::beast::flat_buffer buffer_;
};

inline HttpReply http_request(int port, const std::string& method, const std::string& target,
                              const std::string& body = {}, const HeaderList& headers = {}) {
    HttpConnection c(port);
    return c.request(method, target, body, headers);
}

// The same to another address than 127.0.0.1 (a network namespace's).
inline HttpReply http_request_to(const std::string& host, int port, const std::string& method,
                                 const std::string& target, const std::string& body = {}) {
    HttpConnection c(port, host);
    return c.request(method, target, body, {});
}

// A streaming response read one SSE event at a time.
class SseStream {
public:
    SseStream(int port, const std::string& target, const std::string& body, const HeaderList& headers = {},
              const std::string& host = "127.0.0.1")
        : socket_(ioc_) {
        namespace http = http_client::http;
        socket_.connect({http_client::net::ip::make_address(host), static_cast<unsigned short>(port)});
        http::write(socket_, make_request("POST", target, body, headers));
        http::read_header(socket_, buffer_, parser_);
        status_ = parser_.get().result_int();
        headers_ = lower_headers(parser_.get());
    }

    int status() const { return status_; }
    const std::map<std::string, std::string>& headers() const { return headers_; }
    // Every byte of the body read so far.
    const std::string& raw() const { return raw_; }

    // The data of the next event ("data: X\n\n" -> X), or nullopt when the body ended.
    std::optional<std::string> next() {
        namespace http = http_client::http;
        for (;;) {
            const size_t end = pending_.find("\n\n");
            if (end != std::string::npos) {
                std::string event = pending_.substr(0, end);
                pending_.erase(0, end + 2);
                if (event.rfind("data: ", 0) == 0) event.erase(0, 6);
                return event;
            }
            if (parser_.is_done()) return std::nullopt;
            char tmp[4096];
            parser_.get().body().data = tmp;
            parser_.get().body().size = sizeof tmp;
            http_client::beast::error_code ec;
            http::read_some(socket_, buffer_, parser_, ec);
            if (ec == http::error::need_buffer) ec = {};
            if (ec) throw http_client::beast::system_error(ec);
            const size_t got = sizeof tmp - parser_.get().body().size;
            pending_.append(tmp, got);
            raw_.append(tmp, got);
        }
    }

    // Drops the connection without reading the rest (a client that goes away).
    void disconnect() {
        http_client::beast::error_code ec;
        socket_.shutdown(http_client::tcp::socket::shutdown_both, ec);
        socket_.close(ec);
    }

private:
    http_client::net::io_context ioc_;
    http_client::tcp::socket socket_;
    http_client::beast::flat_buffer buffer_;
    http_client::http::response_parser<http_client::http::buffer_body> parser_;
    int status_ = 0;
    std::map<std::string, std::string> headers_;
    std::string pending_;
    std::string raw_;
};

}  // namespace loom::test
