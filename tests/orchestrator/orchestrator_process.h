// loom-orchestrator as a child process for the tests: started on a free port (read from its log) in
// front of the given workers, ready once every worker is ready in its /health; SIGTERM at the end.
#pragma once

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "support/test_data.h"
#include "support/worker_process.h"
#include "worker/http_client.h"

namespace loom::test {

inline std::string orchestrator_bin() {
    const char* bin = std::getenv("LOOM_ORCHESTRATOR_BIN");
    if (!bin || !*bin) skip_program("LOOM_ORCHESTRATOR_BIN is not set (run through ctest)");
    return bin;
}

inline std::string worker_url(int port) { return "http://127.0.0.1:" + std::to_string(port); }

class OrchestratorProcess {
public:
    explicit OrchestratorProcess(const std::vector<int>& worker_ports, std::vector<std::string> extra = {}) {
        log_ = temp_dir() / ("orchestrator-" + std::to_string(++count_) + ".log");
        std::vector<std::string> args = {orchestrator_bin(), "--port", "0"};
        for (int p : worker_ports) args.insert(args.end(), {"--worker", worker_url(p)});
        args.insert(args.end(), extra.begin(), extra.end());
        pid_ = spawn_logged(std::move(args), log_);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        const std::string listening = "listening on http://127.0.0.1:";
        while (port_ == 0) {
            const std::string text = log();
            if (const size_t at = text.find(listening); at != std::string::npos)
                port_ = std::atoi(text.c_str() + at + listening.size());
            if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("no port in:\n" + log());
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        while (ready_workers() < static_cast<int>(worker_ports.size())) {
            if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("workers not ready:\n" + log());
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
    ~OrchestratorProcess() {
        kill(pid_, SIGTERM);
        int st = 0;
        for (int i = 0; i < 500 && waitpid(pid_, &st, WNOHANG) == 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        if (waitpid(pid_, &st, WNOHANG) == 0) {
            kill(pid_, SIGKILL);
            waitpid(pid_, &st, 0);
        }
    }
    OrchestratorProcess(const OrchestratorProcess&) = delete;
    OrchestratorProcess& operator=(const OrchestratorProcess&) = delete;

    int port() const { return port_; }
    pid_t pid() const { return pid_; }
    std::string log() const {
        std::ifstream in(log_, std::ios::binary);
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }
    // The workers its /health calls ready.
    int ready_workers() const {
        try {
            const auto j = nlohmann::json::parse(http_request(port_, "GET", "/health").body);
            int n = 0;
            for (const auto& w : j.at("workers")) n += w.at("state") == "ready";
            return n;
        } catch (const std::exception&) {
            return 0;
        }
    }

private:
    static inline int count_ = 0;
    pid_t pid_ = -1;
    int port_ = 0;
    std::filesystem::path log_;
};

}  // namespace loom::test
