// block_stop_signals: the signal mask loom-worker and loom-orchestrator start with.
#include "http/daemon_signals.h"

#include <pthread.h>

namespace loom::http {

sigset_t block_stop_signals() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
    return signals;
}

}  // namespace loom::http
