// Worker URL parsing and the routing policies' names.
#include "orchestrator/options.h"

#include <algorithm>
#include <cctype>

namespace loom::orchestrator {

const char* routing_name(Routing r) {
    switch (r) {
        case Routing::least_load: return "least-load";
        case Routing::round_robin: return "round-robin";
        case Routing::prefix: return "prefix";
    }
    return "prefix";
}

WorkerUrl parse_worker_url(const std::string& url) {
    const std::string scheme = "http://";
    const auto bad = [&](const std::string& why) {
        return BadWorkerUrl("--worker '" + url + "': " + why + " (expected http://HOST:PORT)");
    };
    if (url.rfind(scheme, 0) != 0) throw bad("not an http:// URL");
    std::string rest = url.substr(scheme.size());
    if (!rest.empty() && rest.back() == '/') rest.pop_back();
    if (rest.find('/') != std::string::npos) throw bad("a worker URL has no path");
    const size_t colon = rest.rfind(':');
    if (colon == std::string::npos || colon == 0) throw bad("no host and port");
    const std::string host = rest.substr(0, colon), port = rest.substr(colon + 1);
    if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), [](unsigned char c) {
            return std::isdigit(c);
        }))
        throw bad("the port is not a number");
    const int p = std::stoi(port);
    if (p < 1 || p > 65535) throw bad("the port is not in 1..65535");
    return WorkerUrl{host, static_cast<uint16_t>(p), scheme + host + ":" + port};
}

}  // namespace loom::orchestrator
