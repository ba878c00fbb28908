// --gpu's device choice.
#include "worker/gpu_options.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace loom::worker {

namespace {

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

bool all_digits(const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

[[noreturn]] void no_such_gpu(const std::string& spec, const std::string& why,
                              const std::vector<GpuCandidate>& visible) {
    throw std::invalid_argument("--gpu " + spec + ": " + why + "; visible CUDA devices: " + describe_gpus(visible));
}

}  // namespace

std::string describe_gpus(const std::vector<GpuCandidate>& visible) {
    if (visible.empty()) return "none";
    std::string out;
    for (const GpuCandidate& g : visible)
        out += (out.empty() ? "" : ", ") + std::to_string(g.index) + " " + g.name + " " + g.uuid;
    return out;
}

const GpuCandidate& select_gpu(const std::string& spec, const std::vector<GpuCandidate>& visible) {
    if (all_digits(spec)) {
        for (const GpuCandidate& g : visible)
            if (spec.size() <= 9 && std::stoi(spec) == g.index) return g;
        no_such_gpu(spec, "no device with this index", visible);
    }
    std::string want = lower(spec);
    if (want.rfind("gpu-", 0) != 0) want = "gpu-" + want;
    const auto hex_digits =
        std::count_if(want.begin() + 4, want.end(), [](unsigned char c) { return std::isxdigit(c); });
    if (hex_digits < 8)
        no_such_gpu(spec, "neither a device index nor a UUID (GPU-… with at least 8 hex digits)", visible);
    const GpuCandidate* found = nullptr;
    int matches = 0;
    for (const GpuCandidate& g : visible) {
        const std::string uuid = lower(g.uuid);
        if (uuid == want) return g;
        if (uuid.rfind(want, 0) == 0) {
            found = &g;
            ++matches;
        }
    }
    if (matches == 1) return *found;
    no_such_gpu(spec, matches == 0 ? "no device with this UUID" : "this UUID prefix names several devices", visible);
}
}  // namespace loom::worker
