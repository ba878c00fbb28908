// BENCHMARK TOOL ONLY (orchestrator_overhead): starting and stopping the daemons it measures.
#include "bench/child_process.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <spawn.h>
#include <sstream>
#include <unistd.h>
#include <stdexcept>
#include <sys/wait.h>
#include <thread>

extern char** environ;

namespace loom::bench {

ChildProcess::ChildProcess(std::vector<std::string> args, std::filesystem::path log) : log_(std::move(log)) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start " + args[0] + ": " + std::strerror(rc));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    const std::string listening = "listening on http://";
    while (port_ == 0) {
        const std::string text = this->log();
        if (const size_t at = text.find(listening); at != std::string::npos)
            if (const size_t colon = text.find(':', at + listening.size()); colon != std::string::npos)
                port_ = static_cast<uint16_t>(std::atoi(text.c_str() + colon + 1));
        int st = 0;
        if (port_ == 0 && waitpid(pid_, &st, WNOHANG) == pid_) {
            pid_ = -1;
            throw std::runtime_error(args[0] + " exited:\n" + text);
        }
        if (port_ == 0 && std::chrono::steady_clock::now() > deadline)
            throw std::runtime_error(args[0] + " did not say where it listens:\n" + text);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

ChildProcess::~ChildProcess() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int st = 0;
    for (int i = 0; i < 500 && waitpid(pid_, &st, WNOHANG) == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (waitpid(pid_, &st, WNOHANG) == 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &st, 0);
    }
}

std::string ChildProcess::log() const {
    std::ifstream in(log_, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

int open_fds(pid_t pid) {
    std::error_code ec;
    int n = 0;
    for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
        ++n;
    return ec ? -1 : n;
}

long rss_kib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    return -1;
}

double cpu_seconds(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t paren = text.rfind(')');  // the command name may hold spaces
    if (paren == std::string::npos) return -1;
    std::istringstream fields(text.substr(paren + 2));
    std::string f;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> f; ++i) {  // fields 14 and 15: utime, stime in clock ticks
        if (i == 14) utime = std::stoull(f);
        if (i == 15) stime = std::stoull(f);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

int http_get_status(uint16_t port, const std::string& path) {
    namespace beast = boost::beast;
    namespace bhttp = beast::http;
    try {
        boost::asio::io_context ioc;
        boost::asio::ip::tcp::socket s(ioc);
        s.connect({boost::asio::ip::make_address("127.0.0.1"), port});
        bhttp::request<bhttp::empty_body> req{bhttp::verb::get, path, 11};
        req.set(bhttp::field::host, "127.0.0.1");
        bhttp::write(s, req);
        beast::flat_buffer buf;
        bhttp::response<bhttp::string_body> res;
        bhttp::read(s, buf, res);
        return res.result_int();
    } catch (const std::exception&) {
        return 0;
    }
}

}  // namespace loom::bench
