// Workers this orchestrator did not start (--worker, self-registered) that run on this host: the
// placement device each one's memory is on, so that placement counts it there as a spawned worker's.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "orchestrator/placement.h"
#include "orchestrator/worker_pool.h"

namespace loom::orchestrator {

// A URL host that names this host by loopback: 127.0.0.0/8, ::1 (bracketed or not, also as
// ::ffff:127.x.y.z) or localhost. Any other name or address is another host's as far as placement
// knows (no name is resolved: a guess would count a remote worker's memory here).
bool is_loopback_host(std::string_view host);

// A placement device as a worker's /health can name it.
struct DeviceIdentity {
    std::string id;    // the placement device's id ("0", a GPU UUID, "cpu0")
    std::string uuid;  // its GPU's UUID when known ("" for a CPU stand-in or a GPU not identified yet)
    bool cpu = false;  // a CPU stand-in (--backend cpu)
};

// True when --gpus names the GPU by UUID ("GPU-…", "MIG-…"), not by index.
bool names_gpu_by_uuid(const std::string& gpu);

// The placement device a worker this orchestrator did not start holds its memory on; "" when none
// can be named exactly: a worker on another host (its URL's host is not loopback), a CUDA worker
// whose /health device_uuid is no device's known UUID, a CPU worker unless there is exactly one
// CPU stand-in (stand-ins are slots, not hardware: with several, which one it stands on is unknowable).
std::string local_device(const WorkerStatus& w, const std::vector<DeviceIdentity>& devices);

// The workers among `workers` this orchestrator did not start (origin static or registered) that
// hold memory on one of `devices`: each at what its /health reports (`estimate`), once it reported
// some; an unhealthy one holds nothing (a worker that died freed its memory).
std::vector<Resident> local_residents(const std::vector<WorkerStatus>& workers,
                                      const std::vector<DeviceIdentity>& devices);

}  // namespace loom::orchestrator
