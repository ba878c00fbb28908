// How the orchestrator reaches its workers: over loom-mux/1 (one connection per worker and server
// thread carries every call made there, so 10,000 client streams need 10,000 descriptors, not
// 20,000) or over HTTP/1.1 with kept-alive connections; a worker that refuses the upgrade gets HTTP.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>

#include "orchestrator/upstream.h"

namespace loom::orchestrator {

class Upstreams {
public:
    explicit Upstreams(Transport transport);
    ~Upstreams();
    Upstreams(const Upstreams&) = delete;
    Upstreams& operator=(const Upstreams&) = delete;

    // As call_upstream (the same handlers, in the same order); the call runs on `ioc`.
    std::shared_ptr<UpstreamCall> call(boost::asio::io_context& ioc, UpstreamRequest request,
                                       UpstreamHandlers handlers);

    // The HTTP pool's idle sweep on `ioc`; stop() closes every connection and ends the sweep. Destroy
    // this before the io_contexts its connections belong to.
    void start(boost::asio::io_context& ioc);
    void stop();

    // Calls by transport, open mux connections, refused upgrades and the HTTP pool's figures, in
    // Prometheus' text format.
    std::string render_metrics() const;

    struct Impl;  // mux_upstream.cpp

private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace loom::orchestrator
