// One connection to a worker (private to upstream.cpp and connection_pool.cpp): the Beast stream on
// its strand, and since when it is idle in the pool.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>

namespace loom::orchestrator {

struct UpstreamConnection {
    // `ex`: a strand of the io_context the connection belongs to.
    explicit UpstreamConnection(const boost::asio::any_io_executor& ex) : stream(ex) {}

    boost::beast::tcp_stream stream;
    std::chrono::steady_clock::time_point idle_since;

    // Whether the worker still holds its end: nothing unread, no end of stream (a non-blocking peek;
    // called only while no operation is pending on the socket).
    bool open();
};

}  // namespace loom::orchestrator
