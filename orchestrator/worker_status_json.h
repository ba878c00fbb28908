// One worker as JSON: the object /health, /admin/workers and /dashboard/state list for each worker.
#pragma once

#include <nlohmann/json.hpp>

#include "orchestrator/worker_pool.h"

namespace loom::orchestrator {

// Every WorkerStatus field; endpoints add their own beside them (/health tokens_per_s and the model
// registry's, /admin/workers a spawned worker's process), never fewer. `vram_bytes` is
// {purpose: {reserved, used}} as the worker's /health says it.
nlohmann::json worker_status_json(const WorkerStatus& w);

}  // namespace loom::orchestrator
