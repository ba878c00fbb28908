// What placement counts on a device besides the registry's own estimates: the workers --spawn
// started there (resident for the orchestrator's life) and the memory workers really report.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
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
// the spawned model's GGUF for the --ctx, --max-seqs and --kv-type its worker_args give (the worker's
// defaults otherwise), or the file's size when the estimate cannot be made.
std::vector<Resident> spawned_residents(const SpawnOptions& spawn, const std::vector<std::string>& worker_ids);

// The bytes a worker's /health says it holds: the larger of reserved and used, summed over purposes
// (0 when it reports none).
uint64_t reported_bytes(const WorkerStatus& w);

// A GPU's memory as the driver reports it, for what other processes (not loom's workers) hold.
struct GpuMemory {
    uint64_t total = 0, used = 0;  // bytes
    uint64_t free() const { return total > used ? total - used : 0; }
};

// nvidia-smi's `memory.total,memory.used` line in MiB ("81559, 1024"); nullopt for anything else.
std::optional<GpuMemory> parse_gpu_memory(std::string_view csv_line);
// Asks nvidia-smi about GPU `gpu` (an index or UUID); nullopt when it cannot say (no driver, no GPU).
std::optional<GpuMemory> query_gpu_memory(const std::string& gpu);

}  // namespace loom::orchestrator
