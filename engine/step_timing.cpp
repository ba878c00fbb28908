// Step timings: KvManager steps timed by the wall clock; copy bandwidth from kernels/ or memcpy.
#include "engine/step_timing.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <span>

#ifdef LOOM_HAVE_CUDA
#include "kernels/device_info.h"
#endif

namespace loom::engine {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Host memcpy of 128 MiB: the median of 7 timed copies after a warm-up that also touches the pages.
double host_copy_bandwidth_gbps() {
    constexpr size_t kBytes = size_t{128} << 20;
    std::vector<char> a(kBytes, 1), b(kBytes, 0);
    std::vector<double> s;
    for (int i = 0; i < 8; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        std::memcpy(b.data(), a.data(), kBytes);
        if (i > 0) s.push_back(seconds_since(t0));
        a[static_cast<size_t>(i)] = b[kBytes - 1 - static_cast<size_t>(i)];  // keeps the copies observable
    }
    std::nth_element(s.begin(), s.begin() + static_cast<long>(s.size() / 2), s.end());
    return 2.0 * static_cast<double>(kBytes) / s[s.size() / 2] / 1e9;
}

SamplingParams greedy() {
    SamplingParams p;
    p.temperature = 0;
    return p;
}

}  // namespace

uint64_t weight_bytes(const Backend& backend) {
    for (const MemoryUse& u : backend.memory().uses)
        if (u.purpose == "weights") return u.used;
    return 0;
}

double measure_copy_bandwidth_gbps(const Backend& backend, int device) {
#ifdef LOOM_HAVE_CUDA
    if (backend.name() == "cuda") return kernels::measure_copy_bandwidth_gbps(device);
#else
    (void)device;
#endif
    (void)backend;
    return host_copy_bandwidth_gbps();
}

double floor_ms(uint64_t weight_bytes, double gbps) { return static_cast<double>(weight_bytes) / (gbps * 1e9) * 1e3; }

std::vector<int32_t> random_tokens(int n_vocab, int n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> id(0, n_vocab - 1);
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = id(rng);
    return t;
}

DecodeSteps::DecodeSteps(Backend& backend, int batch, int max_positions, int context)
    : kv_(backend),
      batch_(batch),
      max_positions_(max_positions),
      context_(context),
      greedy_(greedy()),
      history_(static_cast<size_t>(batch)),
      entries_(static_cast<size_t>(batch)) {
    open_all();
}

DecodeSteps::~DecodeSteps() {
    for (int s : seqs_) kv_.close(s);
}

void DecodeSteps::open_all() {
    for (int s : seqs_) kv_.close(s);
    seqs_.clear();
    const int n_vocab = kv_.backend().config().n_vocab;
    for (int i = 0; i < batch_; ++i) {
        auto& h = history_[static_cast<size_t>(i)];
        seqs_.push_back(kv_.open());
        h = random_tokens(n_vocab, context_, static_cast<uint32_t>(i));
        const int chunk = kv_.backend().max_batch_tokens();
        for (int done = 0; done < context_; done += chunk) {  // the last chunk samples the first token
            const int n = std::min(chunk, context_ - done);
            const bool last = done + n == context_;
            const BatchEntry e{seqs_.back(),
                               std::span<const int32_t>(h).subspan(done, n),
                               last ? &greedy_ : nullptr,
                               std::span<const int32_t>(h).first(done + n),
                               0,
                               -1};
            const auto out = kv_.step(std::span(&e, 1));
            if (last) h.push_back(out.front().token.token);
        }
    }
}

double DecodeSteps::step() {
    if (static_cast<int>(history_.front().size()) >= max_positions_) open_all();
    for (size_t i = 0; i < entries_.size(); ++i) {
        const auto& h = history_[i];
        entries_[i] = {seqs_[i], std::span<const int32_t>(&h.back(), 1), &greedy_, h, h.size(), -1};
    }
    const auto t0 = std::chrono::steady_clock::now();
    const auto out = kv_.step(entries_);
    const double s = seconds_since(t0);
    for (size_t i = 0; i < entries_.size(); ++i) history_[i].push_back(out[i].token.token);
    return s;
}

PrefillSteps::PrefillSteps(Backend& backend, int tokens)
    : kv_(backend), prompt_(random_tokens(backend.config().n_vocab, tokens, 99)), greedy_(greedy()) {}

double PrefillSteps::run() {
    const int seq = kv_.open();
    const BatchEntry e{seq, prompt_, &greedy_, prompt_, 0, -1};
    const auto t0 = std::chrono::steady_clock::now();
    kv_.step(std::span(&e, 1));
    const double s = seconds_since(t0);
    kv_.close(seq);
    return s;
}

}  // namespace loom::engine
