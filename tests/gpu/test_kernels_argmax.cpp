// Argmax on the GPU against a CPU scan: exact indices, ties to the lowest id, NaN and -0 rules.
#include <cstdint>
#include <string>
#include <vector>

#include "catch.hpp"
#include "kernel_cases/argmax_cases.h"
#include "kernel_test_support.h"
#include "kernels/argmax.h"

using namespace loom;
using test::DeviceBuffer;

namespace {

std::vector<int32_t> gpu_argmax(const std::vector<float>& x, int rows, int n) {
    DeviceBuffer<float> d_x(x);
    DeviceBuffer<int32_t> d_out(static_cast<size_t>(rows));
    d_out.poison();
    test::TestStream stream;
    kernels::argmax(d_x.get(), rows, n, d_out.get(), stream.get());
    CHECK(d_out.guard_intact());
    return d_out.download();
}

void check_rows(const std::vector<float>& x, int rows, int n, const std::string& what) {
    INFO(what);
    const auto out = gpu_argmax(x, rows, n);
    const auto ref = kcases::argmax_reference(x, rows, n);
    for (int r = 0; r < rows; ++r) {
        INFO("row " << r);
        CHECK(out[r] == ref[r]);
    }
}

}  // namespace

TEST_CASE("argmax finds the largest logit of each row", "[gpu][argmax]") {
    for (const auto& c : kcases::argmax_test_cases()) check_rows(kcases::argmax_inputs(c), c.rows, c.n, c.name());
}

// The shapes kernel_bench times, checked as it runs them.
TEST_CASE("argmax at kernel_bench's shapes matches the CPU scan", "[gpu][argmax][bench_shapes]") {
    for (const auto& m : kcases::bench_models())
        for (const auto& c : kcases::argmax_bench_cases(m))
            check_rows(kcases::argmax_inputs(c), c.rows, c.n, m.name + " " + c.name());
}

// Ties go to the lowest index; -0 ties +0; a NaN wins so it cannot hide.
TEST_CASE("argmax gives the planted rows' indices: ties, infinities, -0 and NaN", "[gpu][argmax]") {
    for (const auto& p : kcases::argmax_planted_cases()) {
        INFO(p.name);
        const auto out = gpu_argmax(p.x, p.rows, p.n);
        for (int r = 0; r < p.rows; ++r) {
            INFO("row " << r);
            CHECK(out[r] == p.expected[r]);
        }
    }
}
