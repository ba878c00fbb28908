// `loom gpu-check` as a user runs it: with a usable GPU it passes on stories260K (residency, 32
// tokens, 16 of them equal to the CPU's); without one it exits 3 naming the cause, never
// falling back to the CPU.
#include <string>

#include "catch.hpp"
#include "support/run_command.h"
#include "support/test_data.h"
#ifdef LOOM_HAVE_CUDA
#include "kernels/device_info.h"
#endif

using loom::test::run_command;

TEST_CASE("gpu-check passes on a usable GPU, or exits 3 naming why there is none", "[cli][gpu-check]") {
    const std::string model = loom::test::require_stories260k().string();
    const auto r = run_command(loom::test::loom_bin() + " gpu-check -m " + model);
    INFO(r.out << r.err);
#ifdef LOOM_HAVE_CUDA
    const auto inv = loom::kernels::query_cuda();
    if (inv.devices.empty()) {
        CHECK(r.exit_code == 3);
        CHECK_THAT(r.err, loom::test::contains(inv.error));
        CHECK_THAT(r.out, !loom::test::contains("PASS"));
        return;
    }
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.out, loom::test::contains("every arena device memory (cudaPointerGetAttributes): ok"));
    CHECK_THAT(r.out, loom::test::contains("32 greedy tokens on cuda"));
    CHECK_THAT(r.out, loom::test::contains("of weights through pinned staging"));
    CHECK_THAT(r.out, loom::test::contains("16/16"));
    CHECK_THAT(r.out, loom::test::contains(inv.devices.front().name));
    CHECK_THAT(r.out, loom::test::contains("PASS"));
#else
    CHECK(r.exit_code == 3);
    CHECK_THAT(r.err, loom::test::contains("no CUDA support"));
#endif
}

TEST_CASE("gpu-check without a model file is a usage error", "[cli][gpu-check]") {
    const auto r = run_command(loom::test::loom_bin() + " gpu-check -m /nonexistent/model.gguf");
    CHECK(r.exit_code != 0);
    CHECK(r.exit_code != 1);  // not a failed check: the input is bad (2) or there is no GPU (3)
}
