// Argmax on the GPU against a CPU scan: exact indices, ties to the lowest id, NaN and -0 rules.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "catch.hpp"
#include "kernel_test_support.h"
#include "kernels/argmax.h"

using namespace loom;
using test::DeviceBuffer;

namespace {

// The first NaN if there is one, else the lowest index of the largest value.
int32_t cpu_argmax(const float* x, int n) {
    for (int i = 0; i < n; ++i)
        if (std::isnan(x[i])) return i;
    int32_t best = 0;
    for (int i = 1; i < n; ++i)
        if (x[i] > x[best]) best = i;
    return best;
}

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
    for (int r = 0; r < rows; ++r) {
        INFO("row " << r);
        CHECK(out[r] == cpu_argmax(x.data() + static_cast<size_t>(r) * n, n));
    }
}

}  // namespace

TEST_CASE("argmax finds the largest logit of each row", "[gpu][argmax]") {
    uint32_t seed = 600;
    struct Shape {
        int rows, n;
    };
    // SmolLM2 (49152) and Qwen2.5 (151936) vocabularies, odd and tiny rows.
    for (const Shape s :
         {Shape{1, 49152}, Shape{3, 151936}, Shape{5, 37}, Shape{2, 1}, Shape{4, 1025}, Shape{8, 49152}})
        check_rows(test::random_normal(static_cast<size_t>(s.rows) * s.n, seed++, 0.f, 5.f), s.rows, s.n,
                   std::to_string(s.rows) + "x" + std::to_string(s.n));
}

TEST_CASE("argmax ties go to the lowest index", "[gpu][argmax]") {
    const int n = 49152, rows = 4;
    auto x = test::random_normal(static_cast<size_t>(rows) * n, 650, 0.f, 1.f);
    // Row 0: the maximum planted at two far-apart ids (owned by different threads).
    x[40000] = 100.f;
    x[1234] = 100.f;
    // Row 1: every value equal.
    for (int i = 0; i < n; ++i) x[n + i] = -3.5f;
    // Row 2: all -inf but one finite value near the end.
    for (int i = 0; i < n; ++i) x[2 * n + i] = -std::numeric_limits<float>::infinity();
    x[2 * n + n - 2] = -1e30f;
    // Row 3: all -inf: the lowest id wins.
    for (int i = 0; i < n; ++i) x[3 * n + i] = -std::numeric_limits<float>::infinity();
    const auto out = gpu_argmax(x, rows, n);
    CHECK(out[0] == 1234);
    CHECK(out[1] == 0);
    CHECK(out[2] == n - 2);
    CHECK(out[3] == 0);
}

TEST_CASE("argmax: -0 ties +0, and a NaN wins so it cannot hide", "[gpu][argmax]") {
    const int n = 3000, rows = 3;
    auto x = test::random_uniform(static_cast<size_t>(rows) * n, 660, -10.f, -1.f);
    x[2500] = -0.0f;  // row 0: -0 before +0 in thread order, +0 at the lower id
    x[17] = 0.0f;
    x[n + 5] = -0.0f;  // row 1: -0 at the lower id
    x[n + 2999] = 0.0f;
    x[2 * n + 100] = std::numeric_limits<float>::infinity();  // row 2: +inf, then NaNs (one negative)
    x[2 * n + 2000] = -std::numeric_limits<float>::quiet_NaN();
    x[2 * n + 2001] = std::numeric_limits<float>::quiet_NaN();
    const auto out = gpu_argmax(x, rows, n);
    CHECK(out[0] == 17);
    CHECK(out[1] == 5);
    CHECK(out[2] == 2000);
}
