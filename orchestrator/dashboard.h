// The dashboard: GET / (a page built into the binary) and GET /dashboard/state (the JSON it polls:
// workers, tokens/s per second, recent requests, models).
#pragma once

#include <nlohmann/json.hpp>

#include "http/http_server.h"
#include "orchestrator/request_log.h"
#include "orchestrator/worker_pool.h"

namespace loom::orchestrator {

// The page, with headers that keep it from loading anything but this orchestrator's own routes.
http::HttpResponse dashboard_page();

// {"time", "workers":[…, "vram_bytes":{purpose: {reserved, used}}], "models":[…], "throughput":{…}, "requests":[…],
//  "registry": `registry`} (the configured models as /admin/models lists them; null when none).
http::HttpResponse dashboard_state(const WorkerPool& pool, const RequestLog& requests,
                                   const nlohmann::json& registry = nullptr);

}  // namespace loom::orchestrator
