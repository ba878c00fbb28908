// The VRAM allocator on a real GPU: arenas, aligned sub-allocation, accounting, residency, refusal
// of plans larger than free VRAM, arena exhaustion and release on destruction.
#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "kernels/cuda_check.h"
#include "kernels/vram.h"

using namespace loom::kernels;

namespace {

constexpr uint64_t kMiB = 1ull << 20;

uint64_t free_vram() {
    size_t free_b = 0, total_b = 0;
    LOOM_CUDA_CHECK(cudaSetDevice(0));
    LOOM_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return free_b;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

uint64_t distance(uint64_t a, uint64_t b) { return a > b ? a - b : b - a; }

}  // namespace

TEST_CASE("device 0 passes the compute capability check; an older one is named in the error", "[gpu][vram]") {
    REQUIRE_NOTHROW(require_compute_capability(0));
    const ComputeCapabilityError e(1, "Tesla T4", 7, 5);
    CHECK(contains(e.what(), "device 1 (Tesla T4)"));
    CHECK(contains(e.what(), "7.5"));
    CHECK(contains(e.what(), "8.0"));
    CHECK(e.cc_major == 7);
    CHECK(e.cc_minor == 5);
}

TEST_CASE("a plan that fits gets device-resident arenas and aligned, disjoint sub-allocations", "[gpu][vram]") {
    VramPlan plan;
    plan[Purpose::weights] = 64 * kMiB;
    plan[Purpose::kv_cache] = 32 * kMiB;
    plan[Purpose::workspace] = 8 * kMiB + 1;  // sizes need not be page multiples
    VramAllocator vram(0, plan);

    struct Request {
        Purpose purpose;
        uint64_t bytes;
        uint64_t alignment;
    };
    const std::vector<Request> requests = {
        {Purpose::weights, 4096, 256},       {Purpose::weights, 1000, 256},   {Purpose::weights, 3 * kMiB, 4096},
        {Purpose::weights, 1, 256},          {Purpose::weights, 12345, 1024}, {Purpose::kv_cache, 16 * kMiB, 256},
        {Purpose::kv_cache, 16 * kMiB, 256}, {Purpose::workspace, 77, 256},   {Purpose::workspace, 4 * kMiB, 65536},
        {Purpose::workspace, 513, 512},
    };
    std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [begin, end) of every block
    std::array<uint64_t, kPurposeCount> requested{}, counts{};
    for (const auto& r : requests) {
        void* p = r.alignment == VramAllocator::kDefaultAlignment ? vram.allocate(r.purpose, r.bytes)
                                                                  : vram.allocate(r.purpose, r.bytes, r.alignment);
        const auto addr = reinterpret_cast<uintptr_t>(p);
        CHECK(addr % r.alignment == 0);
        ranges.emplace_back(addr, addr + r.bytes);
        requested[static_cast<size_t>(r.purpose)] += r.bytes;
        ++counts[static_cast<size_t>(r.purpose)];
        // The block is usable device memory.
        LOOM_CUDA_CHECK(cudaMemset(p, 0x5a, r.bytes));
    }
    LOOM_CUDA_CHECK(cudaDeviceSynchronize());
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i) CHECK(ranges[i - 1].second <= ranges[i].first);

    // Accounting: what each arena used is what was asked for plus the alignment padding between blocks.
    uint64_t used_sum = 0;
    for (const Purpose p : kAllPurposes) {
        const auto u = vram.usage(p);
        const auto i = static_cast<size_t>(p);
        CHECK(u.capacity == plan[p]);
        CHECK(u.allocations == counts[i]);
        CHECK(u.used >= requested[i]);
        CHECK(u.used <= u.capacity);
        used_sum += u.used;
    }
    // kv_cache asked only for 256-multiples at 256 alignment: no padding at all.
    CHECK(vram.usage(Purpose::kv_cache).used == 32 * kMiB);
    const std::string report = vram.report();
    INFO(report);
    CHECK(contains(report, "weights"));
    CHECK(contains(report, "kv_cache"));
    CHECK(contains(report, "workspace"));
    CHECK(contains(report, std::to_string(used_sum)));

    const auto residency = vram.verify_residency();
    REQUIRE(residency.arenas.size() == kPurposeCount);
    CHECK(residency.all_device_resident());
    for (const auto& a : residency.arenas) {
        CHECK(a.memory_type == "device");
        CHECK(a.device == 0);
        CHECK(a.bytes == plan[a.purpose]);
    }
}

TEST_CASE("a plan larger than free VRAM is refused before allocating, naming required and available bytes",
          "[gpu][vram]") {
    const uint64_t before = free_vram();
    VramPlan plan;
    plan[Purpose::weights] = before / 2;
    plan[Purpose::kv_cache] = before / 2;
    plan[Purpose::workspace] = 256 * kMiB;
    try {
        VramAllocator vram(0, plan);
        FAIL("a plan of " << plan.total() << " bytes with " << before << " free was accepted");
    } catch (const InsufficientVramError& e) {
        const std::string msg = e.what();
        INFO(msg);
        for (const Purpose p : kAllPurposes) {
            CHECK(contains(msg, std::string(purpose_name(p)) + ": required " + std::to_string(plan[p]) + " bytes"));
            CHECK(e.required[static_cast<size_t>(p)] == plan[p]);
        }
        CHECK(contains(msg, "available"));
        CHECK(contains(msg, std::to_string(plan.total())));
        CHECK(distance(e.available[0], before) <= kMiB);
        CHECK(e.available[0] >= e.available[1]);
        CHECK(e.available[1] >= e.available[2]);
        CHECK(e.available[2] < plan[Purpose::workspace]);
    }
    CHECK(distance(free_vram(), before) <= kMiB);
}

TEST_CASE("an exhausted arena is a typed error naming the purpose and the sizes", "[gpu][vram]") {
    VramPlan plan;
    plan[Purpose::workspace] = kMiB;
    VramAllocator vram(0, plan);
    vram.allocate(Purpose::workspace, 768 * 1024);
    try {
        vram.allocate(Purpose::workspace, 512 * 1024);
        FAIL("over-allocation of the workspace arena did not throw");
    } catch (const ArenaExhaustedError& e) {
        const std::string msg = e.what();
        INFO(msg);
        CHECK(e.purpose == Purpose::workspace);
        CHECK(e.requested == 512 * 1024);
        CHECK(e.used == 768 * 1024);
        CHECK(e.capacity == kMiB);
        CHECK(contains(msg, "workspace"));
        CHECK(contains(msg, "524288 bytes requested"));
        CHECK(contains(msg, "786432 of 1048576 bytes"));
    }
    // The failure changed nothing: the rest still fits.
    CHECK(vram.usage(Purpose::workspace).used == 768 * 1024);
    CHECK(vram.allocate(Purpose::workspace, 256 * 1024) != nullptr);
    // A purpose the plan gave no arena has nothing to hand out.
    CHECK_THROWS_AS(vram.allocate(Purpose::kv_cache, 1), ArenaExhaustedError);
    CHECK_THROWS_AS(vram.allocate(Purpose::workspace, 0, 3), std::invalid_argument);
}

TEST_CASE("destroying the allocator gives every arena back", "[gpu][vram]") {
    const uint64_t before = free_vram();
    {
        VramPlan plan;
        plan[Purpose::weights] = 512 * kMiB;
        plan[Purpose::kv_cache] = 256 * kMiB;
        plan[Purpose::workspace] = 64 * kMiB;
        VramAllocator vram(0, plan);
        CHECK(free_vram() + plan.total() - kMiB <= before);
    }
    CHECK(distance(free_vram(), before) <= kMiB);
}
