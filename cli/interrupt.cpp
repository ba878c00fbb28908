// InterruptWatch / LineReader: a self-pipe the SIGINT handler writes to, polled beside stdin.
#include "cli/interrupt.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <stdexcept>
#include <system_error>

namespace loom::cli {
namespace {

volatile std::sig_atomic_t g_flag = 0;
int g_pipe[2] = {-1, -1};
struct sigaction g_previous {};

extern "C" void on_sigint(int) {
    const int saved = errno;
    g_flag = 1;
    const char byte = 1;
    [[maybe_unused]] const ssize_t n = ::write(g_pipe[1], &byte, 1);  // full pipe: already woken
    errno = saved;
}

// Empties the pipe; returns how many SIGINTs it held (one byte each).
int drain_pipe() {
    char buf[64];
    int count = 0;
    for (ssize_t n; (n = ::read(g_pipe[0], buf, sizeof buf)) > 0;) count += static_cast<int>(n);
    return count;
}

}  // namespace

InterruptWatch::InterruptWatch() {
    if (g_pipe[0] >= 0) throw std::logic_error("InterruptWatch: one at a time");
    if (::pipe2(g_pipe, O_NONBLOCK | O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a blocked read returns EINTR on the main thread
    ::sigaction(SIGINT, &sa, &g_previous);
}

InterruptWatch::~InterruptWatch() {
    ::sigaction(SIGINT, &g_previous, nullptr);
    ::close(g_pipe[0]);
    ::close(g_pipe[1]);
    g_pipe[0] = g_pipe[1] = -1;
}

bool InterruptWatch::interrupted() const { return g_flag != 0; }

void InterruptWatch::reset() { take(); }

int InterruptWatch::take() {
    g_flag = 0;  // before the drain: a SIGINT after it leaves both the flag and a byte
    return drain_pipe();
}

LineReader::Result LineReader::read(const InterruptWatch& watch, std::string& line) {
    for (;;) {
        if (const auto nl = pending_.find('\n'); nl != std::string::npos) {
            line = pending_.substr(0, nl);
            pending_.erase(0, nl + 1);
            return Result::line;
        }
        if (eof_) {
            if (pending_.empty()) return Result::end_of_input;
            line = std::move(pending_);
            pending_.clear();
            return Result::line;
        }
        if (watch.interrupted()) return Result::interrupted;
        pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {g_pipe[0], POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            throw std::system_error(errno, std::generic_category(), "poll on standard input");
        }
        if (fds[1].revents & POLLIN) continue;  // the flag is checked at the top
        if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        char buf[4096];
        const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            eof_ = true;
            continue;
        }
        pending_.append(buf, static_cast<size_t>(n));
    }
}

}  // namespace loom::cli
