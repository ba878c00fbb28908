// Starting, watching, restarting and stopping the spawned loom-workers.
#include "orchestrator/supervisor.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <optional>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <system_error>
#include <thread>
#include <unistd.h>

namespace loom::orchestrator {

namespace {

using Clock = std::chrono::steady_clock;

std::shared_ptr<spdlog::logger> log() {
    if (auto l = spdlog::get("orchestrator")) return l;
    return spdlog::default_logger();
}

// Everything after fork() in the child is async-signal-safe: the parent has other threads.
[[noreturn]] void exec_child(const pid_t parent, char* const* argv, int out_fd) {
    setpgid(0, 0);  // its own group: a terminal's Ctrl-C reaches the orchestrator only, which stops it
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // the orchestrator killed: the worker drains and leaves too
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);  // the orchestrator's threads block SIGTERM and SIGINT
    signal(SIGPIPE, SIG_DFL);                  // ignored dispositions survive exec
    const int null_in = open("/dev/null", O_RDONLY);
    if (null_in >= 0) dup2(null_in, 0);
    dup2(out_fd, 1);
    dup2(out_fd, 2);
    // The orchestrator's sockets are not all close-on-exec: a worker must not keep its port bound.
    if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0) {
        rlimit lim{};
        const rlim_t top = getrlimit(RLIMIT_NOFILE, &lim) == 0 ? std::min<rlim_t>(lim.rlim_cur, 1 << 20) : 1024;
        for (rlim_t fd = 3; fd < top; ++fd) close(static_cast<int>(fd));
    }
    execv(argv[0], argv);
    const char msg[] = "loom-orchestrator: cannot execute the worker binary\n";
    [[maybe_unused]] const ssize_t n = write(2, msg, sizeof msg - 1);
    _exit(127);
}

// A longer line from a worker is relayed in pieces of this size.
constexpr size_t kMaxLine = 64 << 10;

// The level a worker's log line was written at ("... [worker] [warning] ..."), to relay it at that level.
spdlog::level::level_enum level_of(const std::string& line) {
    if (line.find("] [critical] ") != std::string::npos) return spdlog::level::critical;
    if (line.find("] [error] ") != std::string::npos) return spdlog::level::err;
    if (line.find("] [warning] ") != std::string::npos) return spdlog::level::warn;
    return spdlog::level::info;
}

// A worker's line without its own "[2026-12-06 05:58:00.682] " (the orchestrator's log adds one).
std::string_view without_timestamp(std::string_view line) {
    constexpr size_t kStamp = 26;
    if (line.size() > kStamp && line[0] == '[' && std::isdigit(static_cast<unsigned char>(line[1])) &&
        line.substr(kStamp - 2, 2) == "] ")
        return line.substr(kStamp);
    return line;
}

// The URL of a worker's "listening on http://127.0.0.1:PORT ..." line (it was told that host).
std::optional<WorkerUrl> listening_url(const std::string& line) {
    constexpr std::string_view kListening = "listening on http://127.0.0.1:";
    const size_t at = line.find(kListening);
    if (at == std::string::npos) return std::nullopt;
    const size_t from = at + std::string_view("listening on ").size();
    const size_t to = line.find(' ', from);
    try {
        return parse_worker_url(line.substr(from, to == std::string::npos ? std::string::npos : to - from));
    } catch (const BadWorkerUrl&) {
        return std::nullopt;
    }
}

}  // namespace

std::string exit_cause(int wait_status) {
    if (WIFEXITED(wait_status)) return "exit_" + std::to_string(WEXITSTATUS(wait_status));
    if (WIFSIGNALED(wait_status)) {
        const char* name = sigabbrev_np(WTERMSIG(wait_status));
        return name ? std::string("SIG") + name : "signal_" + std::to_string(WTERMSIG(wait_status));
    }
    return "unknown";
}

struct Supervisor::Slot {
    SpawnedWorkerSpec spec;
    SpawnedStatus status;  // under Impl::mu
    std::thread thread;
    bool finished = false;  // its thread has reaped its last process
    bool retired = false;   // retire(): stopped for good, never restarted
};

struct Supervisor::Impl {
    SupervisorOptions o;
    SupervisorHooks hooks;
    mutable std::mutex mu;
    std::condition_variable changed;  // stopping set, or a slot finished
    bool stopping = false;
    std::vector<std::unique_ptr<Slot>> slots;

    pid_t launch(Slot& s, int& read_fd);
    void relay(Slot& s, int fd, pid_t pid);
    int reap(Slot& s, pid_t pid);
    void supervise(Slot& s);
    bool wait_backoff(Slot& s, std::chrono::milliseconds delay);
    Slot* find(const std::string& id) const;
    void signal_all(int sig);
};

