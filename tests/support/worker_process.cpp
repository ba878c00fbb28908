// Starting, watching and stopping a loom-worker process for the tests.
#include "support/worker_process.h"

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <spawn.h>
#include <string_view>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "support/test_data.h"
#include "worker/http_client.h"

extern char** environ;

namespace loom::test {

using Clock = std::chrono::steady_clock;

std::string worker_bin() {
    const char* bin = std::getenv("LOOM_WORKER_BIN");
    if (!bin || !*bin) skip_program("LOOM_WORKER_BIN is not set (run through ctest)");
    return bin;
}

pid_t spawn_logged(std::vector<std::string> args, const std::filesystem::path& log) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start " + args[0] + ": " + std::strerror(rc));
    return pid;
}

WorkerProcess::WorkerProcess(const std::filesystem::path& model, const std::string& backend,
                             std::vector<std::string> extra, std::chrono::seconds timeout,
                             std::vector<std::string> prefix) {
    static int count = 0;  // one log per worker: several run at once
    log_ = temp_dir() / ("worker-" + std::to_string(++count) + ".log");
    std::vector<std::string> args = std::move(prefix);
    args.insert(args.end(), {worker_bin(), "--model", model.string(), "--backend", backend, "--port", "0"});
    if (std::find(extra.begin(), extra.end(), "--log") == extra.end()) args.insert(args.end(), {"--log", "info"});
    args.insert(args.end(), extra.begin(), extra.end());
    try {
        pid_ = spawn_logged(std::move(args), log_);
    } catch (const std::runtime_error& e) {
        throw WorkerStartError(e.what(), std::nullopt);
    }

    const auto deadline = Clock::now() + timeout;
    const auto check = [&](const char* waiting_for) {
        if (exited()) {
            const std::optional<int> code =
                WIFEXITED(*status_) ? std::optional<int>(WEXITSTATUS(*status_)) : std::nullopt;
            throw WorkerStartError("loom-worker exited while " + std::string(waiting_for) + ":\n" + log(), code);
        }
        if (Clock::now() > deadline)
            throw WorkerStartError("loom-worker not ready after " + std::to_string(timeout.count()) + " s (" +
                                       waiting_for + "):\n" + log(),
                                   std::nullopt);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    };
    constexpr std::string_view kListening = "listening on http://127.0.0.1:";
    while (port_ == 0) {
        const std::string text = log();
        if (const size_t at = text.find(kListening); at != std::string::npos)
            port_ = std::atoi(text.c_str() + at + kListening.size());
        if (port_ == 0) check("waiting for its port");
    }
    for (;;) {
        try {
            const HttpReply h = http_request(port_, "GET", "/health");
            if (h.status == 200) break;
            if (h.status != 503 || nlohmann::json::parse(h.body).value("status", "") != "loading")
                throw WorkerStartError("/health answered " + std::to_string(h.status) + " " + h.body, std::nullopt);
        } catch (const boost::system::system_error&) {}
        check("waiting for /health 200");
    }
}

WorkerProcess::~WorkerProcess() {
    if (pid_ <= 0 || exited()) return;
    kill(pid_, SIGTERM);
    if (!wait_exit(std::chrono::seconds(20))) {
        kill(pid_, SIGKILL);
        wait_exit(std::chrono::seconds(5));
    }
}

std::string WorkerProcess::log() const {
    std::ifstream in(log_, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void WorkerProcess::signal(int sig) { kill(pid_, sig); }

std::optional<int> WorkerProcess::wait_exit(std::chrono::seconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!exited()) {
        if (Clock::now() > deadline) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return WIFEXITED(*status_) ? WEXITSTATUS(*status_) : -1;
}

bool WorkerProcess::exited() {
    if (status_) return true;
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_) status_ = st;
    return status_.has_value();
}

}  // namespace loom::test
