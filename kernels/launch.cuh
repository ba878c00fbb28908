// Kernel launches with programmatic dependent launch (PDL, sm_90+): the next kernel in the stream
// is scheduled while this one still runs and waits on the device, not in the launch queue, which
// takes most of the gap between the many small kernels of a decode step.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/cuda_check.h"
#include "kernels/launch.h"

namespace loom::kernels {

// The first statement of every kernel launched through launch_kernel: waits until the previous
// kernel of the stream has completed and its writes are visible (so it is safe before any read or
// write), then lets the following kernel's blocks be scheduled. A no-op before sm_90, and when the
// kernel was launched without the attribute.
__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

struct LaunchShape {
    dim3 grid;
    dim3 block;
    size_t shared_bytes = 0;
    cudaStream_t stream = nullptr;
};

// kernel<<<shape>>>(args...), with the PDL attribute where programmatic_launch_enabled(). Every kernel launched here
// must call wait_for_previous_kernel() before it touches memory that another kernel writes (before that, it may only
// read constants such as weights). Throws CudaError naming the kernel when the launch fails.
template <class... Params, class... Args>
void launch_kernel(const char* name, void (*kernel)(Params...), const LaunchShape& shape, Args&&... args) {
    cudaLaunchConfig_t config{};
    config.gridDim = shape.grid;
    config.blockDim = shape.block;
    config.dynamicSmemBytes = shape.shared_bytes;
    config.stream = shape.stream;
    cudaLaunchAttribute attribute{};
    if (programmatic_launch_enabled()) {
        attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attribute.val.programmaticStreamSerializationAllowed = 1;
        config.attrs = &attribute;
        config.numAttrs = 1;
    }
    check_cuda(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...), name, __FILE__, __LINE__);
}

}  // namespace loom::kernels