// Starts the worker with its output into a new pipe (under mu, so stop() sees its pid); 0 when stopping.
pid_t Supervisor::Impl::launch(Slot& s, int& read_fd) {
    std::vector<std::string> args = s.spec.argv;
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
    std::lock_guard lock(mu);
    if (stopping || s.retired) {
        close(fds[0]);
        close(fds[1]);
        return 0;
    }
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid == 0) exec_child(parent, argv.data(), fds[1]);
    const int fork_errno = errno;
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        throw std::system_error(fork_errno, std::generic_category(), "fork");
    }
    setpgid(pid, pid);  // also here, so that a kill(-pid) right after this finds the group
    read_fd = fds[0];
    s.status.pid = pid;
    s.status.state = "starting";
    s.status.url.clear();
    std::string command;
    for (const auto& a : s.spec.argv) command += (command.empty() ? "" : " ") + a;
    log()->info("worker {}: started pid {}: {}", s.spec.id, pid, command);
    return pid;
}

// Relays the worker's output line by line until it closes it; reports its URL once it listens.
void Supervisor::Impl::relay(Slot& s, int fd, pid_t pid) {
    std::string pending;
    char buf[4096];
    bool listening = false;
    for (;;) {
        const ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        pending.append(buf, static_cast<size_t>(n));
        if (pending.size() > kMaxLine && pending.find('\n') == std::string::npos) pending += '\n';
        size_t eol;
        while ((eol = pending.find('\n')) != std::string::npos) {
            const std::string line = pending.substr(0, eol);
            pending.erase(0, eol + 1);
            log()->log(level_of(line), "[{} pid {}] {}", s.spec.id, pid, without_timestamp(line));
            if (listening) continue;
            if (const auto url = listening_url(line)) {
                listening = true;
                {
                    std::lock_guard lock(mu);
                    s.status.url = url->text;
                    s.status.state = "running";
                }
                if (hooks.listening) hooks.listening(s.spec.id, *url);
            }
        }
    }
    if (!pending.empty()) log()->info("[{} pid {}] {}", s.spec.id, pid, pending);
    close(fd);
}

