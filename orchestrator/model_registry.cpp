// The model registry's state machine: placement by VRAM estimate, readiness from the pool, keep_alive
// and LRU eviction, every 100 ms on the orchestrator's own io_context.
#include "orchestrator/model_registry.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "gguf/reader.h"
#include "http/url.h"
#include "orchestrator/local_workers.h"
#include "orchestrator/spawn_plan.h"

namespace loom::orchestrator {

using http::error_response;
using http::HttpRequest;
using http::HttpResponse;
using http::json_response;
using nlohmann::json;
using std::chrono::milliseconds;

namespace {

constexpr milliseconds kTick{100};
// How often nvidia-smi is asked about the GPUs' memory while a model waits for a device.
constexpr milliseconds kGpuQueryInterval{1'000};
// A model used this recently is not idle: a request may be between its arrival and its lease.
constexpr milliseconds kIdleGrace{300};
// An unloading worker still running after this gets SIGKILL (it had no requests left to drain).
constexpr milliseconds kUnloadGrace{10'000};
// The same for one stopped before it was ever ready: it has nothing to drain, and a worker still
// loading its model does not act on SIGTERM until the load ends (which may be never).
constexpr milliseconds kAbortGrace{1'000};
constexpr uint64_t kUnlimited = std::numeric_limits<uint64_t>::max();

std::shared_ptr<spdlog::logger> log() {
    if (auto l = spdlog::get("orchestrator")) return l;
    return spdlog::default_logger();
}

std::string mib(uint64_t bytes) {
    char s[48];
    std::snprintf(s, sizeof s, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
    return s;
}

double unix_seconds(std::chrono::system_clock::time_point t) {
    return std::chrono::duration<double>(t.time_since_epoch()).count();
}

enum class ReplicaState { loading, ready, unloading };

const char* replica_state_name(ReplicaState s) {
    switch (s) {
        case ReplicaState::loading: return "loading";
        case ReplicaState::ready: return "ready";
        case ReplicaState::unloading: return "unloading";
    }
    return "";
}

struct Replica {
    std::string worker_id, device;
    ReplicaState state = ReplicaState::loading;
    Clock::time_point since;
    bool was_ready = false;
};

struct Entry {
    ModelSpec spec;
    gguf::MemoryEstimate estimate;
    std::vector<Replica> replicas;
    bool wanted = false;  // a request or an admin load waits for a worker
    Clock::time_point wanted_since;
    Clock::time_point last_use;
    std::chrono::system_clock::time_point last_use_wall;
    bool used = false;
    std::optional<milliseconds> keep_alive_override;  // the last request's keep_alive
    int running = 0;
    size_t queued = 0;
    std::string last_error;

    milliseconds keep_alive() const { return keep_alive_override.value_or(spec.keep_alive); }
    bool busy() const { return running > 0 || queued > 0; }
    bool idle(Clock::time_point now) const { return !busy() && !wanted && now - last_use >= kIdleGrace; }
    size_t count(ReplicaState s) const {
        return static_cast<size_t>(
            std::count_if(replicas.begin(), replicas.end(), [s](const Replica& r) { return r.state == s; }));
    }
    size_t live() const { return count(ReplicaState::loading) + count(ReplicaState::ready); }
    std::string state() const {
        if (count(ReplicaState::ready) > 0) return "ready";
        if (count(ReplicaState::loading) > 0) return "loading";
        if (wanted) return "waiting";  // for room on a device
        if (count(ReplicaState::unloading) > 0) return "unloading";
        return "unloaded";
    }
};

// The model as reported: a worker the pool already routes to is ready, though no tick has seen it yet.
Entry as_shown(const Entry& e, const std::vector<WorkerStatus>& workers) {
    Entry shown = e;
    for (Replica& r : shown.replicas)
        if (r.state == ReplicaState::loading && std::any_of(workers.begin(), workers.end(), [&](const WorkerStatus& w) {
                return w.id == r.worker_id && w.state == WorkerState::ready;
            }))
            r.state = ReplicaState::ready;
    return shown;
}

json estimate_json(const gguf::MemoryEstimate& e) {
    return {{"weights", e.weights}, {"kv_cache", e.kv_cache}, {"workspace", e.workspace}, {"total", e.total()}};
}

HttpResponse unavailable(const std::string& message, int retry_after_s) {
    HttpResponse r = error_response(503, message, "service_unavailable", "model", "model_not_loaded");
    r.headers.emplace_back("Retry-After", std::to_string(retry_after_s));
    return r;
}

// The GPU's memory in bytes as nvidia-smi reports it; 0 when it cannot say.
uint64_t gpu_memory(const std::string& gpu) {
    const std::string cmd =
        "nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits -i " + gpu + " 2>/dev/null";
    std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
    if (!p) return 0;
    char buf[64] = {};
    if (!fgets(buf, sizeof buf, p.get())) return 0;
    const long long mib_total = std::atoll(buf);
    return mib_total > 0 ? static_cast<uint64_t>(mib_total) << 20 : 0;
}

}  // namespace

std::vector<Device> placement_devices(const SpawnOptions& spawn, uint64_t budget) {
    std::vector<Device> out;
    const std::vector<std::string> gpus = spawn_devices(spawn), ids = placement_device_ids(spawn);
    for (size_t i = 0; i < gpus.size(); ++i) {
        const std::string& gpu = gpus[i];
        Device d{ids[i], gpu, budget};
        if (d.budget == 0 && !gpu.empty()) {
            d.budget = gpu_memory(gpu);
            if (d.budget == 0)
                throw BadSpawn("--vram-budget: nvidia-smi does not report GPU " + gpu + "'s memory; name the budget");
        }
        if (d.budget == 0) d.budget = kUnlimited;
        out.push_back(std::move(d));
    }
    return out;
}

struct ModelRegistry::Impl {
    boost::asio::io_context& ioc;
    WorkerPool& pool;
    Admission& admission;
    Supervisor& supervisor;
    RegistryOptions o;
    std::string bin;
    mutable std::mutex mu;  // models
    std::map<std::string, Entry> models;
    std::map<std::string, uint64_t> reported;   // worker id -> the memory its /health reports (the last tick's)
    std::map<std::string, bool> resident_gone;  // a resident worker whose process failed or stopped holds nothing
    std::vector<Resident> others;               // --worker's and registered workers on this host (the last tick's)
    // Device id -> its GPU's UUID, as the workers this orchestrator started there report it.
    std::map<std::string, std::string> gpu_uuids;
    std::map<std::string, GpuMemory> gpu_memory_seen;  // device id -> nvidia-smi's last answer (GPUs only)
    Clock::time_point gpu_queried;
    std::mutex tick_mu;  // one tick at a time (the io_context has several threads)
    boost::asio::steady_timer timer;
    bool stopped = false;

    Impl(boost::asio::io_context& i, WorkerPool& p, Admission& a, Supervisor& s, RegistryOptions opts)
        : ioc(i), pool(p), admission(a), supervisor(s), o(std::move(opts)), timer(i) {}

    struct Refusal {
        std::string model;
        HttpResponse response;
    };
    struct TickOut {
        std::vector<Refusal> refusals;
        std::vector<std::string> forget;  // finished workers to drop from the supervisor
        bool became_ready = false;
    };

    void tick();
    void schedule();
    void refresh(Entry& e, const std::vector<WorkerStatus>& workers, const std::vector<SpawnedStatus>& procs,
                 Clock::time_point now, TickOut& out);
    void expire(Entry& e, Clock::time_point now);
    void place(Entry& e, Clock::time_point now, TickOut& out);
    bool evict_for(const Entry& e, const std::vector<const Device*>& allowed, Clock::time_point now);
    void spawn(Entry& e, const Device& d, Clock::time_point now);
    void unload(Entry& e, const std::string& why, Clock::time_point now);
    void retire(Replica& r, Clock::time_point now);
    void fail(Entry& e, const std::string& why, int retry_after_s, TickOut& out);
    uint64_t placed_on(const std::string& device) const;
    uint64_t replica_bytes(const Entry& e, const Replica& r) const;
    uint64_t resident_on(const std::string& device) const;
    uint64_t estimates_on(const std::string& device) const;
    uint64_t room_on(const Device& d, uint64_t freeing = 0) const;
    void ask_gpus();
    void observe(const std::vector<WorkerStatus>& workers, const std::vector<SpawnedStatus>& procs);
    void observe_others(const std::vector<WorkerStatus>& workers);
    std::vector<const Device*> allowed_devices(const ModelSpec& spec) const;
    json entry_json(const Entry& e, const std::vector<WorkerStatus>& workers, size_t queued,
                    Clock::time_point now) const;
    HttpResponse admin(const HttpRequest& req);
};

// The next tick in kTick, until stop() (mu held).
void ModelRegistry::Impl::schedule() {
    timer.expires_after(kTick);
    timer.async_wait([this](boost::system::error_code ec) {
        if (ec) return;
        tick();
        std::lock_guard lock(mu);
        if (!stopped) schedule();
    });
}

void ModelRegistry::Impl::tick() {
    std::lock_guard one(tick_mu);
    // Read outside mu: Admission calls will_load() under its own lock.
    const std::vector<WorkerStatus> workers = pool.status();
    const std::vector<SpawnedStatus> procs = supervisor.status();
    std::map<std::string, size_t> queued;
    for (const ModelSpec& m : o.models) queued[m.name] = admission.queued(m.name);
    ask_gpus();
    TickOut out;
    {
        std::lock_guard lock(mu);
        if (stopped) return;
        const auto now = Clock::now();
        observe(workers, procs);
        for (auto& [name, e] : models) {
            e.queued = queued[name];
            refresh(e, workers, procs, now, out);
            expire(e, now);
        }
        for (auto& [name, e] : models)
            if (e.wanted && e.live() < static_cast<size_t>(e.spec.replicas)) place(e, now, out);
    }
    for (const std::string& id : out.forget) {
        supervisor.forget(id);
        pool.set_drained(id, false);  // the id is never used again: nothing left to remember
    }
    for (const Refusal& r : out.refusals) admission.refuse_all(r.model, r.response);
    if (out.became_ready) admission.dispatch();
}

// A replica's progress from the pool (ready) and the supervisor (failed, exited); the model's load
// from the pool's leases and the queue (mu held).
void ModelRegistry::Impl::refresh(Entry& e, const std::vector<WorkerStatus>& workers,
                                  const std::vector<SpawnedStatus>& procs, Clock::time_point now, TickOut& out) {
    e.running = 0;
    std::string failure;
    std::erase_if(e.replicas, [&](Replica& r) {
        const auto w =
            std::find_if(workers.begin(), workers.end(), [&](const WorkerStatus& s) { return s.id == r.worker_id; });
        const auto p =
            std::find_if(procs.begin(), procs.end(), [&](const SpawnedStatus& s) { return s.id == r.worker_id; });
        const bool gone = p == procs.end() || p->state == "stopped" || p->state == "failed";
        if (w != workers.end()) e.running += w->requests_here;
        if (gone) {
            if (r.state != ReplicaState::unloading)
                failure = "its worker " + r.worker_id + " exited (" + (p == procs.end() ? "gone" : p->last_exit) + ")";
            out.forget.push_back(r.worker_id);
            log()->info("model {}: worker {} on device {} {}", e.spec.name, r.worker_id, r.device,
                        r.state == ReplicaState::unloading ? "unloaded" : "failed");
            return true;
        }
        if (r.state == ReplicaState::loading && w != workers.end() && w->state == WorkerState::ready) {
            r.state = ReplicaState::ready;
            r.was_ready = true;
            out.became_ready = true;
            log()->info("model {}: ready on device {} (worker {}, {} ms)", e.spec.name, r.device, r.worker_id,
                        std::chrono::duration_cast<milliseconds>(now - r.since).count());
        } else if (r.state == ReplicaState::loading && now - r.since > o.load_timeout) {
            char limit[32];
            std::snprintf(limit, sizeof limit, "%g s", static_cast<double>(o.load_timeout.count()) / 1000);
            failure = "its worker " + r.worker_id + " was not ready after " + limit + " (--load-timeout); stopped";
            log()->warn("model {}: {}", e.spec.name, failure);
            retire(r, now);
        } else if (r.state == ReplicaState::unloading && now - r.since > (r.was_ready ? kUnloadGrace : kAbortGrace)) {
            supervisor.kill_now(r.worker_id);
        }
        return false;
    });
    if (e.busy()) {
        e.last_use = now;
        e.last_use_wall = std::chrono::system_clock::now();
        e.used = true;
    }
    if (e.count(ReplicaState::ready) > 0) e.wanted = false;
    // A request queued for a model nobody loads wants it: requested() ticks before the request joins the
    // queue, so a refusal decided at once (the model can never fit) would otherwise miss it.
    if (e.queued > 0 && e.live() == 0 && !e.wanted) {
        e.wanted = true;
        e.wanted_since = now;
    }
    if (!failure.empty()) {
        e.last_error = failure;
        if (e.wanted && e.live() == 0)
            fail(e, "the model '" + e.spec.name + "' could not be loaded: " + failure, 5, out);
    }
}

// Unloads an idle model whose keep_alive has run out since its last use (mu held).
void ModelRegistry::Impl::expire(Entry& e, Clock::time_point now) {
    const milliseconds keep = e.keep_alive();
    if (keep < milliseconds(0) || e.live() == 0 || e.count(ReplicaState::loading) > 0 || !e.idle(now)) return;
    if (now - e.last_use >= keep) unload(e, "keep_alive " + std::to_string(keep.count()) + " ms ran out", now);
}

// Waiting requests get `why` as a 503 (outside mu, by the tick); the model is no longer wanted.
void ModelRegistry::Impl::fail(Entry& e, const std::string& why, int retry_after_s, TickOut& out) {
    log()->warn("{}", why);
    e.last_error = why;
    e.wanted = false;
    out.refusals.push_back({e.spec.name, unavailable(why, retry_after_s)});
}

// While a model waits for a device, nvidia-smi's view of each GPU's memory (other processes' use
// included), at most once a kGpuQueryInterval; asked outside mu (it takes a while).
void ModelRegistry::Impl::ask_gpus() {
    if (o.spawn.backend != "cuda") return;
    {
        std::lock_guard lock(mu);
        const auto now = Clock::now();
        const bool waiting = std::any_of(models.begin(), models.end(), [](const auto& kv) {
            return kv.second.wanted && kv.second.live() < static_cast<size_t>(kv.second.spec.replicas);
        });
        if (!waiting || now - gpu_queried < kGpuQueryInterval) return;
        gpu_queried = now;
    }
    std::map<std::string, GpuMemory> seen;
    for (const Device& d : o.devices)
        if (auto m = query_gpu_memory(d.gpu)) seen[d.id] = *m;
    std::lock_guard lock(mu);
    gpu_memory_seen = std::move(seen);
}

// The bytes `d` can still take (once `freeing` bytes placed there are freed): its budget less what
// placement counts there, and, when nvidia-smi reported the GPU, no more than its free memory less
// the estimates of replicas whose workers have not reported yet (they may not have allocated) (mu held).
uint64_t ModelRegistry::Impl::room_on(const Device& d, uint64_t freeing) const {
    const uint64_t used = placed_on(d.id) - std::min(freeing, placed_on(d.id));
    uint64_t room = d.budget > used ? d.budget - used : 0;
    const auto gpu = gpu_memory_seen.find(d.id);
    if (gpu == gpu_memory_seen.end()) return room;
    uint64_t pending = 0;
    for (const auto& [name, e] : models)
        for (const Replica& r : e.replicas)
            if (r.device == d.id && r.state == ReplicaState::loading && !reported.contains(r.worker_id))
                pending += e.estimate.total();
    const uint64_t free = gpu->second.free() + freeing;
    return std::min(room, free > pending ? free - pending : 0);
}

// The memory the workers report, and which resident workers' processes are gone (mu held).
void ModelRegistry::Impl::observe(const std::vector<WorkerStatus>& workers, const std::vector<SpawnedStatus>& procs) {
    reported.clear();
    for (const WorkerStatus& w : workers)
        if (const uint64_t bytes = reported_bytes(w)) reported[w.id] = bytes;
    resident_gone.clear();
    for (const SpawnedStatus& p : procs) resident_gone[p.id] = p.state == "stopped" || p.state == "failed";
    observe_others(workers);
}

// The workers this orchestrator did not start that sit on its devices (mu held). A device named by
// index is known by UUID once a worker started there reported it: a worker elsewhere reports its GPU
// by its own CUDA_VISIBLE_DEVICES's index, and only the UUID names it exactly.
void ModelRegistry::Impl::observe_others(const std::vector<WorkerStatus>& workers) {
    std::map<std::string, std::string> device_of;  // this orchestrator's workers: id -> device
    for (const Resident& r : o.residents) device_of[r.worker_id] = r.device;
    for (const auto& [name, e] : models)
        for (const Replica& r : e.replicas) device_of[r.worker_id] = r.device;
    for (const WorkerStatus& w : workers)
        if (const auto it = device_of.find(w.id); it != device_of.end() && !w.device_uuid.empty())
            gpu_uuids[it->second] = w.device_uuid;
    std::vector<DeviceIdentity> ids;
    for (const Device& d : o.devices) {
        const auto learned = gpu_uuids.find(d.id);
        std::string uuid = learned != gpu_uuids.end() ? learned->second : "";
        ids.push_back({d.id, names_gpu_by_uuid(d.gpu) ? d.gpu : uuid, d.gpu.empty()});
    }
    std::vector<Resident> now = local_residents(workers, ids);
    for (const Resident& r : now)
        if (std::none_of(others.begin(), others.end(),
                         [&](const Resident& was) { return was.worker_id == r.worker_id; }))
            log()->info("worker {} runs on this host: placement counts its {} on device {}", r.worker_id,
                        mib(r.estimate), r.device);
    others = std::move(now);
}

// What placement counts as taken on `device`: each of the registry's replicas there at the larger of
// its estimate and what its worker reports (unloading ones too: freed once they exit), plus the
// resident workers there (mu held).
uint64_t ModelRegistry::Impl::placed_on(const std::string& device) const {
    uint64_t sum = resident_on(device);
    for (const auto& [name, e] : models)
        for (const Replica& r : e.replicas)
            if (r.device == device) sum += replica_bytes(e, r);
    return sum;
}

// The larger of the replica's estimate and what its worker reports (mu held).
uint64_t ModelRegistry::Impl::replica_bytes(const Entry& e, const Replica& r) const {
    const auto it = reported.find(r.worker_id);
    return std::max(e.estimate.total(), it == reported.end() ? 0 : it->second);
}

// The workers on `device` that are not the registry's: --spawn's at what each reports, its estimate
// until it does; the others on this host at what they report (mu held).
uint64_t ModelRegistry::Impl::resident_on(const std::string& device) const {
    uint64_t sum = 0;
    for (const Resident& w : o.residents) {
        if (w.device != device) continue;
        const auto gone = resident_gone.find(w.worker_id);
        if (gone != resident_gone.end() && gone->second) continue;
        const auto it = reported.find(w.worker_id);
        sum += it != reported.end() ? it->second : w.estimate;
    }
    for (const Resident& w : others)
        if (w.device == device) sum += w.estimate;  // what it reports
    return sum;
}

uint64_t ModelRegistry::Impl::estimates_on(const std::string& device) const {
    uint64_t sum = 0;
    for (const auto& [name, e] : models)
        for (const Replica& r : e.replicas)
            if (r.device == device) sum += e.estimate.total();
    return sum;
}

std::vector<const Device*> ModelRegistry::Impl::allowed_devices(const ModelSpec& spec) const {
    std::vector<const Device*> out;
    for (const Device& d : o.devices)
        if (spec.gpus.empty() || std::find_if(spec.gpus.begin(), spec.gpus.end(), [&](const std::string& g) {
                                     return g == d.id || g == d.gpu;
                                 }) != spec.gpus.end())
            out.push_back(&d);
    return out;
}

// Starts the model's missing replicas on the allowed devices with the most room; when none has room
// for the first, unloads the least recently used idle model that frees enough, or, with nothing to
// evict for longer than load_wait, answers the waiting requests 503 (mu held).
void ModelRegistry::Impl::place(Entry& e, Clock::time_point now, TickOut& out) {
    const uint64_t need = e.estimate.total();
    const std::vector<const Device*> allowed = allowed_devices(e.spec);
    uint64_t largest = 0;  // the most a device offers beside its resident workers
    for (const Device* d : allowed) {
        const uint64_t resident = resident_on(d->id);
        largest = std::max(largest, d->budget > resident ? d->budget - resident : 0);
    }
    if (allowed.empty() || need > largest) {
        const std::string why = allowed.empty()
                                    ? "none of its gpus is a device this orchestrator places on"
                                    : "it needs " + mib(need) + " and the most any device has beside the workers " +
                                          "started with --spawn and the others on this host is " + mib(largest) +
                                          " of its budget";
        return fail(e, "the model '" + e.spec.name + "' cannot be loaded: " + why, 60, out);
    }
    while (e.live() < static_cast<size_t>(e.spec.replicas)) {
        const Device* best = nullptr;
        uint64_t best_free = 0;
        for (const Device* d : allowed) {
            const bool has = std::any_of(e.replicas.begin(), e.replicas.end(), [&](const Replica& r) {
                return r.device == d->id && r.state != ReplicaState::unloading;
            });
            const uint64_t free = room_on(*d);
            if (!has && free >= need && (!best || free > best_free)) best = d, best_free = free;
        }
        if (!best) break;
        spawn(e, *best, now);
    }
    if (e.live() > 0) return;  // the rest of its replicas when room comes (a later request)
    // A model leaving one of its devices frees room once its worker exited: wait for that before
    // evicting another.
    const bool room_coming = std::any_of(models.begin(), models.end(), [&](const auto& kv) {
        return std::any_of(kv.second.replicas.begin(), kv.second.replicas.end(), [&](const Replica& r) {
            return r.state == ReplicaState::unloading &&
                   std::any_of(allowed.begin(), allowed.end(), [&](const Device* d) { return d->id == r.device; });
        });
    });
    if (room_coming || evict_for(e, allowed, now) || now - e.wanted_since < o.load_wait) return;
    std::string devices;
    for (const Device* d : allowed)
        devices += (devices.empty() ? "" : ", ") + d->id + ": " + mib(placed_on(d->id)) + " of " + mib(d->budget);
    fail(e,
         "no device has room for the model '" + e.spec.name + "' (it needs " + mib(need) + "; placed " + devices +
             ") and every model loaded there is busy; retry later",
         5, out);
}

// The least recently used idle model with a ready replica on one of `allowed` whose unloading leaves
// room for `e` there: unloaded. False when there is none (mu held).
bool ModelRegistry::Impl::evict_for(const Entry& e, const std::vector<const Device*>& allowed, Clock::time_point now) {
    Entry* victim = nullptr;
    for (auto& kv : models) {
        Entry& other = kv.second;  // named: a lambda below captures it
        if (&other == &e || !other.idle(now) || other.count(ReplicaState::ready) == 0 ||
            other.count(ReplicaState::loading) > 0)
            continue;
        const bool frees = std::any_of(allowed.begin(), allowed.end(), [&](const Device* d) {
            uint64_t freed = 0;
            for (const Replica& r : other.replicas)
                if (r.device == d->id) freed += replica_bytes(other, r);
            return freed > 0 && room_on(*d, freed) >= e.estimate.total();
        });
        if (frees && (!victim || other.last_use < victim->last_use)) victim = &other;
    }
    if (!victim) return false;
    unload(*victim, "evicted (least recently used) to make room for " + e.spec.name, now);
    return true;
}

void ModelRegistry::Impl::spawn(Entry& e, const Device& d, Clock::time_point now) {
    const std::string id = pool.new_id();
    std::vector<std::string> extra = {"--served-name", e.spec.name};
    if (e.spec.context > 0) extra.insert(extra.end(), {"--ctx", std::to_string(e.spec.context)});
    if (e.spec.max_seqs > 0) extra.insert(extra.end(), {"--max-seqs", std::to_string(e.spec.max_seqs)});
    // A GPU worker sizes its arenas within the estimate (its KV cache takes what the real workspace leaves).
    if (!d.gpu.empty() && o.spawn.backend == "cuda")
        extra.insert(extra.end(), {"--vram-budget", std::to_string(e.estimate.total())});
    supervisor.add({id, worker_command(o.spawn, bin, e.spec.path, d.gpu, extra)});
    e.replicas.push_back({id, d.id, ReplicaState::loading, now});
    log()->info("model {}: loading on device {} as worker {} (estimate {}: weights {}, KV cache {}, workspace {})",
                e.spec.name, d.id, id, mib(e.estimate.total()), mib(e.estimate.weights), mib(e.estimate.kv_cache),
                mib(e.estimate.workspace));
}

// Every replica out of routing and told to stop (mu held).
void ModelRegistry::Impl::unload(Entry& e, const std::string& why, Clock::time_point now) {
    bool any = false;
    for (Replica& r : e.replicas) {
        if (r.state == ReplicaState::unloading) continue;
        retire(r, now);
        any = true;
    }
    if (any) log()->info("model {}: unloading: {}", e.spec.name, why);
}

void ModelRegistry::Impl::retire(Replica& r, Clock::time_point now) {
    pool.set_drained(r.worker_id, true);
    supervisor.retire(r.worker_id);
    r.state = ReplicaState::unloading;
    r.since = now;
}

// One model for /admin/models and /health, its load counted afresh (the tick's may be 100 ms old).
json ModelRegistry::Impl::entry_json(const Entry& e, const std::vector<WorkerStatus>& workers, size_t queued,
                                     Clock::time_point now) const {
    json replicas = json::array();
    json real = json::object();
    int running = 0;
    const Entry shown = as_shown(e, workers);
    for (const Replica& r : shown.replicas) {
        const auto w =
            std::find_if(workers.begin(), workers.end(), [&](const WorkerStatus& s) { return s.id == r.worker_id; });
        replicas.push_back({{"worker", r.worker_id},
                            {"device", r.device},
                            {"state", replica_state_name(r.state)},
                            {"url", w != workers.end() ? json(w->url) : json()}});
        if (w == workers.end()) continue;
        running += w->requests_here;
        for (const VramUse& u : w->vram) {
            if (!real.contains(u.purpose)) real[u.purpose] = {{"reserved", 0}, {"used", 0}};
            json& p = real[u.purpose];
            p["reserved"] = p["reserved"].get<int64_t>() + u.reserved;
            p["used"] = p["used"].get<int64_t>() + u.used;
        }
    }
    const milliseconds keep = e.keep_alive();
    const bool busy = running > 0 || queued > 0;
    json until;  // when an idle model will be unloaded, in Unix seconds
    if (keep >= milliseconds(0) && e.live() > 0 && e.used && !busy)
        until = unix_seconds(e.last_use_wall + std::max(keep, kIdleGrace));
    return {{"name", e.spec.name},
            {"model", e.spec.path},
            {"state", shown.state()},
            {"replicas", replicas},
            {"replicas_wanted", e.spec.replicas},
            {"gpus", e.spec.gpus},
            {"context", e.spec.context > 0 ? json(e.spec.context) : json()},
            {"vram_estimate_bytes", estimate_json(e.estimate)},
            {"vram_bytes", real.empty() ? json() : real},
            {"running", running},
            {"queued", queued},
            {"keep_alive_s", keep < milliseconds(0) ? json() : json(static_cast<double>(keep.count()) / 1000)},
            {"last_used", e.used ? json(unix_seconds(e.last_use_wall)) : json()},
            {"idle_s", e.used && !busy ? json(std::chrono::duration<double>(now - e.last_use).count()) : json()},
            {"until", until},
            {"error", e.last_error.empty() ? json() : json(e.last_error)}};
}

// POST /admin/models/{name}/load or /unload.
HttpResponse ModelRegistry::Impl::admin(const HttpRequest& req) {
    const std::string rest = req.path.substr(std::string("/admin/models/").size());
    const size_t slash = rest.rfind('/');
    const std::string name = http::percent_decoded(rest.substr(0, slash));
    const std::string action = slash == std::string::npos ? "" : rest.substr(slash + 1);
    if (action != "load" && action != "unload")
        return error_response(404, "POST /admin/models/{name}/load or /admin/models/{name}/unload", "not_found_error");
    const std::vector<WorkerStatus> workers = pool.status();
    std::unique_lock lock(mu);
    const auto it = models.find(name);
    if (it == models.end())
        return error_response(404, "no configured model is named '" + name + "' (see GET /admin/models)",
                              "not_found_error", "name", "model_not_found");
    Entry& e = it->second;
    const auto now = Clock::now();
    if (action == "unload") {
        if (e.busy())
            return error_response(409,
                                  "the model '" + name + "' has " + std::to_string(e.running) + " running and " +
                                      std::to_string(e.queued) + " queued requests; unload it once they end",
                                  "conflict_error", "name", "model_busy");
        e.wanted = false;
        unload(e, "asked by the admin API", now);
        return json_response(200, {{"name", name}, {"state", e.state()}});
    }
    e.last_use = now;
    e.last_use_wall = std::chrono::system_clock::now();
    e.used = true;
    if (e.live() == 0 && !e.wanted) {
        e.wanted = true;
        e.wanted_since = now;
    }
    const std::string state = as_shown(e, workers).state();
    lock.unlock();
    boost::asio::post(ioc, [this] { tick(); });
    return json_response(state == "ready" ? 200 : 202, {{"name", name}, {"state", state}});
}

ModelRegistry::ModelRegistry(boost::asio::io_context& ioc, WorkerPool& pool, Admission& admission,
                             Supervisor& supervisor, RegistryOptions o)
    : impl_(std::make_unique<Impl>(ioc, pool, admission, supervisor, std::move(o))) {
    impl_->bin = worker_binary(impl_->o.spawn);
    for (const ModelSpec& m : impl_->o.models) {
        Entry e;
        e.spec = m;
        try {
            const gguf::File f = gguf::File::open(m.path);
            e.estimate = gguf::estimate_memory(f, {m.context, m.max_seqs > 0 ? m.max_seqs : 16, 512});
        } catch (const std::exception& ex) {
            throw std::runtime_error("model " + m.name + " (" + m.path + "): " + ex.what());
        }
        impl_->models.emplace(m.name, std::move(e));
    }
}

ModelRegistry::~ModelRegistry() { stop(); }

void ModelRegistry::start() {
    std::lock_guard lock(impl_->mu);
    impl_->schedule();
}

void ModelRegistry::stop() {
    std::lock_guard lock(impl_->mu);
    impl_->stopped = true;
    impl_->timer.cancel();
}

bool ModelRegistry::configured(const std::string& name) const {
    std::lock_guard lock(impl_->mu);
    return impl_->models.contains(name);
}

std::vector<std::pair<std::string, std::string>> ModelRegistry::model_files() const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const ModelSpec& m : impl_->o.models) out.emplace_back(m.name, m.path);
    return out;
}

void ModelRegistry::requested(const std::string& name, std::optional<milliseconds> keep_alive) {
    {
        std::lock_guard lock(impl_->mu);
        const auto it = impl_->models.find(name);
        if (it == impl_->models.end()) return;
        Entry& e = it->second;
        e.last_use = Clock::now();
        e.last_use_wall = std::chrono::system_clock::now();
        e.used = true;
        if (keep_alive) e.keep_alive_override = keep_alive;
        if (e.live() >= static_cast<size_t>(e.spec.replicas) || e.wanted) return;  // replicas missing: placed now
        e.wanted = true;
        e.wanted_since = e.last_use;
    }
    boost::asio::post(impl_->ioc, [impl = impl_.get()] { impl->tick(); });  // start loading now, not at the next tick
}

bool ModelRegistry::will_load(const std::string& name) const {
    std::lock_guard lock(impl_->mu);
    const auto it = impl_->models.find(name);
    return it != impl_->models.end() && it->second.count(ReplicaState::ready) == 0;
}

void ModelRegistry::add_routes(http::HttpServer& server,
                               const std::function<http::HttpServer::Handler(http::HttpServer::Handler)>& guard) {
    server.route("GET", "/admin/models",
                 guard([this](const HttpRequest&) { return json_response(200, status_json()); }));
    server.route_prefix("POST", "/admin/models/", guard([this](const HttpRequest& r) { return impl_->admin(r); }));
}

json ModelRegistry::status_json() const {
    const std::vector<WorkerStatus> workers = impl_->pool.status();
    std::map<std::string, size_t> queued;  // outside mu, as in tick()
    for (const ModelSpec& m : impl_->o.models) queued[m.name] = impl_->admission.queued(m.name);
    std::lock_guard lock(impl_->mu);
    const auto now = Clock::now();
    json models = json::array();
    for (const auto& [name, e] : impl_->models) models.push_back(impl_->entry_json(e, workers, queued[name], now));
    json devices = json::array();
    for (const Device& d : impl_->o.devices) {
        const auto gpu = impl_->gpu_memory_seen.find(d.id);
        devices.push_back(
            {{"id", d.id},
             {"budget_bytes", d.budget == kUnlimited ? json() : json(d.budget)},
             {"placed_estimate_bytes", impl_->estimates_on(d.id)},
             {"resident_bytes", impl_->resident_on(d.id)},
             {"held_bytes", impl_->placed_on(d.id)},
             {"gpu_free_bytes", gpu != impl_->gpu_memory_seen.end() ? json(gpu->second.free()) : json()}});
    }
    return {{"models", models}, {"devices", devices}};
}

json ModelRegistry::worker_fields(const std::string& worker_id) const {
    std::lock_guard lock(impl_->mu);
    for (const auto& [name, e] : impl_->models)
        for (const Replica& r : e.replicas)
            if (r.worker_id == worker_id) {
                const milliseconds keep = e.keep_alive();
                const bool idle = keep >= milliseconds(0) && e.used && !e.busy() && r.state == ReplicaState::ready;
                return {{"vram_estimate_bytes", estimate_json(e.estimate)},
                        {"until", idle ? json(unix_seconds(e.last_use_wall + std::max(keep, kIdleGrace))) : json()}};
            }
    return {{"vram_estimate_bytes", nullptr}, {"until", nullptr}};
}

}  // namespace loom::orchestrator
