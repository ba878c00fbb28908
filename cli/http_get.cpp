// The GET client behind `loom pull`: Boost.Beast over a tcp_stream (and Asio SSL when built with
// OpenSSL), each asynchronous step run to completion on a private io_context so every step has a timeout.
#include "cli/http_get.h"

#include <algorithm>
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <charconv>
#ifdef LOOM_HAVE_TLS
#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>
#endif

namespace loom::cli {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;

constexpr size_t kErrorBodyLimit = 64 * 1024;
constexpr size_t kStringBodyLimit = 64 * 1024 * 1024;

// Starts one asynchronous operation and runs the context until it completes.
template <class Start>
beast::error_code run_step(net::io_context& ioc, Start start) {
    beast::error_code result;
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    ioc.restart();
    ioc.run();
    return result;
}

void check(beast::error_code ec, const std::string& what, const Url& url) {
    if (ec) throw HttpError(what + " " + url.text() + ": " + ec.message());
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return s;
}

std::string host_header(const Url& url) {
    const bool default_port = (url.scheme == "http" && url.port == 80) || (url.scheme == "https" && url.port == 443);
    const std::string host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
    return default_port ? host : host + ":" + std::to_string(url.port);
}

// Where the body of the response goes: the sink for a 2xx when there is one, else `body` (capped).
void deliver(HttpResponse& r, const BodySink& sink, const char* data, size_t n) {
    const bool ok = r.status >= 200 && r.status < 300;
    if (ok && sink) return sink({data, n});
    const size_t cap = ok ? kStringBodyLimit : kErrorBodyLimit;
    if (ok && r.body.size() + n > cap) throw HttpError("response body larger than " + std::to_string(cap) + " bytes");
    r.body.append(data, std::min(n, cap - std::min(cap, r.body.size())));
}

template <class Stream>
HttpResponse exchange(net::io_context& ioc, Stream& stream, beast::tcp_stream& tcp_layer, const Url& url,
                      const HeaderList& headers, const BodySink& sink, const HeadHook& on_head,
                      std::chrono::seconds timeout) {
    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, url.target, 11};
    req.set(bhttp::field::host, host_header(url));
    req.set(bhttp::field::user_agent, "loom");
    req.set(bhttp::field::connection, "close");
    for (const auto& [name, value] : headers) req.set(name, value);
    tcp_layer.expires_after(timeout);
    check(run_step(ioc, [&](auto h) { bhttp::async_write(stream, req, std::move(h)); }), "sending the request to", url);

    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::buffer_body> parser;
    parser.body_limit(boost::none);
    parser.header_limit(64 * 1024);
    tcp_layer.expires_after(timeout);
    check(run_step(ioc, [&](auto h) { bhttp::async_read_header(stream, buffer, parser, std::move(h)); }),
          "reading the response of", url);
    HttpResponse r;
    r.status = static_cast<int>(parser.get().result_int());
    for (const auto& field : parser.get())
        r.headers[lower(std::string(field.name_string()))] = std::string(field.value());
    if (on_head) on_head(r);

    std::array<char, 64 * 1024> chunk;
    uint64_t received = 0;
    while (!parser.is_done()) {
        parser.get().body().data = chunk.data();
        parser.get().body().size = chunk.size();
        tcp_layer.expires_after(timeout);
        auto ec = run_step(ioc, [&](auto h) { bhttp::async_read(stream, buffer, parser, std::move(h)); });
        if (ec == bhttp::error::need_buffer) ec = {};
        const size_t n = chunk.size() - parser.get().body().size;
        deliver(r, sink, chunk.data(), n);
        received += n;
        if (ec)
            throw HttpError("the connection to " + host_header(url) + " ended after " + std::to_string(received) +
                            " bytes of the body: " + ec.message());
    }
    return r;
}

tcp::resolver::results_type resolve(net::io_context& ioc, const Url& url) {
    tcp::resolver resolver(ioc);
    tcp::resolver::results_type results;
    beast::error_code ec;
    resolver.async_resolve(url.host, std::to_string(url.port),
                           [&](beast::error_code e, tcp::resolver::results_type r) { ec = e, results = std::move(r); });
    ioc.restart();
    ioc.run();
    if (ec) throw HttpError("cannot resolve " + url.host + ": " + ec.message());
    return results;
}

void connect(net::io_context& ioc, beast::tcp_stream& stream, const Url& url, std::chrono::seconds timeout) {
    const auto endpoints = resolve(ioc, url);
    stream.expires_after(timeout);
    check(run_step(ioc, [&](auto h) { stream.async_connect(endpoints, std::move(h)); }), "cannot connect to", url);
}

