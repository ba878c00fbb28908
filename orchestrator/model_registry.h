// The model registry: configured models loaded on demand (a worker started through the supervisor on
// a device whose VRAM budget has room for the model's estimate), the least recently used idle model
// unloaded when none has room, idle models unloaded after their keep_alive, and /admin/models.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>
#include <nlohmann/json_fwd.hpp>

#include "gguf/memory_estimate.h"
#include "http/http_server.h"
#include "orchestrator/admission.h"
#include "orchestrator/model_specs.h"
#include "orchestrator/options.h"
#include "orchestrator/placement.h"
#include "orchestrator/supervisor.h"
#include "orchestrator/worker_pool.h"

namespace loom::orchestrator {

// A placement slot: a GPU (or, with --backend cpu, a CPU worker standing in for one) and the bytes
// of model estimates it may hold.
struct Device {
    std::string id;       // "0", a GPU UUID, or "cpu0"
    std::string gpu;      // --gpu for the worker ("" for CPU workers)
    uint64_t budget = 0;  // bytes
};

struct RegistryOptions {
    std::vector<ModelSpec> models;
    std::vector<Device> devices;
    SpawnOptions spawn;                               // backend, worker binary and arguments (its model is ignored)
    std::chrono::milliseconds load_wait{30'000};      // the longest a request waits for room
    std::chrono::milliseconds load_timeout{300'000};  // the longest a worker may take to become ready
    std::vector<Resident> residents;                  // other workers on the devices (--spawn's): their memory is taken
};

// The devices to place models on: spawn_devices' GPUs (or --cpu-workers stand-ins) each with
// `budget` bytes (0: the GPU's memory as nvidia-smi reports it; unlimited for CPU stand-ins).
// Throws BadSpawn.
std::vector<Device> placement_devices(const SpawnOptions& spawn, uint64_t budget);

class ModelRegistry {
public:
    // Estimates every model from its GGUF (std::runtime_error naming the model when one cannot be
    // read). Spawns through `supervisor`, which must outlive this object.
    ModelRegistry(boost::asio::io_context& ioc, WorkerPool& pool, Admission& admission, Supervisor& supervisor,
                  RegistryOptions o);
    ~ModelRegistry();

    void start();  // the 100 ms tick: placement, readiness, keep_alive, eviction
    void stop();

    bool configured(const std::string& name) const;
    std::vector<std::pair<std::string, std::string>> model_files() const;  // name, GGUF path

    // A request for `name` arrived (its `keep_alive`, when given, replaces the model's from now on):
    // its last use is now, and a load starts when no worker serves it.
    void requested(const std::string& name, std::optional<std::chrono::milliseconds> keep_alive);
    // For Admission::on_missing: true while `name` is configured and not ready (it is being loaded).
    bool will_load(const std::string& name) const;

    // /admin/models routes, behind `guard` (the admin key).
    void add_routes(http::HttpServer& server,
                    const std::function<http::HttpServer::Handler(http::HttpServer::Handler)>& guard);
    // Every model's state, placement, VRAM (estimate and real), last use and keep_alive, and the devices.
    nlohmann::json status_json() const;
    // For /health's worker entries: {"vram_estimate_bytes": {...}, "until": Unix seconds when its idle
    // model will be unloaded}, each null when the worker is not the registry's (or not idle).
    nlohmann::json worker_fields(const std::string& worker_id) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace loom::orchestrator
