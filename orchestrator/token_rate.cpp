// The sliding one-minute token count behind each worker's tokens/s.
#include "orchestrator/token_rate.h"

namespace loom::orchestrator {

int64_t TokenRate::second_of(Clock::time_point t) {
    // +1: a bucket's second 0 means "never written"; steady_clock's epoch may be the boot.
    return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count() + 1;
}

void TokenRate::add(int64_t tokens, Clock::time_point now) {
    if (tokens <= 0) return;
    const int64_t s = second_of(now);
    const size_t i = static_cast<size_t>(s % kWindowS);
    if (second_[i] != s) {
        second_[i] = s;
        tokens_[i] = 0;
    }
    tokens_[i] += tokens;
}

double TokenRate::per_second(Clock::time_point now) const {
    const int64_t s = second_of(now);
    int64_t sum = 0;
    for (size_t i = 0; i < tokens_.size(); ++i)
        if (second_[i] > s - kWindowS && second_[i] <= s) sum += tokens_[i];
    return static_cast<double>(sum) / kWindowS;
}

}  // namespace loom::orchestrator
