// The VRAM allocator: plan check against free memory, one cudaMalloc per purpose, bump
// sub-allocation, accounting and cudaPointerGetAttributes residency checks.
#include "kernels/cuda_check.h"
#include "kernels/vram.h"

#include <cuda_runtime.h>

#include <cstdio>

namespace loom::kernels {

namespace {

// cudaMalloc hands out memory in 2 MiB pages, so the fit check counts each arena rounded up to one.
constexpr uint64_t kAllocationGranularity = 2ull << 20;

uint64_t round_up(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

std::string bytes_text(uint64_t b) {
    char s[64];
    std::snprintf(s, sizeof s, "%llu bytes (%.2f GiB)", static_cast<unsigned long long>(b), b / double(1ull << 30));
    return s;
}

std::string device_label(int device, const cudaDeviceProp& p) {
    return "device " + std::to_string(device) + " (" + p.name + ", sm_" + std::to_string(p.major) +
           std::to_string(p.minor) + ")";
}

const char* memory_type_name(cudaMemoryType t) {
    switch (t) {
        case cudaMemoryTypeDevice: return "device";
        case cudaMemoryTypeHost: return "host";
        case cudaMemoryTypeManaged: return "managed";
        default: return "unregistered";
    }
}

}  // namespace

const char* purpose_name(Purpose p) {
    switch (p) {
        case Purpose::weights: return "weights";
        case Purpose::kv_cache: return "kv_cache";
        case Purpose::workspace: return "workspace";
    }
    return "?";
}

ComputeCapabilityError::ComputeCapabilityError(int device, const std::string& name, int cc_major_, int cc_minor_)
    : VramError("device " + std::to_string(device) + " (" + name + ") has compute capability " +
                std::to_string(cc_major_) + "." + std::to_string(cc_minor_) + "; loom needs 8.0 or newer"),
      cc_major(cc_major_),
      cc_minor(cc_minor_) {}

ArenaExhaustedError::ArenaExhaustedError(Purpose p, uint64_t requested_, uint64_t used_, uint64_t capacity_)
    : VramError(std::string("the ") + purpose_name(p) + " arena is exhausted: " + std::to_string(requested_) +
                " bytes requested, " + std::to_string(used_) + " of " + std::to_string(capacity_) +
                " bytes already used (" + std::to_string(capacity_ - used_) + " left)"),
      purpose(p),
      requested(requested_),
      used(used_),
      capacity(capacity_) {}

uint64_t VramPlan::total() const {
    uint64_t t = 0;
    for (const uint64_t b : bytes) t += b;
    return t;
}

bool ResidencyReport::all_device_resident() const {
    for (const auto& a : arenas)
        if (!a.device_resident) return false;
    return true;
}

void require_compute_capability(int device) {
    cudaDeviceProp p{};
    LOOM_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    if (p.major < 8) throw ComputeCapabilityError(device, p.name, p.major, p.minor);
}

VramAllocator::VramAllocator(int device, const VramPlan& plan) : device_(device) {
    require_compute_capability(device);
    LOOM_CUDA_CHECK(cudaSetDevice(device));
    cudaDeviceProp props{};
    LOOM_CUDA_CHECK(cudaGetDeviceProperties(&props, device));
    size_t free_b = 0, total_b = 0;
    LOOM_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));

    // Each purpose is offered what is still free after the purposes reserved before it.
    std::array<uint64_t, kPurposeCount> required{}, available{};
    uint64_t left = free_b;
    bool fits = true;
    std::string detail;
    for (const Purpose p : kAllPurposes) {
        const auto i = static_cast<std::size_t>(p);
        const uint64_t need = round_up(plan[p], kAllocationGranularity);
        required[i] = plan[p];
        available[i] = left;
        detail += std::string("; ") + purpose_name(p) + ": required " + bytes_text(plan[p]) + ", available " +
                  bytes_text(left);
        if (need > left) fits = false;
        left = need > left ? 0 : left - need;
    }
    if (!fits) {
        InsufficientVramError e("not enough VRAM on " + device_label(device, props) + ": required " +
                                bytes_text(plan.total()) + " in all, " + bytes_text(free_b) + " free of " +
                                bytes_text(total_b) + detail);
        e.required = required;
        e.available = available;
        throw e;
    }

