// Worker URL parsing.
#include "orchestrator/options.h"

#include "http/url.h"

namespace loom::orchestrator {

WorkerUrl parse_worker_url(const std::string& url) {
    try {
        http::HostPort u = http::parse_http_url(url);
        return WorkerUrl{std::move(u.host), u.port, std::move(u.text)};
    } catch (const std::invalid_argument& e) {
        throw BadWorkerUrl("--worker '" + url + "': " + e.what() + " (expected http://HOST:PORT)");
    }
}

}  // namespace loom::orchestrator
