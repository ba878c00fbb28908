// RMSNorm on the GPU against engine::cpu::rmsnorm, batched rows, in place and not.
#include <string>
#include <vector>

#include "catch.hpp"
#include "kernel_cases/rmsnorm_cases.h"
#include "kernel_test_support.h"
#include "kernels/rmsnorm.h"

using namespace loom;
using test::DeviceBuffer;

namespace {

using kcases::kRmsnormMaxNmse;

void check_rmsnorm(const kcases::RmsnormCase& c) {
    const std::string what = c.name();
    INFO(what);
    const int rows = c.rows, n = c.n;
    const auto [x, w] = kcases::rmsnorm_inputs(c);
    const auto ref = kcases::rmsnorm_reference(x, w, rows, n, c.eps);

    DeviceBuffer<float> d_x(x);
    DeviceBuffer<float> d_w(w);
    DeviceBuffer<float> d_y(x.size());
    test::TestStream stream;
    std::vector<float> out;
    if (c.in_place) {
        kernels::rmsnorm(d_x.get(), d_w.get(), d_x.get(), rows, n, c.eps, stream.get());
        out = d_x.download();
        CHECK(d_x.guard_intact());
    } else {
        d_y.poison();
        kernels::rmsnorm(d_x.get(), d_w.get(), d_y.get(), rows, n, c.eps, stream.get());
        out = d_y.download();
        CHECK(test::count_unwritten(out) == 0);
        CHECK(d_y.guard_intact());
        CHECK(test::count_mismatches(d_x.download(), x) == 0);  // the input is left alone
    }
    const double err = test::nmse(out, ref);
    test::report_nmse("rmsnorm", what, err);
    CHECK(err <= kRmsnormMaxNmse);
}

}  // namespace

TEST_CASE("rmsnorm matches the CPU reference on real and odd shapes", "[gpu][rmsnorm]") {
    for (const auto& c : kcases::rmsnorm_test_cases()) check_rmsnorm(c);
}

// The shapes kernel_bench times, checked as it runs them.
TEST_CASE("rmsnorm at kernel_bench's shapes matches the CPU reference", "[gpu][rmsnorm][bench_shapes]") {
    for (const auto& m : kcases::bench_models())
        for (const int tokens : kcases::kBenchTokens) check_rmsnorm(kcases::rmsnorm_bench_case(m, tokens));
}

TEST_CASE("add_rmsnorm is the residual add (exact) followed by the CPU reference norm", "[gpu][rmsnorm]") {
    for (const auto& c : kcases::add_rmsnorm_test_cases()) {
        const std::string what = c.name();
        INFO(what);
        const size_t total = static_cast<size_t>(c.rows) * c.n;
        const auto [x, r, w] = kcases::add_rmsnorm_inputs(c);
        std::vector<float> sum(total);
        for (size_t i = 0; i < total; ++i) sum[i] = x[i] + r[i];
        const auto ref = kcases::rmsnorm_reference(sum, w, c.rows, c.n, kcases::kAddRmsnormEps);
        DeviceBuffer<float> d_x(x);
        DeviceBuffer<float> d_r(r);
        DeviceBuffer<float> d_w(w);
        DeviceBuffer<float> d_y(total);
        d_y.poison();
        test::TestStream stream;
        kernels::add_rmsnorm(d_x.get(), d_r.get(), d_w.get(), d_y.get(), c.rows, c.n, kcases::kAddRmsnormEps,
                             stream.get());
        const auto y = d_y.download();
        CHECK(test::count_mismatches(d_x.download(), sum) == 0);  // x now holds the exact sum
        CHECK(test::count_unwritten(y) == 0);
        CHECK(d_x.guard_intact());
        CHECK(d_y.guard_intact());
        const double err = test::nmse(y, ref);
        test::report_nmse("add_rmsnorm", what, err);
        CHECK(err <= kRmsnormMaxNmse);
    }
}
