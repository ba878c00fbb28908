// Supervisor: the loom-workers the orchestrator starts itself (--spawn): one process each in its own
// process group, its output relayed into the log, its URL read from its "listening on" line, and a
// restart with backoff whenever it exits.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <sys/types.h>
#include <vector>

#include "orchestrator/options.h"

namespace loom::orchestrator {

struct SpawnedWorkerSpec {
    std::string id;                 // the pool's id for it ("w2"), kept across restarts
    std::vector<std::string> argv;  // argv[0] is the worker binary's path
};

struct SupervisorOptions {
    std::vector<SpawnedWorkerSpec> workers;
    // Restart delays: `first_backoff` after a worker's first exit, doubling up to `max_backoff`; back
    // to `first_backoff` once a worker has stayed up `stable_uptime`.
    std::chrono::milliseconds first_backoff{250};
    std::chrono::milliseconds max_backoff{1000};
    std::chrono::milliseconds stable_uptime{30'000};
};

// Called on the worker's own supervising thread, no lock held.
struct SupervisorHooks {
    std::function<void(const std::string& id, const WorkerUrl& url)> listening;  // a (re)started worker's URL
    // It exited (`url` empty when it never said where it listens); `cause` is "exit_N" or a signal's
    // name; `restarting` is false while the supervisor stops or when the worker's exit code says
    // restarting cannot help (loom-worker's exit codes 2, bad flags or model, and 3, no such device).
    std::function<void(const std::string& id, const std::string& url, const std::string& cause, bool restarting)>
        exited;
};

struct SpawnedStatus {
    std::string id;
    pid_t pid = 0;      // 0 while none runs
    std::string url;    // "" until its "listening on" line
    std::string state;  // starting, running, restarting, failed, stopped
    int restarts = 0;
    std::string last_exit;  // the cause of its last exit, "" before any
};

class Supervisor {
public:
    Supervisor(SupervisorOptions options, SupervisorHooks hooks);
    ~Supervisor();  // stop() with no grace if still running
    Supervisor(const Supervisor&) = delete;
    Supervisor& operator=(const Supervisor&) = delete;

    // Starts every worker (one supervising thread each).
    void start();

    // SIGTERM to every worker's process group (a worker drains itself), SIGKILL to those still there
    // after `grace`; returns once every worker has been reaped. No restart happens from the call on.
    void stop(std::chrono::milliseconds grace);

    // A worker started while running (the model registry's); supervised like the others. Ignored
    // once stop() was called.
    void add(SpawnedWorkerSpec spec);
    // SIGTERM to its process group and no restart from now on; its thread ends once the process
    // exited (status "stopped"). False for an unknown id.
    bool retire(const std::string& id);
    // SIGKILL to a retired worker still running (its drain took too long).
    void kill_now(const std::string& id);
    // Drops a worker whose thread has finished (retired, or failed) from the list; false otherwise.
    bool forget(const std::string& id);

    std::vector<SpawnedStatus> status() const;

private:
    struct Slot;
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// "exit_N" for an exit code, "SIGKILL" (and so on) for a signal, from a waitpid status.
std::string exit_cause(int wait_status);

}  // namespace loom::orchestrator
