// What CUDA sees on this machine (driver, runtime, devices), and a probe that a device really runs
// our kernels. Plain C++: no CUDA headers leak to callers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loom::kernels {

struct DeviceInfo {
    int index = 0;
    std::string name;
    std::string uuid;  // "GPU-xxxxxxxx-...."
    int cc_major = 0;
    int cc_minor = 0;
    int multiprocessors = 0;
    uint64_t vram_total = 0;
    uint64_t vram_free = 0;
};

struct CudaInventory {
    int driver_version = 0;  // e.g. 13000 for 13.0; 0 when no driver
    int runtime_version = 0;
    std::vector<DeviceInfo> devices;
    std::string error;  // why no device is usable (empty when devices were found)
};

// Never throws: a machine without driver or GPU gives an empty device list and the reason.
// free_memory false: no CUDA context is created on any device (cudaMemGetInfo needs one, and each
// context holds VRAM for the life of the process), and vram_free stays 0.
CudaInventory query_cuda(bool free_memory = true);

// Runs a small kernel on `device` and checks every element it wrote; throws CudaError naming the
// cause when the device cannot run loom's code (wrong architecture, no device, launch failure).
void probe_device(int device);

// The device's copy bandwidth in GB/s as 2 * size / time (bytes read + written) for device-to-device
// copies of `bytes` (default 1 GiB): the median of 25 timed copies after 3 warm-ups. The yardstick
// of the bandwidth floors in docs/PERFORMANCE.md. Allocates 2 * bytes for the duration.
double measure_copy_bandwidth_gbps(int device, uint64_t bytes = uint64_t{1} << 30);

}  // namespace loom::kernels
