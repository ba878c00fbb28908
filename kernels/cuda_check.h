// CUDA error checking: every runtime call and every kernel launch goes through these macros, so a
// failure surfaces as a typed error naming the call, file and line instead of garbage later.
#pragma once

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

#include "core/errors.h"

namespace loom::kernels {

class CudaError : public DeviceError {
public:
    CudaError(cudaError_t code, const std::string& what) : DeviceError(what), code_(code) {}
    cudaError_t code() const { return code_; }

private:
    cudaError_t code_;
};

inline void check_cuda(cudaError_t rc, const char* expr, const char* file, int line) {
    if (rc != cudaSuccess)
        throw CudaError(rc, std::string(cudaGetErrorName(rc)) + " (" + cudaGetErrorString(rc) + ") from " + expr +
                                " at " + file + ":" + std::to_string(line));
}

}  // namespace loom::kernels

#define LOOM_CUDA_CHECK(expr) ::loom::kernels::check_cuda((expr), #expr, __FILE__, __LINE__)
// After every <<<...>>> launch: configuration errors show up here, not at the next sync.
#define LOOM_CUDA_CHECK_LAUNCH(name) \
    ::loom::kernels::check_cuda(cudaGetLastError(), "launch of " name, __FILE__, __LINE__)
