// The progress display of `loom pull`.
#include "cli/progress.h"

#include <algorithm>

namespace loom::cli {

std::string human_bytes(uint64_t b) {
    char s[32];
    if (b >= 1000000000ull)
        std::snprintf(s, sizeof s, "%.2f GB", b / 1e9);
    else if (b >= 1000000ull)
        std::snprintf(s, sizeof s, "%.1f MB", b / 1e6);
    else if (b >= 1000ull)
        std::snprintf(s, sizeof s, "%.1f kB", b / 1e3);
    else
        std::snprintf(s, sizeof s, "%llu B", static_cast<unsigned long long>(b));
    return s;
}

Progress::Progress(std::string label, uint64_t start, uint64_t total, bool tty, std::FILE* out)
    : label_(std::move(label)),
      start_(start),
      done_(start),
      total_(total),
      tty_(tty),
      out_(out),
      began_(std::chrono::steady_clock::now()) {
    if (!tty_) line();
}

void Progress::advance(uint64_t bytes) {
    done_ += bytes;
    if (tty_) {
        const auto now = std::chrono::steady_clock::now();
        if (now - last_draw_ >= std::chrono::milliseconds(100)) draw(false), last_draw_ = now;
    } else if (total_ > 0 && int(done_ * 10 / total_) > last_decile_) {
        line();
    }
}

void Progress::finish() {
    if (tty_)
        draw(true);
    else if (total_ == 0 || last_decile_ < 10)
        line();
}

void Progress::draw(bool final) {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - began_).count();
    const double rate = secs > 0 ? (done_ - start_) / secs : 0;
    std::string bar;
    if (total_ > 0) {
        const int width = 30, filled = int(std::min<uint64_t>(done_, total_) * width / total_);
        bar = "[" + std::string(filled, '#') + std::string(width - filled, '-') + "] ";
        bar += std::to_string(done_ * 100 / total_) + "% ";
    }
    std::string eta;
    if (total_ > done_ && rate > 0) {
        const auto left = static_cast<unsigned long>((total_ - done_) / rate);
        char s[32];
        std::snprintf(s, sizeof s, "  ETA %lu:%02lu", left / 60, left % 60);
        eta = s;
    }
    const std::string sizes = human_bytes(done_) + (total_ ? " / " + human_bytes(total_) : "");
    std::fprintf(out_, "\r%s %s%s  %s/s%s\033[K%s", label_.c_str(), bar.c_str(), sizes.c_str(),
                 human_bytes(static_cast<uint64_t>(rate)).c_str(), eta.c_str(), final ? "\n" : "");
    std::fflush(out_);
}

void Progress::line() {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - began_).count();
    const double rate = secs > 0 ? (done_ - start_) / secs : 0;
    if (total_ > 0) {
        last_decile_ = int(done_ * 10 / total_);
        std::fprintf(out_, "%s: %d%% (%s of %s, %s/s)\n", label_.c_str(), int(done_ * 100 / total_),
                     human_bytes(done_).c_str(), human_bytes(total_).c_str(),
                     human_bytes(static_cast<uint64_t>(rate)).c_str());
    } else {
        std::fprintf(out_, "%s: %s\n", label_.c_str(), human_bytes(done_).c_str());
    }
    std::fflush(out_);
}

}  // namespace loom::cli
