// An asynchronous HTTP/1.1 call to a worker on an io_context of the orchestrator: the response head,
// then its body piece by piece as it arrives (SSE streams are relayed, never buffered whole).
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "http/http_server.h"
#include "orchestrator/connection_pool.h"
#include "orchestrator/options.h"

namespace loom::orchestrator {

struct UpstreamRequest {
    WorkerUrl worker;
    std::string method;
    std::string target;
    std::string body;
    http::HttpHeaders headers;  // extra headers (Authorization, ...)
    std::chrono::milliseconds connect_timeout{2000};
    // The whole exchange's limit; zero for generations, which may stream for as long as they need
    // (a worker that dies closes its connections, which ends the call).
    std::chrono::milliseconds total_timeout{0};
};

// How a call ended: `complete` when the whole response arrived; otherwise `error` says why (refused,
// reset, timeout, the connection closed before the body's end).
struct UpstreamEnd {
    bool complete = false;
    bool timed_out = false;  // the worker did not answer in time (it may only be busy)
    std::string error;
};

// Called on `ioc`'s threads, one call's handlers never concurrently, in this order:
// on_written at most once (the request is sent), on_head at most once, on_data any number of times,
// on_end exactly once (unless cancelled). Any may be empty.
struct UpstreamHandlers {
    std::function<void()> on_written;
    std::function<void(int status, const http::HttpHeaders& headers)> on_head;  // names in lower case
    std::function<void(std::string data)> on_data;
    std::function<void(const UpstreamEnd& end)> on_end;
};

class UpstreamCall {
public:
    virtual ~UpstreamCall() = default;
    // Closes the connection now (the worker sees its client leave) and calls no handler after.
    virtual void cancel() = 0;
};

// With a pool, the call reuses an idle connection to the worker when one is open (a reused one the
// worker closed meanwhile is replaced by a new one, once) and returns it when the response ended
// cleanly; without one, it connects and closes ("Connection: close").
std::shared_ptr<UpstreamCall> call_upstream(boost::asio::io_context& ioc, UpstreamRequest request,
                                            UpstreamHandlers handlers, ConnectionPool* pool = nullptr);

}  // namespace loom::orchestrator
