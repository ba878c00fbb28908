// The dashboard's two routes: the embedded page (dashboard_page.cpp, generated from
// dashboard/index.html) and the state it polls every second.
#include "orchestrator/dashboard.h"

#include <chrono>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "orchestrator/worker_status_json.h"

namespace loom::orchestrator {

extern const std::string_view kDashboardPage;  // dashboard_page.cpp

using http::HttpResponse;
using nlohmann::json;

HttpResponse dashboard_page() {
    HttpResponse r;
    r.content_type = "text/html; charset=utf-8";
    r.body = std::string(kDashboardPage);
    // The page's own inline script and style, and fetches to this origin: nothing else runs or loads.
    r.headers = {{"Content-Security-Policy",
                  "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
                  "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"},
                 {"X-Content-Type-Options", "nosniff"},
                 {"Referrer-Policy", "no-referrer"},
                 {"Cache-Control", "no-store"}};
    return r;
}

HttpResponse dashboard_state(const WorkerPool& pool, const RequestLog& requests, const json& registry) {
    json workers = json::array();
    json models = json::array();
    std::set<std::string> seen;
    for (const WorkerStatus& w : pool.status()) {
        workers.push_back(worker_status_json(w));
        if (w.state == WorkerState::ready && !w.model.empty() && seen.insert(w.model).second) models.push_back(w.model);
    }
    const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    HttpResponse r = http::json_response(200, {{"time", now},
                                               {"workers", workers},
                                               {"models", models},
                                               {"throughput", requests.throughput()},
                                               {"requests", requests.recent()},
                                               {"registry", registry}});
    r.headers.emplace_back("Cache-Control", "no-store");
    return r;
}

}  // namespace loom::orchestrator
