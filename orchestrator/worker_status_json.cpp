// worker_status_json: a WorkerStatus written out once for every endpoint that lists workers.
#include "orchestrator/worker_status_json.h"

namespace loom::orchestrator {

using nlohmann::json;

json worker_status_json(const WorkerStatus& w) {
    json vram_bytes = json::object();
    for (const VramUse& u : w.vram) vram_bytes[u.purpose] = {{"reserved", u.reserved}, {"used", u.used}};
    return {{"id", w.id},
            {"url", w.url},
            {"origin", w.origin},
            {"state", state_name(w.state)},
            {"drained", w.drained},
            {"model", w.model},
            {"backend", w.backend},
            {"device", w.device},
            {"device_index", w.device_index >= 0 ? json(w.device_index) : json()},
            {"device_uuid", w.device_uuid.empty() ? json() : json(w.device_uuid)},
            {"running", w.running},
            {"waiting", w.waiting},
            {"context_size", w.context_size},
            {"sequences_max", w.sequences_max},
            {"requests_here", w.requests_here},
            {"outstanding_tokens", w.outstanding_tokens},
            {"vram_bytes", vram_bytes}};
}

}  // namespace loom::orchestrator
