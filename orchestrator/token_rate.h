// TokenRate: the tokens a worker produced over the last minute, in one-second buckets, for the
// tokens/s that /health and `loom ps` show.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

namespace loom::orchestrator {

// Not synchronised: the pool calls it under its own lock.
class TokenRate {
public:
    static constexpr int kWindowS = 60;
    using Clock = std::chrono::steady_clock;

    void add(int64_t tokens, Clock::time_point now);
    // The tokens added in the last kWindowS seconds (the current second included) over kWindowS:
    // a worker that started 10 s ago at 60 tokens/s shows 10 until its first minute is full.
    double per_second(Clock::time_point now) const;

private:
    static int64_t second_of(Clock::time_point t);
    std::array<int64_t, kWindowS> tokens_{};
    std::array<int64_t, kWindowS> second_{};  // the second each bucket counts; a stale one is ignored
};

}  // namespace loom::orchestrator
