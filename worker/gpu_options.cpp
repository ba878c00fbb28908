// --gpu's device choice and --vram-budget's byte sizes.
#include "worker/gpu_options.h"

#include <algorithm>
#include <cctype>
#include <cmath>
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

[[noreturn]] void no_such_gpu(const std::string& spec, const std::string& why, const std::vector<GpuCandidate>& visible) {
    throw std::invalid_argument("--gpu " + spec + ": " + why + "; visible CUDA devices: " + describe_gpus(visible));
}

// The multiplier a unit stands for, or 0 when it is none.
uint64_t unit_bytes(const std::string& unit) {
    if (unit.empty() || unit == "b") return 1;
    const std::string powers = "kmgt";
    const size_t p = powers.find(unit[0]);
    if (p == std::string::npos) return 0;
    const std::string rest = unit.substr(1);
    uint64_t base = 0;
    if (rest.empty() || rest == "ib") base = 1024;
    if (rest == "b") base = 1000;
    uint64_t m = base == 0 ? 0 : 1;
    for (size_t i = 0; i <= p && base > 0; ++i) m *= base;
    return m;
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
    const auto hex_digits = std::count_if(want.begin() + 4, want.end(), [](unsigned char c) { return std::isxdigit(c); });
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

uint64_t parse_byte_size(const std::string& text) {
    const auto bad = [&](const std::string& why) {
        return std::invalid_argument("'" + text + "' is not a byte size (" + why +
                                     "; e.g. 21474836480, 20G, 20GiB, 512M, 1.5G)");
    };
    size_t i = 0;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
    const std::string number = text.substr(0, i);
    if (number.empty() || std::count(number.begin(), number.end(), '.') > 1 || number == ".")
        throw bad("a number must come first");
    const uint64_t unit = unit_bytes(lower(text.substr(i)));
    if (unit == 0) throw bad("unknown unit '" + text.substr(i) + "'");
    const long double value = std::stold(number) * static_cast<long double>(unit);
    if (value >= 18446744073709551615.0L) throw bad("too large");
    const auto bytes = static_cast<uint64_t>(std::floor(value));
    if (bytes == 0) throw bad("it must be at least one byte");
    return bytes;
}

}  // namespace loom::worker
