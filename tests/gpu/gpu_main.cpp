// main() of GPU test programs: skip (exit 77, with the reason) when no CUDA device is usable,
// fail instead when LOOM_REQUIRE_GPU=1.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "catch_session.hpp"
#include "kernels/device_info.h"
#include "support/test_data.h"

int main(int argc, char** argv) {
    const auto inv = loom::kernels::query_cuda();
    if (inv.devices.empty()) {
        const char* require = std::getenv("LOOM_REQUIRE_GPU");
        if (require && std::strcmp(require, "1") == 0) {
            std::fprintf(stderr, "FAILED: LOOM_REQUIRE_GPU=1 but no usable CUDA device (%s)\n", inv.error.c_str());
            return 1;
        }
        loom::test::skip_program("no usable CUDA device (" + inv.error + "); set LOOM_REQUIRE_GPU=1 to fail instead");
    }
    const auto& d = inv.devices.front();
    std::printf("GPU tests on device 0: %s (sm_%d%d, %.1f GiB)\n", d.name.c_str(), d.cc_major, d.cc_minor,
                d.vram_total / double(1ull << 30));
    return Catch::Session().run(argc, argv);
}
