// Download progress: a redrawn bar (bytes, rate, ETA) on a terminal, a plain line every 10% otherwise.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace loom::cli {

class Progress {
public:
    // `start`: bytes already there (a resumed download); `total` 0 when unknown.
    Progress(std::string label, uint64_t start, uint64_t total, bool tty, std::FILE* out = stderr);
    void advance(uint64_t bytes);
    void finish();

private:
    void draw(bool final);
    void line();

    std::string label_;
    uint64_t start_, done_, total_;
    bool tty_;
    std::FILE* out_;
    std::chrono::steady_clock::time_point began_, last_draw_{};
    int last_decile_ = -1;
};

// "12.3 MB" (powers of 1000, like download tools).
std::string human_bytes(uint64_t bytes);

}  // namespace loom::cli
