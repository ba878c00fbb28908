// Whether this build and machine can run the CUDA backend, and why not: shared by the commands that
// refuse (exit 3) instead of falling back to the CPU.
#pragma once

#include <string>

namespace loom::cli {

inline constexpr int kExitNoGpu = 3;

// Empty when a CUDA device is usable; else the cause (no driver, no device, a CPU-only build).
std::string cuda_unavailable_reason();

}  // namespace loom::cli
