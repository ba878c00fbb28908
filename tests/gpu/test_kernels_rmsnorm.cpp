// RMSNorm on the GPU against engine::cpu::rmsnorm, batched rows, in place and not.
#include <string>
#include <vector>

#include "catch.hpp"
#include "engine/cpu/cpu_ops.h"
#include "kernel_test_support.h"
#include "kernels/rmsnorm.h"

using namespace loom;
using test::DeviceBuffer;

namespace {

constexpr double kMaxNmse = 1e-6;

void check_rmsnorm(int rows, int n, float eps, bool in_place, uint32_t seed) {
    const std::string what = std::to_string(rows) + "x" + std::to_string(n) + (in_place ? " in-place" : "");
    INFO(what);
    const auto x = test::random_uniform(static_cast<size_t>(rows) * n, seed, -2.f, 2.f);
    const auto w = test::random_normal(static_cast<size_t>(n), seed + 1, 1.f, 0.2f);
    std::vector<float> ref(x.size());
    for (int r = 0; r < rows; ++r)
        engine::cpu::rmsnorm(x.data() + static_cast<size_t>(r) * n, w.data(), ref.data() + static_cast<size_t>(r) * n,
                             n, eps);

    DeviceBuffer<float> d_x(x);
    DeviceBuffer<float> d_w(w);
    DeviceBuffer<float> d_y(x.size());
    test::TestStream stream;
    std::vector<float> out;
    if (in_place) {
        kernels::rmsnorm(d_x.get(), d_w.get(), d_x.get(), rows, n, eps, stream.get());
        out = d_x.download();
        CHECK(d_x.guard_intact());
    } else {
        d_y.poison();
        kernels::rmsnorm(d_x.get(), d_w.get(), d_y.get(), rows, n, eps, stream.get());
        out = d_y.download();
        CHECK(test::count_unwritten(out) == 0);
        CHECK(d_y.guard_intact());
        CHECK(test::count_mismatches(d_x.download(), x) == 0);  // the input is left alone
    }
    const double err = test::nmse(out, ref);
    test::report_nmse("rmsnorm", what, err);
    CHECK(err <= kMaxNmse);
}

}  // namespace

TEST_CASE("rmsnorm matches the CPU reference on real and odd shapes", "[gpu][rmsnorm]") {
    uint32_t seed = 500;
    check_rmsnorm(1, 576, 1e-5f, false, seed++);   // SmolLM2 decode
    check_rmsnorm(7, 576, 1e-5f, false, seed++);   // a short prompt
    check_rmsnorm(5, 896, 1e-6f, false, seed++);   // Qwen2.5-0.5B
    check_rmsnorm(3, 1536, 1e-5f, false, seed++);
    check_rmsnorm(2, 4864, 1e-6f, false, seed++);  // past the 4096 elements held in registers
    check_rmsnorm(2, 4096, 1e-5f, true, seed++);   // exactly the held elements, in place
    check_rmsnorm(72, 64, 1e-6f, false, seed++);   // per-head norm: 8 tokens x 9 heads of 64
    check_rmsnorm(13, 37, 1e-5f, false, seed++);   // fewer elements than threads, odd
    check_rmsnorm(9, 1, 1e-5f, false, seed++);
    check_rmsnorm(3, 1000, 1e-5f, false, seed++);  // not a multiple of the block size
    check_rmsnorm(4, 896, 1e-6f, true, seed++);
    check_rmsnorm(2, 577, 1e-5f, true, seed++);
}

TEST_CASE("add_rmsnorm is the residual add (exact) followed by the CPU reference norm", "[gpu][rmsnorm]") {
    uint32_t seed = 560;
    struct Shape { int rows, n; };
    for (const Shape s : {Shape{1, 576}, Shape{8, 576}, Shape{3, 4096}, Shape{2, 5000}, Shape{5, 37},
                             Shape{512, 896}}) {
        const std::string what = std::to_string(s.rows) + "x" + std::to_string(s.n);
        INFO(what);
        const size_t total = static_cast<size_t>(s.rows) * s.n;
        const auto x = test::random_uniform(total, seed++, -2.f, 2.f);
        const auto r = test::random_uniform(total, seed++, -1.f, 1.f);
        const auto w = test::random_normal(static_cast<size_t>(s.n), seed++, 1.f, 0.2f);
        std::vector<float> sum(total), ref(total);
        for (size_t i = 0; i < total; ++i) sum[i] = x[i] + r[i];
        for (int row = 0; row < s.rows; ++row)
            engine::cpu::rmsnorm(sum.data() + static_cast<size_t>(row) * s.n, w.data(),
                                 ref.data() + static_cast<size_t>(row) * s.n, s.n, 1e-5f);
        DeviceBuffer<float> d_x(x);
        DeviceBuffer<float> d_r(r);
        DeviceBuffer<float> d_w(w);
        DeviceBuffer<float> d_y(total);
        d_y.poison();
        test::TestStream stream;
        kernels::add_rmsnorm(d_x.get(), d_r.get(), d_w.get(), d_y.get(), s.rows, s.n, 1e-5f, stream.get());
        const auto y = d_y.download();
        CHECK(test::count_mismatches(d_x.download(), sum) == 0);  // x now holds the exact sum
        CHECK(test::count_unwritten(y) == 0);
        CHECK(d_x.guard_intact());
        CHECK(d_y.guard_intact());
        const double err = test::nmse(y, ref);
        test::report_nmse("add_rmsnorm", what, err);
        CHECK(err <= kMaxNmse);
    }
}
