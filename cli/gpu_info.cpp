// `loom gpu-info [--json]`: driver and runtime versions and every CUDA device loom could run on;
// with no usable device the cause goes to stderr and the exit code is 3.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#ifdef LOOM_HAVE_CUDA
#include "kernels/device_info.h"
#endif

namespace loom::cli {
namespace {

constexpr int kExitNoDevice = 3;

#ifdef LOOM_HAVE_CUDA
// CUDA encodes versions as 1000 * major + 10 * minor.
std::string version_text(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }

double gib(uint64_t b) { return b / double(1ull << 30); }

// Why none of the devices is usable, or empty when one is (loom's kernels need sm_80+).
std::string unusable_reason(const kernels::CudaInventory& inv) {
    if (inv.devices.empty()) return "no usable CUDA device: " + inv.error;
    std::string reason;
    for (const auto& d : inv.devices) {
        if (d.cc_major >= 8) return {};
        reason += (reason.empty() ? "" : "; ") + std::string("device ") + std::to_string(d.index) + " (" + d.name +
                  ") has compute capability " + std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor) +
                  " < 8.0";
    }
    return "no usable CUDA device: " + reason;
}

int run(bool json) {
    const auto inv = kernels::query_cuda();
    if (const std::string reason = unusable_reason(inv); !reason.empty()) {
        std::fprintf(stderr, "loom gpu-info: %s\n", reason.c_str());
        return kExitNoDevice;
    }
    if (json) {
        nlohmann::json j;
        j["driver_version"] = version_text(inv.driver_version);
        j["runtime_version"] = version_text(inv.runtime_version);
        j["devices"] = nlohmann::json::array();
        for (const auto& d : inv.devices)
            j["devices"].push_back(
                {{"index", d.index},
                 {"name", d.name},
                 {"uuid", d.uuid},
                 {"compute_capability", std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor)},
                 {"multiprocessors", d.multiprocessors},
                 {"vram_free_bytes", d.vram_free},
                 {"vram_total_bytes", d.vram_total}});
        std::printf("%s\n", j.dump().c_str());
        return 0;
    }
    std::printf("CUDA driver %s, runtime %s\n", version_text(inv.driver_version).c_str(),
                version_text(inv.runtime_version).c_str());
    for (const auto& d : inv.devices)
        std::printf(
            "device %d: %s\n  uuid %s\n  compute capability %d.%d, %d multiprocessors\n"
            "  VRAM %.2f GiB free of %.2f GiB (%llu / %llu bytes)\n",
            d.index, d.name.c_str(), d.uuid.c_str(), d.cc_major, d.cc_minor, d.multiprocessors, gib(d.vram_free),
            gib(d.vram_total), static_cast<unsigned long long>(d.vram_free),
            static_cast<unsigned long long>(d.vram_total));
    return 0;
}
#else
int run(bool) {
    std::fprintf(stderr,
                 "loom gpu-info: this build of loom has no CUDA support (configured with LOOM_WITH_CUDA=OFF)\n");
    return kExitNoDevice;
}
#endif

}  // namespace

void register_gpu_info(CLI::App& app, int& exit_code) {
    auto* cmd =
        app.add_subcommand("gpu-info", "Show the CUDA driver, runtime and devices (exit 3 when none is usable)");
    auto json = std::make_shared<bool>(false);
    cmd->add_flag("--json", *json, "Print one JSON object");
    cmd->callback([json, &exit_code] { exit_code = run(*json); });
}

}  // namespace loom::cli