#ifdef LOOM_HAVE_TLS
HttpResponse get_https(const Url& url, const HeaderList& headers, const BodySink& sink, const HeadHook& on_head,
                       std::chrono::seconds timeout) {
    net::io_context ioc;
    net::ssl::context ctx(net::ssl::context::tls_client);
    ctx.set_default_verify_paths();
    ctx.set_verify_mode(net::ssl::verify_peer);
    beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
    if (!SSL_set_tlsext_host_name(stream.native_handle(), url.host.c_str()))
        throw HttpError("TLS: cannot set the server name " + url.host);
    stream.set_verify_callback(net::ssl::host_name_verification(url.host));
    connect(ioc, beast::get_lowest_layer(stream), url, timeout);
    beast::get_lowest_layer(stream).expires_after(timeout);
    check(run_step(ioc, [&](auto h) { stream.async_handshake(net::ssl::stream_base::client, std::move(h)); }),
          "TLS handshake with", url);
    return exchange(ioc, stream, beast::get_lowest_layer(stream), url, headers, sink, on_head, timeout);
}
#endif

}  // namespace

std::string Url::text() const {
    const bool ipv6 = host.find(':') != std::string::npos;
    return scheme + "://" + (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + target;
}

const std::string* HttpResponse::header(const std::string& lower_name) const {
    const auto it = headers.find(lower_name);
    return it == headers.end() ? nullptr : &it->second;
}

Url parse_url(const std::string& text) {
    Url u;
    const auto sep = text.find("://");
    if (sep == std::string::npos) throw HttpError("URL '" + text + "' has no scheme (http:// or https://)");
    u.scheme = lower(text.substr(0, sep));
    if (u.scheme != "http" && u.scheme != "https")
        throw HttpError("URL '" + text + "': only http and https are supported");
    const auto path_at = text.find_first_of("/?#", sep + 3);
    std::string authority = text.substr(sep + 3, path_at == std::string::npos ? std::string::npos : path_at - sep - 3);
    u.target = path_at == std::string::npos ? "/" : text.substr(path_at);
    if (u.target.front() != '/') u.target.insert(0, "/");
    if (const auto hash = u.target.find('#'); hash != std::string::npos) u.target.erase(hash);
    if (authority.find('@') != std::string::npos)
        throw HttpError("URL '" + text + "': user names in URLs are not supported");
    std::string port;
    if (!authority.empty() && authority.front() == '[') {
        const auto close = authority.find(']');
        if (close == std::string::npos) throw HttpError("URL '" + text + "': unclosed '[' in the host");
        u.host = authority.substr(1, close - 1);
        if (close + 1 < authority.size() && authority[close + 1] == ':') port = authority.substr(close + 2);
    } else {
        const auto colon = authority.rfind(':');
        u.host = authority.substr(0, colon);
        if (colon != std::string::npos) port = authority.substr(colon + 1);
    }
    if (u.host.empty()) throw HttpError("URL '" + text + "' has no host");
    u.port = u.scheme == "https" ? 443 : 80;
    if (!port.empty()) {
        unsigned v = 0;
        const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
        if (ec != std::errc() || end != port.data() + port.size() || v == 0 || v > 65535)
            throw HttpError("URL '" + text + "': bad port '" + port + "'");
        u.port = static_cast<uint16_t>(v);
    }
    return u;
}

Url resolve_location(const Url& base, const std::string& location) {
    if (location.rfind("http://", 0) == 0 || location.rfind("https://", 0) == 0) return parse_url(location);
    if (location.rfind("//", 0) == 0) return parse_url(base.scheme + ":" + location);
    Url u = base;
    if (!location.empty() && location.front() == '/') {
        u.target = location;
    } else {
        const auto path_end = u.target.find('?');
        const auto slash = u.target.rfind('/', path_end);
        u.target = u.target.substr(0, slash + 1) + location;
    }
    return u;
}

HttpResponse http_get(const Url& url, const HeaderList& headers, const BodySink& sink, const HeadHook& on_head,
                      std::chrono::seconds timeout) {
    if (url.scheme == "https") {
#ifdef LOOM_HAVE_TLS
        return get_https(url, headers, sink, on_head, timeout);
#else
        throw HttpError("cannot fetch " + url.text() +
                        ": this loom was built without TLS (install OpenSSL's headers, e.g. libssl-dev, and rebuild)");
#endif
    }
    net::io_context ioc;
    beast::tcp_stream stream(ioc);
    connect(ioc, stream, url, timeout);
    return exchange(ioc, stream, stream, url, headers, sink, on_head, timeout);
}

bool tls_available() {
#ifdef LOOM_HAVE_TLS
    return true;
#else
    return false;
#endif
}

}  // namespace loom::cli
