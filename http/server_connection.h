// What the connections of one HttpServer share (private to http/): its name, limits, routes and the
// set of live connections that stop() closes and waits for, whatever protocol they speak.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>

#include "http/http_message.h"
#include "http/http_server.h"

namespace loom::http {

// A connection stop() can reach: an HTTP/1.1 session or a mux session.
class ServerConnection : public std::enable_shared_from_this<ServerConnection> {
public:
    virtual ~ServerConnection() = default;
    // From stop(): close now when nothing is in flight, else as soon as the last response is sent.
    virtual void close_if_idle() = 0;
};

struct ServerContext {
    ServerContext(std::string n, HttpLimits l) : name(std::move(n)), limits(l) {}

    const std::string name;  // the Server header
    HttpLimits limits;
    RouteTable routes;
    std::string mux_path;  // where an Upgrade to loom-mux/1 is taken; "": nowhere
    std::atomic<bool> stopping{false};

    // The live connections (for stop()); declared before the io_contexts so they outlive the
    // handlers that the io_contexts destroy.
    mutable std::mutex sessions_mutex;
    std::condition_variable sessions_changed;
    std::unordered_set<ServerConnection*> sessions;

    void add(ServerConnection* c) {
        std::lock_guard lock(sessions_mutex);
        sessions.insert(c);
    }
    void remove(ServerConnection* c) {
        std::lock_guard lock(sessions_mutex);
        sessions.erase(c);
        sessions_changed.notify_all();
    }
};

}  // namespace loom::http
