// Request framing checks, request conversion, routing and response heads (see http_message.h).
#include "http/http_message.h"

#include <algorithm>
#include <cctype>
#include <string_view>
#include <vector>

namespace loom::http {

namespace beast = boost::beast;
namespace bhttp = beast::http;

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// A client's header value quoted in a message, cut short.
std::string quoted(std::string_view v) {
    constexpr size_t kMax = 64;
    return "'" + std::string(v.substr(0, kMax)) + (v.size() > kMax ? "...'" : "'");
}

std::string transfer_encoding_problem(const bhttp::request_header<>& head) {
    const size_t n = head.count(bhttp::field::transfer_encoding);
    if (n == 0) return {};
    if (head.version() < 11) return "Transfer-Encoding is not allowed in an HTTP/1.0 request";
    if (n > 1) return "more than one Transfer-Encoding header";
    const std::string_view value = trim(head[bhttp::field::transfer_encoding]);
    if (!beast::iequals(value, "chunked"))
        return "unsupported Transfer-Encoding " + quoted(value) + " (only 'chunked' is accepted)";
    if (head.count(bhttp::field::content_length) > 0) return "both Transfer-Encoding and Content-Length";
    return {};
}

}  // namespace

std::string HttpRequest::header(std::string_view name) const {
    const std::string key = lower(name);
    for (const auto& [k, v] : headers)
        if (k == key) return v;
    return {};
}

void limit_parser(RequestParser& parser, const HttpLimits& limits) {
    parser.body_limit(limits.body_bytes);
    parser.header_limit(static_cast<uint32_t>(limits.header_bytes));
}

std::string framing_problem(const bhttp::request_header<>& head) {
    if (std::string te = transfer_encoding_problem(head); !te.empty()) return te;
    const size_t hosts = head.count(bhttp::field::host);
    if (hosts > 1) return "more than one Host header";
    if (hosts == 0 && head.version() >= 11) return "an HTTP/1.1 request needs a Host header";
    return {};
}

std::optional<HttpResponse> read_failure_response(beast::error_code ec, const HttpLimits& limits) {
    if (ec == bhttp::error::body_limit)
        return error_response(413, "the request body exceeds " + std::to_string(limits.body_bytes) + " bytes",
                              "invalid_request_error");
    if (ec == bhttp::error::header_limit)
        return error_response(431, "the request head exceeds " + std::to_string(limits.header_bytes) + " bytes",
                              "invalid_request_error");
    // Beast itself refuses a second Transfer-Encoding: chunked and one beside Content-Length.
    if (ec == bhttp::error::bad_transfer_encoding || ec == bhttp::error::bad_content_length)
        return error_response(400,
                              "malformed HTTP request: " + ec.message() +
                                  " (conflicting or repeated Transfer-Encoding or Content-Length)",
                              "invalid_request_error");
    if (ec && ec.category() == bhttp::make_error_code(bhttp::error::end_of_stream).category() &&
        ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message)
        return error_response(400, "malformed HTTP request: " + ec.message(), "invalid_request_error");
    return std::nullopt;
}

HttpRequest to_http_request(const BeastRequest& msg, std::string peer) {
    HttpRequest req;
    req.method = std::string(msg.method_string());
    const std::string_view target = msg.target();
    const size_t q = target.find('?');
    req.path = std::string(target.substr(0, q));
    if (q != std::string_view::npos) req.query = std::string(target.substr(q + 1));
    for (const auto& field : msg) req.headers.emplace_back(lower(field.name_string()), std::string(field.value()));
    req.body = msg.body();
    req.peer = std::move(peer);
    return req;
}

HttpResponse dispatch(const RouteTable& routes, const HttpRequest& req) {
    const std::string method = req.method == "HEAD" ? "GET" : req.method;
    std::vector<std::pair<const std::string*, const HttpServer::Handler*>> here;  // (method, handler)
    for (const auto& [key, handler] : routes.exact)
        if (key.first == req.path) here.emplace_back(&key.second, &handler);
    if (here.empty())
        for (const auto& [key, handler] : routes.prefix)
            if (req.path.size() > key.first.size() && req.path.starts_with(key.first))
                here.emplace_back(&key.second, &handler);
    std::string allowed;
    for (const auto& [m, handler] : here) {
        if (*m == method) return (*handler)(req);
        allowed += (allowed.empty() ? "" : ", ") + *m;
        if (*m == "GET") allowed += ", HEAD";
    }
    if (allowed.empty()) return error_response(404, "no route " + req.path, "not_found_error");
    HttpResponse r = error_response(405, req.method + " is not allowed on " + req.path + " (allowed: " + allowed + ")",
                                    "invalid_request_error");
    r.headers.emplace_back("Allow", allowed);
    return r;
}

bhttp::response<bhttp::string_body> whole_response(HttpResponse r, bool keep_alive, bool head, unsigned request_version,
                                                   std::string_view server_name) {
    bhttp::response<bhttp::string_body> res(static_cast<bhttp::status>(r.status), 11);
    res.set(bhttp::field::server, server_name);
    res.set(bhttp::field::content_type, r.content_type);
    for (const auto& [k, v] : r.headers) res.set(k, v);
    res.keep_alive(keep_alive);
    if (keep_alive && request_version < 11) res.set(bhttp::field::connection, "keep-alive");
    res.body() = std::move(r.body);
    res.prepare_payload();
    if (head) res.body().clear();  // Content-Length stays the GET body's
    return res;
}

bhttp::response<bhttp::empty_body> stream_head(const HttpResponse& r, bool keep_alive, unsigned request_version,
                                               std::string_view server_name) {
    bhttp::response<bhttp::empty_body> res(static_cast<bhttp::status>(r.status), 11);
    res.set(bhttp::field::server, server_name);
    res.set(bhttp::field::content_type, r.content_type);
    res.set(bhttp::field::cache_control, "no-cache");
    for (const auto& [k, v] : r.headers) res.set(k, v);
    const bool chunked = request_version >= 11;
    res.keep_alive(keep_alive && chunked);
    res.chunked(chunked);
    return res;
}

}  // namespace loom::http
