// One loom-worker process for tests: started on a port the system picks (--port 0, read from its
// log), ready once /health says 200, stopped with SIGTERM when the object goes away.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <sys/types.h>
#include <vector>

namespace loom::test {

// The worker exited or never became healthy; what() holds its log.
class WorkerStartError : public std::runtime_error {
public:
    WorkerStartError(const std::string& what, std::optional<int> exit_code)
        : std::runtime_error(what), exit_code_(exit_code) {}
    // The exit code when the worker exited by itself (3: no usable CUDA device).
    std::optional<int> exit_code() const { return exit_code_; }

private:
    std::optional<int> exit_code_;
};

// Starts args[0] with `args`, stdout and stderr into `log` (truncated); std::runtime_error naming the
// program when it cannot be started.
pid_t spawn_logged(std::vector<std::string> args, const std::filesystem::path& log);

// $LOOM_WORKER_BIN (ctest sets it); skips the program (exit 77) when it is not set.
std::string worker_bin();

class WorkerProcess {
public:
    // Runs `worker_bin() --model M --backend B --port 0 --log info <extra>` (no `--log info` when
    // `extra` holds a --log), output to a log file,
    // and waits up to `timeout` for /health 200 (a 503 {"status": "loading"} is waited through).
    // Throws WorkerStartError when the process exits or the time runs out. A `prefix` runs the
    // worker through a wrapper that execs it (its first element an absolute path), e.g.
    // {"/bin/sh", "-c", "ulimit -n 64 && exec \"$0\" \"$@\""}: pid() is then the worker's.
    WorkerProcess(const std::filesystem::path& model, const std::string& backend, std::vector<std::string> extra,
                  std::chrono::seconds timeout = std::chrono::seconds(120), std::vector<std::string> prefix = {});
    ~WorkerProcess();
    WorkerProcess(const WorkerProcess&) = delete;
    WorkerProcess& operator=(const WorkerProcess&) = delete;

    int port() const { return port_; }
    pid_t pid() const { return pid_; }
    std::string log() const;
    void signal(int sig);
    // The exit code once the process ended within `timeout` (-1: killed by a signal).
    std::optional<int> wait_exit(std::chrono::seconds timeout);

private:
    bool exited();

    pid_t pid_ = -1;
    int port_ = 0;
    std::optional<int> status_;
    std::filesystem::path log_;
};

}  // namespace loom::test
