// Worker URL parsing and the routing policies' names.
#include "orchestrator/options.h"

#include "http/url.h"

namespace loom::orchestrator {

const char* routing_name(Routing r) {
    switch (r) {
        case Routing::least_load: return "least-load";
        case Routing::round_robin: return "round-robin";
        case Routing::prefix: return "prefix";
    }
    return "prefix";
}

const char* transport_name(Transport t) { return t == Transport::mux ? "mux" : "http"; }

WorkerUrl parse_worker_url(const std::string& url) {
    try {
        http::HostPort u = http::parse_http_url(url);
        return WorkerUrl{std::move(u.host), u.port, std::move(u.text)};
    } catch (const std::invalid_argument& e) {
        throw BadWorkerUrl("--worker '" + url + "': " + e.what() + " (expected http://HOST:PORT)");
    }
}

}  // namespace loom::orchestrator
