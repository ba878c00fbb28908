// Request framing shared by HttpServer and its fuzz target (Beast types allowed here): the parser's
// limits, the RFC 9112 framing checks, conversion to HttpRequest, routing and the response heads.
#pragma once

#include <boost/beast/core/error.hpp>
#include <boost/beast/http.hpp>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "http/http_server.h"

namespace loom::http {

using RequestParser = boost::beast::http::request_parser<boost::beast::http::string_body>;
using BeastRequest = boost::beast::http::request<boost::beast::http::string_body>;
struct RouteTable {
    std::map<std::pair<std::string, std::string>, HttpServer::Handler> exact;   // (path, method)
    std::map<std::pair<std::string, std::string>, HttpServer::Handler> prefix;  // (path prefix, method)
};

// Applies the server's body and head limits to a fresh parser.
void limit_parser(RequestParser& parser, const HttpLimits& limits);

// Why a request head cannot be framed safely, or "" when it can: a Transfer-Encoding other than a
// single "chunked" (or one beside Content-Length, or in HTTP/1.0), an HTTP/1.1 request without
// Host, more than one Host. The server answers 400 and closes: the body's end is unknown.
std::string framing_problem(const boost::beast::http::request_header<>& head);

// The answer to a failed read: 413 (body limit), 431 (head limit), 400 (malformed bytes); nullopt
// where nothing can be answered (end of stream, timeout, reset).
std::optional<HttpResponse> read_failure_response(boost::beast::error_code ec, const HttpLimits& limits);

// The parsed message as handlers see it: method, path and query apart, header names in lower case.
HttpRequest to_http_request(const BeastRequest& msg, std::string peer);

// A path's exact routes, else those of the prefixes it extends; HEAD runs the GET route. Unknown
// paths: 404; a known path with another method: 405 with Allow.
HttpResponse dispatch(const RouteTable& routes, const HttpRequest& req);

// A whole response as sent. HEAD: the same head (Content-Length of the body) without the body.
// HTTP/1.0 clients that asked for keep-alive are told so.
boost::beast::http::response<boost::beast::http::string_body> whole_response(HttpResponse r, bool keep_alive, bool head,
                                                                             unsigned request_version,
                                                                             std::string_view server_name);

// The head of a streamed response: chunked for HTTP/1.1 clients; HTTP/1.0 clients get the body
// unframed, delimited by the connection closing (RFC 9112 section 6.1), so never keep-alive.
boost::beast::http::response<boost::beast::http::empty_body> stream_head(const HttpResponse& r, bool keep_alive,
                                                                         unsigned request_version,
                                                                         std::string_view server_name);

}  // namespace loom::http
