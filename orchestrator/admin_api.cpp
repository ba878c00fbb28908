// The admin routes: the workers' listing (pool and supervisor merged by id), drain and undrain.
#include "orchestrator/admin_api.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "orchestrator/worker_status_json.h"

namespace loom::orchestrator {

using http::error_response;
using http::HttpRequest;
using http::HttpResponse;
using http::json_response;
using nlohmann::json;

namespace {

bool is_loopback(const std::string& host) {
    return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

json process_fields(const SpawnedStatus& s) {
    return {{"pid", s.pid > 0 ? json(s.pid) : json()},
            {"process", s.state},
            {"restarts", s.restarts},
            {"last_exit", s.last_exit.empty() ? json() : json(s.last_exit)}};
}

}  // namespace

AdminApi::AdminApi(WorkerPool& pool, const Supervisor* supervisor, std::string admin_key,
                   const std::string& listen_host)
    : pool_(pool),
      supervisor_(supervisor),
      key_(admin_key.empty() ? std::vector<std::string>{} : std::vector<std::string>{std::move(admin_key)}),
      loopback_(is_loopback(listen_host)) {}

http::HttpServer::Handler AdminApi::guarded(http::HttpServer::Handler h) const {
    if (key_.required()) return key_.guarded(std::move(h));
    if (loopback_) return h;
    return [](const HttpRequest&) {
        return error_response(403, "the admin API needs --admin-key when the orchestrator listens beyond loopback",
                              "permission_error");
    };
}

void AdminApi::add_routes(http::HttpServer& server) {
    server.route("GET", "/admin/workers", guarded([this](const HttpRequest&) { return workers(); }));
    server.route_prefix("POST", "/admin/workers/", guarded([this](const HttpRequest& r) { return drain(r); }));
}

// Live workers from the pool; a spawned worker that is not listening now (starting, restarting,
// failed) from the supervisor alone.
HttpResponse AdminApi::workers() const {
    const std::vector<SpawnedStatus> spawned = supervisor_ ? supervisor_->status() : std::vector<SpawnedStatus>{};
    const auto process_of = [&](const std::string& id) {
        return std::find_if(spawned.begin(), spawned.end(), [&](const SpawnedStatus& s) { return s.id == id; });
    };
    json out = json::array();
    std::vector<std::string> listed;
    for (const WorkerStatus& w : pool_.status()) {
        json j = worker_status_json(w);
        if (const auto p = process_of(w.id); p != spawned.end()) j.update(process_fields(*p));
        out.push_back(std::move(j));
        listed.push_back(w.id);
    }
    const std::set<std::string> drained = pool_.drained_ids();
    for (const SpawnedStatus& s : spawned) {
        if (std::find(listed.begin(), listed.end(), s.id) != listed.end()) continue;
        json j = {{"id", s.id},
                  {"url", nullptr},
                  {"state", s.state},
                  {"origin", "spawned"},
                  {"drained", drained.contains(s.id)}};
        j.update(process_fields(s));
        out.push_back(std::move(j));
    }
    return json_response(200, {{"workers", out}});
}

// POST /admin/workers/{id}/drain or /undrain.
HttpResponse AdminApi::drain(const HttpRequest& req) {
    const std::string rest = req.path.substr(std::string("/admin/workers/").size());
    const size_t slash = rest.find('/');
    const std::string id = rest.substr(0, slash), action = slash == std::string::npos ? "" : rest.substr(slash + 1);
    if (action != "drain" && action != "undrain")
        return error_response(404, "POST /admin/workers/{id}/drain or /admin/workers/{id}/undrain", "not_found_error");
    bool known = false;
    for (const WorkerStatus& w : pool_.status()) known = known || w.id == id;
    if (supervisor_)
        for (const SpawnedStatus& s : supervisor_->status()) known = known || s.id == id;
    if (!known)
        return error_response(404, "no worker has the id '" + id + "' (see GET /admin/workers)", "not_found_error",
                              "id", "worker_not_found");
    const bool drained = action == "drain";
    pool_.set_drained(id, drained);
    spdlog::info("admin: worker {} {}", id, drained ? "drained: no new requests" : "undrained");
    return json_response(200, {{"id", id}, {"drained", drained}});
}

}  // namespace loom::orchestrator