// Waits for the worker's exit; its pid is forgotten before it is reaped, so stop() never signals a
// reused pid. Returns the wait status.
int Supervisor::Impl::reap(Slot& s, pid_t pid) {
    siginfo_t info{};
    while (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR) {}
    {
        std::lock_guard lock(mu);
        s.status.pid = 0;
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    return st;
}

// Sleeps `delay` unless stop() or retire() comes first; false when stopping.
bool Supervisor::Impl::wait_backoff(Slot& s, std::chrono::milliseconds delay) {
    std::unique_lock lock(mu);
    changed.wait_for(lock, delay, [this, &s] { return stopping || s.retired; });
    return !stopping && !s.retired;
}

Supervisor::Slot* Supervisor::Impl::find(const std::string& id) const {
    for (const auto& s : slots)
        if (s->spec.id == id) return s.get();
    return nullptr;
}

// One worker's life: start, relay, reap, and again after the backoff.
void Supervisor::Impl::supervise(Slot& s) {
    int quick_exits = 0;
    for (;;) {
        const auto started = Clock::now();
        int fd = -1;
        pid_t pid = 0;
        std::string cause;
        try {
            pid = launch(s, fd);
        } catch (const std::system_error& e) {
            cause = std::string("spawn_failed");
            log()->error("worker {}: cannot start: {}", s.spec.id, e.what());
        }
        if (pid == 0 && cause.empty()) break;  // stopping
        std::string url;
        int st = 0;
        if (pid > 0) {
            relay(s, fd, pid);
            st = reap(s, pid);
            cause = exit_cause(st);
            std::lock_guard lock(mu);
            url = s.status.url;
            s.status.url.clear();
            s.status.last_exit = cause;
        }
        // loom-worker's 2 (bad flags or model) and 3 (no such device) would only repeat.
        const bool hopeless = pid > 0 && WIFEXITED(st) && (WEXITSTATUS(st) == 2 || WEXITSTATUS(st) == 3);
        bool stopping_now;
        {
            std::lock_guard lock(mu);
            stopping_now = stopping || s.retired;
            s.status.state = stopping_now ? "stopped" : hopeless ? "failed" : "restarting";
        }
        if (hooks.exited) hooks.exited(s.spec.id, url, cause, !stopping_now && !hopeless);
        if (stopping_now) break;
        const auto uptime = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
        if (hopeless) {
            log()->error(
                "worker {} (pid {}) exited with {} after {} ms: its flags, model or device are wrong; not restarted",
                s.spec.id, pid, cause, uptime.count());
            break;
        }
        if (uptime >= o.stable_uptime) quick_exits = 0;
        const auto delay = std::min(o.max_backoff, o.first_backoff * (1 << std::min(quick_exits, 16)));
        ++quick_exits;
        log()->warn("worker {} (pid {}) exited: {} after {} ms; restarting in {} ms", s.spec.id, pid, cause,
                    uptime.count(), delay.count());
        if (!wait_backoff(s, delay)) break;
        std::lock_guard lock(mu);
        ++s.status.restarts;
    }
    std::lock_guard lock(mu);
    if (s.status.state != "failed") s.status.state = "stopped";
    s.finished = true;
    changed.notify_all();
}

// `sig` to every running worker's process group (under mu: the pids are not reaped meanwhile).
void Supervisor::Impl::signal_all(int sig) {
    std::lock_guard lock(mu);
    for (const auto& s : slots)
        if (s->status.pid > 0 && kill(-s->status.pid, sig) != 0) kill(s->status.pid, sig);
}

Supervisor::Supervisor(SupervisorOptions options, SupervisorHooks hooks) : impl_(std::make_unique<Impl>()) {
    impl_->o = std::move(options);
    impl_->hooks = std::move(hooks);
    for (const auto& spec : impl_->o.workers) {
        auto s = std::make_unique<Slot>();
        s->spec = spec;
        s->status.id = spec.id;
        s->status.state = "starting";
        impl_->slots.push_back(std::move(s));
    }
}

Supervisor::~Supervisor() { stop(std::chrono::milliseconds(0)); }

void Supervisor::start() {
    for (auto& s : impl_->slots) s->thread = std::thread([this, slot = s.get()] { impl_->supervise(*slot); });
}

void Supervisor::stop(std::chrono::milliseconds grace) {
    Impl& m = *impl_;
    {
        std::lock_guard lock(m.mu);
        m.stopping = true;
        m.changed.notify_all();
    }
    m.signal_all(SIGTERM);
    const auto all_finished = [&m] {
        return std::all_of(m.slots.begin(), m.slots.end(),
                           [](const auto& s) { return s->finished || !s->thread.joinable(); });
    };
    {
        std::unique_lock lock(m.mu);
        if (!m.changed.wait_for(lock, grace, all_finished))
            log()->warn("spawned workers still running {} ms after SIGTERM: SIGKILL", grace.count());
    }
    m.signal_all(SIGKILL);
    for (auto& s : m.slots)
        if (s->thread.joinable()) s->thread.join();
}

void Supervisor::add(SpawnedWorkerSpec spec) {
    auto s = std::make_unique<Slot>();
    s->status.id = spec.id;
    s->status.state = "starting";
    s->spec = std::move(spec);
    Slot* slot = s.get();
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return;
    impl_->slots.push_back(std::move(s));
    slot->thread = std::thread([this, slot] { impl_->supervise(*slot); });
}

bool Supervisor::retire(const std::string& id) {
    std::lock_guard lock(impl_->mu);
    Slot* s = impl_->find(id);
    if (!s) return false;
    s->retired = true;
    impl_->changed.notify_all();
    if (s->status.pid > 0 && kill(-s->status.pid, SIGTERM) != 0) kill(s->status.pid, SIGTERM);
    return true;
}

void Supervisor::kill_now(const std::string& id) {
    std::lock_guard lock(impl_->mu);
    if (Slot* s = impl_->find(id); s && s->retired && s->status.pid > 0)
        if (kill(-s->status.pid, SIGKILL) != 0) kill(s->status.pid, SIGKILL);
}

bool Supervisor::forget(const std::string& id) {
    std::unique_ptr<Slot> gone;
    {
        std::lock_guard lock(impl_->mu);
        auto it = std::find_if(impl_->slots.begin(), impl_->slots.end(),
                               [&](const auto& s) { return s->spec.id == id && s->finished; });
        if (it == impl_->slots.end()) return false;
        gone = std::move(*it);
        impl_->slots.erase(it);
    }
    if (gone->thread.joinable()) gone->thread.join();  // it has finished: returns at once
    return true;
}

std::vector<SpawnedStatus> Supervisor::status() const {
    std::lock_guard lock(impl_->mu);
    std::vector<SpawnedStatus> out;
    for (const auto& s : impl_->slots) out.push_back(s->status);
    return out;
}

}  // namespace loom::orchestrator
