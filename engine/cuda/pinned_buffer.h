// Pinned (page-locked) host buffers for the CUDA backend's staging copies, freed with cudaFreeHost.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>

#include "kernels/cuda_check.h"

namespace loom::engine::cuda {

struct PinnedDeleter {
    void operator()(void* p) const noexcept { cudaFreeHost(p); }
};
using PinnedPtr = std::unique_ptr<void, PinnedDeleter>;

inline PinnedPtr alloc_pinned(uint64_t bytes) {
    void* p = nullptr;
    LOOM_CUDA_CHECK(cudaMallocHost(&p, bytes));
    return PinnedPtr(p);
}

}  // namespace loom::engine::cuda
