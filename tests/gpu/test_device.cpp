// The CUDA inventory and the device probe on a real GPU.
#include "catch.hpp"
#include "kernels/cuda_check.h"
#include "kernels/device_info.h"

using namespace loom::kernels;

TEST_CASE("CUDA inventory reports driver, runtime and an sm_80+ device", "[gpu]") {
    const auto inv = query_cuda();
    REQUIRE(inv.error.empty());
    REQUIRE(inv.driver_version >= 12000);
    REQUIRE(inv.runtime_version >= 12000);
    REQUIRE_FALSE(inv.devices.empty());
    for (const auto& d : inv.devices) {
        CHECK(d.cc_major >= 8);
        CHECK(d.vram_total > 0);
        CHECK(d.vram_free <= d.vram_total);
        CHECK(d.uuid.rfind("GPU-", 0) == 0);
        CHECK(d.multiprocessors > 0);
    }
}

TEST_CASE("every device runs the probe kernel and writes every element", "[gpu]") {
    for (const auto& d : query_cuda().devices) REQUIRE_NOTHROW(probe_device(d.index));
}

TEST_CASE("a probe of a device that does not exist is a CudaError naming the call", "[gpu]") {
    const int missing = static_cast<int>(query_cuda().devices.size()) + 7;
    try {
        probe_device(missing);
        FAIL("probe of a missing device did not throw");
    } catch (const CudaError& e) {
        CHECK(std::string(e.what()).find("cudaSetDevice") != std::string::npos);
        CHECK(e.code() == cudaErrorInvalidDevice);
    }
}
