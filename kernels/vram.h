// The VRAM allocator: one cudaMalloc arena per purpose (weights, KV cache, workspace), reserved at
// load against a plan, bump sub-allocated with alignment, accounted and verified device-resident.
// Plain C++: no CUDA headers leak to callers.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/errors.h"

namespace loom::kernels {

enum class Purpose { weights, kv_cache, workspace };
inline constexpr std::size_t kPurposeCount = 3;
inline constexpr std::array<Purpose, kPurposeCount> kAllPurposes{Purpose::weights, Purpose::kv_cache,
                                                                 Purpose::workspace};
const char* purpose_name(Purpose p);

// Every VRAM failure at load is one of these, so callers map them to exit code 3 in one place.
class VramError : public DeviceError {
public:
    using DeviceError::DeviceError;
};

// The device cannot run loom's kernels (they need sm_80 or newer).
class ComputeCapabilityError : public VramError {
public:
    ComputeCapabilityError(int device, const std::string& name, int cc_major, int cc_minor);
    int cc_major = 0;
    int cc_minor = 0;
};

// The plan does not fit in free VRAM; nothing was allocated.
class InsufficientVramError : public VramError {
public:
    using VramError::VramError;
    std::array<uint64_t, kPurposeCount> required{};
    std::array<uint64_t, kPurposeCount> available{};  // free VRAM left for each purpose after those before it
};

// A sub-allocation does not fit in what is left of its purpose's arena.
class ArenaExhaustedError : public VramError {
public:
    ArenaExhaustedError(Purpose p, uint64_t requested, uint64_t used, uint64_t capacity);
    Purpose purpose;
    uint64_t requested = 0;
    uint64_t used = 0;
    uint64_t capacity = 0;
};

// Bytes to reserve per purpose; a zero entry reserves no arena.
struct VramPlan {
    std::array<uint64_t, kPurposeCount> bytes{};
    uint64_t& operator[](Purpose p) { return bytes[static_cast<std::size_t>(p)]; }
    uint64_t operator[](Purpose p) const { return bytes[static_cast<std::size_t>(p)]; }
    uint64_t total() const;
};

struct PurposeUsage {
    Purpose purpose = Purpose::weights;
    uint64_t capacity = 0;  // the arena's size
    uint64_t used = 0;      // bytes handed out, alignment padding included
    uint64_t allocations = 0;
};

struct ResidencyEntry {
    Purpose purpose = Purpose::weights;
    const void* base = nullptr;
    uint64_t bytes = 0;
    int device = -1;          // as cudaPointerGetAttributes reports it
    std::string memory_type;  // "device", "host", "managed" or "unregistered"
    bool device_resident = false;
};

struct ResidencyReport {
    std::vector<ResidencyEntry> arenas;  // one per reserved arena
    bool all_device_resident() const;
};

// Throws ComputeCapabilityError unless `device` is sm_80 or newer (CudaError if it cannot be queried).
void require_compute_capability(int device);

// Owns the arenas of one device for the life of a loaded model; the forward pass only uses what
// allocate() handed out at load, so it never calls cudaMalloc.
class VramAllocator {
public:
    static constexpr uint64_t kDefaultAlignment = 256;

    // Checks the compute capability, checks the plan against cudaMemGetInfo's free bytes (throwing
    // InsufficientVramError before any allocation), reserves the arenas and verifies residency.
    VramAllocator(int device, const VramPlan& plan);
    ~VramAllocator();
    VramAllocator(const VramAllocator&) = delete;
    VramAllocator& operator=(const VramAllocator&) = delete;

    // A device pointer aligned to `alignment` (a power of two); throws ArenaExhaustedError.
    void* allocate(Purpose p, uint64_t bytes, uint64_t alignment = kDefaultAlignment);

    int device() const { return device_; }
    PurposeUsage usage(Purpose p) const;
    std::vector<PurposeUsage> usage() const;
    std::string report() const;  // one line per purpose: used / capacity, allocations

    // Asks cudaPointerGetAttributes about every arena (done once by the constructor, which throws
    // VramError when an arena is not device memory).
    ResidencyReport verify_residency() const;

private:
    struct Arena {
        void* base = nullptr;
        uint64_t capacity = 0;
        uint64_t used = 0;
        uint64_t allocations = 0;
    };
    const Arena& arena(Purpose p) const { return arenas_[static_cast<std::size_t>(p)]; }
    Arena& arena(Purpose p) { return arenas_[static_cast<std::size_t>(p)]; }
    void release() noexcept;

    int device_ = 0;
    std::array<Arena, kPurposeCount> arenas_{};
};

}  // namespace loom::kernels
