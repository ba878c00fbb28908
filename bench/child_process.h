// BENCHMARK TOOL ONLY (orchestrator_overhead): a daemon started for the benchmark (sse_loadgen,
// loom-orchestrator), its port read from the "listening on http://HOST:PORT" line of its log, and
// what /proc says of its descriptors and memory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <sys/types.h>
#include <vector>

namespace loom::bench {

class ChildProcess {
public:
    // Starts args[0] with its output into `log`; throws std::runtime_error when it does not say
    // where it listens within 20 s.
    ChildProcess(std::vector<std::string> args, std::filesystem::path log);
    ~ChildProcess();  // SIGTERM, then SIGKILL after 5 s
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    uint16_t port() const { return port_; }
    pid_t pid() const { return pid_; }
    std::string log() const;

private:
    pid_t pid_ = -1;
    uint16_t port_ = 0;
    std::filesystem::path log_;
};

// Open descriptors of a process (entries of /proc/PID/fd), -1 when unreadable.
int open_fds(pid_t pid);
// Its resident memory in KiB (VmRSS), -1 when unreadable.
long rss_kib(pid_t pid);

// CPU time it has used, user + system, in seconds (/proc/PID/stat); -1 when unreadable.
double cpu_seconds(pid_t pid);

// GET path on 127.0.0.1:port; the status, 0 when no answer came.
int http_get_status(uint16_t port, const std::string& path);

}  // namespace loom::bench
