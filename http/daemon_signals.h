// What both daemons do with signals: SIGTERM/SIGINT taken synchronously by the main thread, SIGPIPE ignored.
#pragma once

#include <csignal>

namespace loom::http {

// Blocks SIGTERM and SIGINT in the calling thread (every thread it starts later inherits the mask)
// and ignores SIGPIPE (a client that leaves must not end the process); returns the set to wait on
// with sigtimedwait.
sigset_t block_stop_signals();

}  // namespace loom::http
