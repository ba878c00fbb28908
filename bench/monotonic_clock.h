// CLOCK_MONOTONIC in nanoseconds: the clock sse_loadgen stamps its chunks with and
// orchestrator_overhead reads them against (both run on the same machine).
#pragma once

#include <cstdint>
#include <ctime>

namespace loom::bench {

inline int64_t monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace loom::bench
