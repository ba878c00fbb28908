// cuda_unavailable_reason: asks the CUDA runtime through kernels/device_info in CUDA builds.
#include "cli/cuda_status.h"

#ifdef LOOM_HAVE_CUDA
#include "kernels/device_info.h"
#endif

namespace loom::cli {

std::string cuda_unavailable_reason() {
#ifdef LOOM_HAVE_CUDA
    const auto inv = kernels::query_cuda();
    if (inv.devices.empty()) return "no usable CUDA device (" + inv.error + ")";
    return "";
#else
    return "this build of loom has no CUDA support (configured with LOOM_WITH_CUDA=OFF)";
#endif
}

}  // namespace loom::cli
