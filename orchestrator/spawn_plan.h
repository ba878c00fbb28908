// What --spawn starts: the worker binary, the devices, and each spawned worker's command line.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "orchestrator/options.h"

namespace loom::orchestrator {

// Spawn settings that cannot work (a missing binary or model, no GPU, a flag the orchestrator sets).
class BadSpawn : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// One argv per worker: `--gpu G` for each GPU (cuda) or `cpu_workers` CPU workers, each on
// 127.0.0.1 with --port 0 and --log info (the supervisor reads its "listening on" line), followed by
// the worker_args. Throws BadSpawn.
std::vector<std::vector<std::string>> spawn_commands(const SpawnOptions& o);

// The worker binary to start (checked executable, with the worker_args checked). Throws BadSpawn.
std::string worker_binary(const SpawnOptions& o);
// Where workers go: the GPUs (--gpus, else every visible one) for cuda, one "" per --cpu-workers for
// cpu. Throws BadSpawn.
std::vector<std::string> spawn_devices(const SpawnOptions& o);
// One worker's argv: `bin --model MODEL --backend B [--gpu DEVICE]` on 127.0.0.1, --port 0, --log
// info, then `extra`, then the worker_args.
std::vector<std::string> worker_command(const SpawnOptions& o, const std::string& bin, const std::string& model,
                                        const std::string& device, const std::vector<std::string>& extra);

// The GPUs a CUDA program started from here sees: CUDA_VISIBLE_DEVICES's entries when it is set,
// else /proc/driver/nvidia/gpus's, else the lines of `nvidia-smi -L` (0 when none of them says).
int count_visible_gpus();

}  // namespace loom::orchestrator
