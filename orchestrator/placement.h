// What placement counts on a device besides the registry's own estimates: the workers --spawn
// started there (resident for the orchestrator's life) and the memory workers really report.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "orchestrator/options.h"
#include "orchestrator/worker_pool.h"

namespace loom::orchestrator {

// A worker that is not the registry's but sits on one of its devices.
struct Resident {
    std::string worker_id;
    std::string device;     // a placement device id ("0", a GPU UUID, "cpu0")
    uint64_t estimate = 0;  // counted until the worker reports its memory
};

// The placement devices' ids, in spawn_devices' order: the GPU as --gpus names it, or "cpuN" for the
// N-th CPU stand-in. Throws BadSpawn.
std::vector<std::string> placement_device_ids(const SpawnOptions& spawn);

// --spawn's workers, `worker_ids[i]` started on the i-th of spawn_devices(spawn): each estimated from
// the spawned model's GGUF for the --ctx and --max-seqs its worker_args give (the worker's defaults
// otherwise), or the file's size when the estimate cannot be made.
std::vector<Resident> spawned_residents(const SpawnOptions& spawn, const std::vector<std::string>& worker_ids);

// The bytes a worker's /health says it holds: the larger of reserved and used, summed over purposes
// (0 when it reports none).
uint64_t reported_bytes(const WorkerStatus& w);

}  // namespace loom::orchestrator
