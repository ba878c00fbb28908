// CUDA inventory and the device probe kernel.
#include "kernels/cuda_check.h"
#include "kernels/device_info.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <vector>

namespace loom::kernels {

namespace {

std::string format_uuid(const cudaUUID_t& u) {
    const auto* b = reinterpret_cast<const unsigned char*>(u.bytes);
    char s[64];
    std::snprintf(s, sizeof s, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                  b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return s;
}

// out[i] = i * 3 + seed: every element depends on its index, so unwritten or misplaced writes show.
__global__ void probe_kernel(uint32_t* out, uint32_t n, uint32_t seed) {
    const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = i * 3u + seed;
}

}  // namespace

CudaInventory query_cuda(bool free_memory) {
    CudaInventory inv;
    cudaDriverGetVersion(&inv.driver_version);
    cudaRuntimeGetVersion(&inv.runtime_version);
    int count = 0;
    const cudaError_t rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess) {
        inv.error = std::string(cudaGetErrorName(rc)) + ": " + cudaGetErrorString(rc);
        if (inv.driver_version == 0) inv.error = "no NVIDIA driver found (libcuda is not loadable); " + inv.error;
        cudaGetLastError();  // clear the sticky error so later calls start clean
        return inv;
    }
    if (count == 0) {
        inv.error = "the CUDA driver reports no devices";
        return inv;
    }
    for (int d = 0; d < count; ++d) {
        cudaDeviceProp p{};
        if (cudaGetDeviceProperties(&p, d) != cudaSuccess) continue;
        DeviceInfo info;
        info.index = d;
        info.name = p.name;
        info.uuid = format_uuid(p.uuid);
        info.cc_major = p.major;
        info.cc_minor = p.minor;
        info.multiprocessors = p.multiProcessorCount;
        info.vram_total = p.totalGlobalMem;
        size_t free_b = 0, total_b = 0;
        if (free_memory && cudaSetDevice(d) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
            info.vram_free = free_b;
            info.vram_total = total_b;
        }
        inv.devices.push_back(info);
    }
    return inv;
}

void probe_device(int device) {
    LOOM_CUDA_CHECK(cudaSetDevice(device));
    constexpr uint32_t n = 1u << 16;
    const uint32_t seed = 0x9e3779b9u ^ static_cast<uint32_t>(device);
    uint32_t* d_out = nullptr;
    LOOM_CUDA_CHECK(cudaMalloc(&d_out, n * sizeof(uint32_t)));
    std::vector<uint32_t> host(n, 0xdeadbeefu);
    try {
        LOOM_CUDA_CHECK(cudaMemset(d_out, 0xff, n * sizeof(uint32_t)));  // poison
        probe_kernel<<<(n + 255) / 256, 256>>>(d_out, n, seed);
        LOOM_CUDA_CHECK_LAUNCH("probe_kernel");
        LOOM_CUDA_CHECK(cudaMemcpy(host.data(), d_out, n * sizeof(uint32_t), cudaMemcpyDeviceToHost));
    } catch (...) {
        cudaFree(d_out);
        throw;
    }
    LOOM_CUDA_CHECK(cudaFree(d_out));
    for (uint32_t i = 0; i < n; ++i)
        if (host[i] != i * 3u + seed)
            throw CudaError(cudaErrorUnknown, "device " + std::to_string(device) +
                                                  " probe kernel wrote a wrong value at " + std::to_string(i));
}

double measure_copy_bandwidth_gbps(int device, uint64_t bytes) {
    LOOM_CUDA_CHECK(cudaSetDevice(device));
    void *src = nullptr, *dst = nullptr;
    cudaStream_t stream = nullptr;
    cudaEvent_t start = nullptr, stop = nullptr;
    const auto release = [&] {
        cudaFree(src);
        cudaFree(dst);
        if (start) cudaEventDestroy(start);
        if (stop) cudaEventDestroy(stop);
        if (stream) cudaStreamDestroy(stream);
    };
    try {
        LOOM_CUDA_CHECK(cudaMalloc(&src, bytes));
        LOOM_CUDA_CHECK(cudaMalloc(&dst, bytes));
        LOOM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        LOOM_CUDA_CHECK(cudaEventCreate(&start));
        LOOM_CUDA_CHECK(cudaEventCreate(&stop));
        LOOM_CUDA_CHECK(cudaMemsetAsync(src, 0x5A, bytes, stream));
        for (int i = 0; i < 3; ++i) LOOM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
        std::vector<float> ms;
        for (int i = 0; i < 25; ++i) {
            LOOM_CUDA_CHECK(cudaEventRecord(start, stream));
            LOOM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
            LOOM_CUDA_CHECK(cudaEventRecord(stop, stream));
            LOOM_CUDA_CHECK(cudaEventSynchronize(stop));
            float t = 0;
            LOOM_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
            ms.push_back(t);
        }
        std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
        release();
        return 2.0 * static_cast<double>(bytes) / (ms[ms.size() / 2] * 1e-3) / 1e9;
    } catch (...) {
        release();
        throw;
    }
}

}  // namespace loom::kernels
