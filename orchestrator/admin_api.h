// The admin API: GET /admin/workers (every worker with its origin, process and load) and
// POST /admin/workers/{id}/drain and /undrain, behind --admin-key.
#pragma once

#include <string>

#include "http/api_keys.h"
#include "http/http_server.h"
#include "orchestrator/supervisor.h"
#include "orchestrator/worker_pool.h"

namespace loom::orchestrator {

class AdminApi {
public:
    // `supervisor` may be null (nothing spawned). Without an admin key the routes answer only when
    // the orchestrator listens on a loopback address (`listen_host`), else 403.
    AdminApi(WorkerPool& pool, const Supervisor* supervisor, std::string admin_key, const std::string& listen_host);

    // Registers the routes; this object must outlive the server.
    void add_routes(http::HttpServer& server);
    // `h` behind the admin key (or the loopback rule), for admin routes registered elsewhere.
    http::HttpServer::Handler guarded(http::HttpServer::Handler h) const;

private:
    http::HttpResponse workers() const;
    http::HttpResponse drain(const http::HttpRequest& req);

    WorkerPool& pool_;
    const Supervisor* supervisor_;
    http::ApiKeys key_;
    bool loopback_;
};

}  // namespace loom::orchestrator