    try {
        for (const Purpose p : kAllPurposes) {
            if (plan[p] == 0) continue;
            Arena& a = arena(p);
            const cudaError_t rc = cudaMalloc(&a.base, plan[p]);
            if (rc != cudaSuccess) {
                cudaGetLastError();  // an out-of-memory error is not sticky; clear it for later calls
                InsufficientVramError e(std::string("cudaMalloc of the ") + purpose_name(p) + " arena (" +
                                        bytes_text(plan[p]) + ") on " + device_label(device, props) +
                                        " failed: " + cudaGetErrorName(rc) + detail);
                e.required = required;
                e.available = available;
                throw e;
            }
            a.capacity = plan[p];
        }
        const ResidencyReport residency = verify_residency();
        for (const auto& r : residency.arenas)
            if (!r.device_resident)
                throw VramError(std::string("the ") + purpose_name(r.purpose) + " arena is " + r.memory_type +
                                " memory on device " + std::to_string(r.device) + ", not device memory on " +
                                std::to_string(device));
    } catch (...) {
        release();
        throw;
    }
}

VramAllocator::~VramAllocator() { release(); }

void VramAllocator::release() noexcept {
    if (cudaSetDevice(device_) != cudaSuccess) return;
    for (Arena& a : arenas_) {
        if (a.base) cudaFree(a.base);  // nothing useful to do with a failure while tearing down
        a = Arena{};
    }
}

void* VramAllocator::allocate(Purpose p, uint64_t bytes, uint64_t alignment) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        throw std::invalid_argument("VRAM alignment must be a power of two, not " + std::to_string(alignment));
    Arena& a = arena(p);
    // Align the address, not the offset, so alignments above cudaMalloc's own still hold.
    const uint64_t base = reinterpret_cast<uintptr_t>(a.base);
    const uint64_t start = round_up(base + a.used, alignment) - base;
    if (a.base == nullptr || start > a.capacity || bytes > a.capacity - start)
        throw ArenaExhaustedError(p, bytes, a.used, a.capacity);
    a.used = start + bytes;
    ++a.allocations;
    return static_cast<char*>(a.base) + start;
}

PurposeUsage VramAllocator::usage(Purpose p) const {
    const Arena& a = arena(p);
    return {p, a.capacity, a.used, a.allocations};
}

std::vector<PurposeUsage> VramAllocator::usage() const {
    std::vector<PurposeUsage> all;
    for (const Purpose p : kAllPurposes) all.push_back(usage(p));
    return all;
}

std::string VramAllocator::report() const {
    std::string s;
    uint64_t used = 0, capacity = 0;
    for (const auto& u : usage()) {
        char line[160];
        std::snprintf(line, sizeof line, "%-10s %14llu / %14llu bytes used, %llu allocations\n",
                      purpose_name(u.purpose), static_cast<unsigned long long>(u.used),
                      static_cast<unsigned long long>(u.capacity), static_cast<unsigned long long>(u.allocations));
        s += line;
        used += u.used;
        capacity += u.capacity;
    }
    char line[160];
    std::snprintf(line, sizeof line, "%-10s %14llu / %14llu bytes used\n", "total",
                  static_cast<unsigned long long>(used), static_cast<unsigned long long>(capacity));
    return s + line;
}

ResidencyReport VramAllocator::verify_residency() const {
    ResidencyReport report;
    for (const Purpose p : kAllPurposes) {
        const Arena& a = arena(p);
        if (a.base == nullptr) continue;
        cudaPointerAttributes attr{};
        LOOM_CUDA_CHECK(cudaPointerGetAttributes(&attr, a.base));
        ResidencyEntry e;
        e.purpose = p;
        e.base = a.base;
        e.bytes = a.capacity;
        e.device = attr.device;
        e.memory_type = memory_type_name(attr.type);
        e.device_resident = attr.type == cudaMemoryTypeDevice && attr.device == device_;
        report.arenas.push_back(e);
    }
    return report;
}

}  // namespace loom::kernels
