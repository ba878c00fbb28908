// Whether kernel launches use programmatic dependent launch on this device.
#include "kernels/launch.cuh"

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace loom::kernels {

namespace {
thread_local int scope_depth = 0;
}  // namespace

ProgrammaticLaunchScope::ProgrammaticLaunchScope() { ++scope_depth; }
ProgrammaticLaunchScope::~ProgrammaticLaunchScope() { --scope_depth; }

bool programmatic_launch_enabled() {
    if (scope_depth == 0) return false;
    static const bool allowed = [] {
        const char* v = std::getenv("LOOM_PDL");
        return !(v && std::strcmp(v, "0") == 0);
    }();
    if (!allowed) return false;
    // Per device: 0 unknown, 1 off, 2 on.
    static std::array<std::atomic<int>, 64> state{};
    int device = 0;
    LOOM_CUDA_CHECK(cudaGetDevice(&device));
    if (device < 0 || device >= static_cast<int>(state.size())) return false;
    int s = state[static_cast<size_t>(device)].load(std::memory_order_relaxed);
    if (s == 0) {
        int major = 0;
        LOOM_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
        s = major >= 9 ? 2 : 1;
        state[static_cast<size_t>(device)].store(s, std::memory_order_relaxed);
    }
    return s == 2;
}

}  // namespace loom::kernels
