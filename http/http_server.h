// loom's HTTP/1.1 server, shared by its daemons (Boost.Beast, asynchronous): routing, size limits and timeouts,
// strict request framing, keep-alive, responses produced over time (chunked SSE streams, unchunked
// to HTTP/1.0 clients, or whole bodies that arrive later) with write backpressure, client-disconnect
// detection, and accept retries that back off when descriptors run out. No Beast types appear here.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace loom::http {

struct HttpLimits {
    size_t body_bytes = 1 << 20;                        // larger bodies: 413
    size_t header_bytes = 16 << 10;                     // larger request heads: 431
    std::chrono::milliseconds request_timeout{30'000};  // to receive one whole request (idle keep-alive included)
    std::chrono::milliseconds write_timeout{30'000};    // to send one piece of a response to a slow reader
    size_t pipelined_bytes = 64 << 10;                  // bytes a client may send ahead while its response streams
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
    std::string method;                                        // "GET", "POST", ...
    std::string path;                                          // the target without its query
    std::string query;                                         // after '?', undecoded
    std::vector<std::pair<std::string, std::string>> headers;  // names in lower case
    std::string body;
    std::string peer;  // "address:port" of the client

    // The first header with this name (case-insensitive), or "" when absent.
    std::string header(std::string_view name) const;
};

class ResponseProducer;

struct HttpResponse {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;  // extra headers (Retry-After, ...)
    // Set: the response comes from the producer. stream == true sends status, content type and
    // headers now and the body as chunks while it is produced; stream == false sends the producer's
    // whole response when it is done (status, type and body here are then unused). A producer's whole
    // response that itself has a producer and stream == true starts a stream then (a proxy that
    // must learn its upstream's status before it can choose between an error and a stream).
    std::shared_ptr<ResponseProducer> producer;
    bool stream = false;
};

// A response that becomes available over time (a generation). The server polls it from the
// connection's strand only; start, poll and abandoned are never called concurrently.
class ResponseProducer {
public:
    virtual ~ResponseProducer() = default;

    // Called once before the first poll. notify() may be called from any thread, any number of
    // times, whenever poll() may have something new; it stays safe to call after the connection ended.
    virtual void start(std::function<void()> notify) = 0;

    struct Progress {
        std::string data;    // streams: body bytes ready to send (may be empty)
        bool done = false;   // nothing will follow (streams: after `data`)
        HttpResponse whole;  // whole responses, with done: what to send
    };
    // Non-blocking. The server polls again after sending `data` (backpressure: a stream is pulled
    // only as fast as the client reads it) and after every notify().
    virtual Progress poll() = 0;

    // The connection ended before done: the client went away, a write failed or timed out, or the
    // server is stopping. Called at most once; poll() is not called again.
    virtual void abandoned() = 0;
};

class HttpServer {
public:
    // Runs on the server's threads; must not block for long (generation goes through a producer).
    using Handler = std::function<HttpResponse(const HttpRequest&)>;

    // `name` is sent as every response's Server header ("loom-worker", "loom-orchestrator").
    explicit HttpServer(std::string name, HttpLimits limits = {});
    ~HttpServer();  // stop() if still running
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // Exact-path routes; before listen(). A GET route answers HEAD too (its head, no body).
    // Unknown paths answer 404, a known path with another method 405 with Allow (both in the
    // {"error": {...}} shape).
    void route(const std::string& method, const std::string& path, Handler handler);
    // Paths that start with `prefix` (such as "/v1/models/" for /v1/models/{id}) and have no exact route.
    void route_prefix(const std::string& method, const std::string& prefix, Handler handler);

    // Takes upgrades to loom-mux/1 (many requests over one connection, docs/API.md) on GET /mux:
    // each request it carries goes through the routes above. Before start().
    void enable_mux();

    // Raises the soft descriptor limit to the hard one (logged), binds and listens (port 0: any
    // free port); returns the bound port. Throws std::runtime_error naming the address when it
    // cannot bind.
    uint16_t listen(const std::string& host, uint16_t port);

    // Starts accepting on `threads` threads, each with an io_context of its own; connections are
    // spread over them in turn.
    void start(int threads);

    // Stops accepting new connections; open ones are served to their end.
    void stop_accepting();

    // Graceful stop: stops accepting, closes idle keep-alive connections and connections whose
    // response is complete, waits up to `grace` for in-flight responses, then stops the threads
    // (responses still unfinished are abandoned).
    void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(0));

    // Connections open now.
    int connections() const;

private:
    friend class Session;  // one connection (http_server.cpp)
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

// The io_context of the server thread this runs on (in a handler, or a producer's start and
// poll), null on any other thread. Work a handler starts on it runs on its connection's thread.
boost::asio::io_context* serving_io_context();

// A JSON body with this status (invalid UTF-8 in strings replaced by U+FFFD).
HttpResponse json_response(int status, const nlohmann::json& body);

// {"error": {"message", "type", "param", "code"}} with status and content type set; param and code
// are null when empty.
HttpResponse error_response(int status, const std::string& message, const std::string& type,
                            const std::string& param = {}, const std::string& code = {});

}  // namespace loom::http
