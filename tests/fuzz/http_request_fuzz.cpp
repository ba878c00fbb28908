// libFuzzer target: any bytes, taken as what one client sends on a connection, go through the
// server's own request handling (worker/http_message.h): Beast's parser with HttpLimits' defaults,
// the framing checks, conversion to HttpRequest, routing, and the response as it would be sent;
// pipelined requests in turn until the connection would close. Nothing may crash.
#include <boost/asio/buffer.hpp>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <string_view>

#include "http/http_message.h"

namespace {

using namespace loom::http;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace net = boost::asio;

const HttpLimits kLimits;

HttpResponse json_response(const nlohmann::json& j) {
    HttpResponse r;
    r.body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return r;
}

// A small table shaped like the worker's: open GET routes, a guarded one, JSON POST routes.
const RouteTable& routes() {
    static const RouteTable table = [] {
        RouteTable t;
        t.exact[{"/health", "GET"}] = [](const HttpRequest&) { return json_response({{"status", "ok"}}); };
        t.exact[{"/v1/models", "GET"}] = [](const HttpRequest& req) {
            if (req.header("authorization") != "Bearer k")
                return error_response(401, "missing or wrong API key", "authentication_error");
            return json_response({{"object", "list"}, {"query", req.query}});
        };
        t.exact[{"/v1/chat/completions", "POST"}] = [](const HttpRequest& req) {
            const auto body = nlohmann::json::parse(req.body, nullptr, false);
            if (!body.is_object()) return error_response(400, "the body is not a JSON object", "invalid_request_error");
            HttpResponse r = json_response(body);
            r.stream = body.value("stream", false) == true;
            return r;
        };
        t.prefix[{"/v1/models/", "GET"}] = [](const HttpRequest& req) { return json_response({{"id", req.path}}); };
        t.exact[{"/tokenize", "POST"}] = [](const HttpRequest& req) {
            return json_response({{"count", req.body.size()}});
        };
        return t;
    }();
    return table;
}

// The response bytes as the server would write them; HEAD responses must end with the head.
void send(HttpResponse r, bool keep_alive, bool head, unsigned version) {
    std::ostringstream out;
    if (r.stream) {
        const auto res = stream_head(r, keep_alive, version, "loom-fuzz");
        if (version < 11 && (res.chunked() || res.keep_alive())) std::abort();
        out << res;
        return;
    }
    out << whole_response(std::move(r), keep_alive, head, version, "loom-fuzz");
    const std::string bytes = out.str();
    if (head && bytes.compare(bytes.size() - 4, 4, "\r\n\r\n") != 0) std::abort();
}

// Feeds `in` to the parser until `done()`; at the end of the input the client has closed.
template <class Done>
beast::error_code feed(RequestParser& parser, std::string_view& in, Done done) {
    beast::error_code ec;
    while (!done()) {
        const size_t n = in.empty() ? 0 : parser.put(net::buffer(in.data(), in.size()), ec);
        in.remove_prefix(n);
        if (ec && ec != bhttp::error::need_more) return ec;
        ec = {};
        if (n > 0) continue;
        parser.put_eof(ec);
        if (!ec && !done()) ec = bhttp::error::partial_message;
        return ec;
    }
    return ec;
}

// One request from the front of `in`, as a session serves it; false when the connection closes.
bool serve_one(std::string_view& in) {
    if (in.empty()) return false;  // the client closed between requests
    RequestParser parser;
    limit_parser(parser, kLimits);
    const auto failed = [](beast::error_code ec) {
        if (auto answer = read_failure_response(ec, kLimits)) send(std::move(*answer), false, false, 11);
        return false;
    };
    if (auto ec = feed(parser, in, [&] { return parser.is_header_done(); })) return failed(ec);
    const unsigned version = parser.get().version();
    if (const std::string problem = framing_problem(parser.get()); !problem.empty()) {
        send(error_response(400, "malformed HTTP request: " + problem, "invalid_request_error"), false, false, version);
        return false;
    }
    if (auto ec = feed(parser, in, [&] { return parser.is_done(); })) return failed(ec);
    const HttpRequest req = to_http_request(parser.get(), "127.0.0.1:1");
    const bool keep_alive = parser.get().keep_alive();
    HttpResponse r;
    try {  // as the session does: a handler that throws is a 500
        r = dispatch(routes(), req);
    } catch (const std::exception& e) {
        r = error_response(500, std::string("internal error: ") + e.what(), "server_error");
    }
    const bool closes = r.stream && version < 11;
    send(std::move(r), keep_alive, req.method == "HEAD", version);
    return keep_alive && !closes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    for (int i = 0; i < 64 && serve_one(in); ++i) {}
    return 0;
}
