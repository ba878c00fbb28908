// SwiGLU (separate and fused halves), residual add, bias add and row gathering on the GPU against the CPU.
#include <string>
#include <vector>

#include "catch.hpp"
#include "kernel_cases/elementwise_cases.h"
#include "kernel_test_support.h"
#include "kernels/elementwise.h"

using namespace loom;
using test::DeviceBuffer;

namespace {

using kcases::kSwigluMaxNmse;

void check_swiglu(const kcases::SwigluCase& c) {
    const std::string what = c.name();
    INFO(what);
    const auto [gate, up] = kcases::swiglu_inputs(c);
    const auto ref = kcases::swiglu_reference(gate, up);

    DeviceBuffer<float> d_gate(gate);
    DeviceBuffer<float> d_up(up);
    DeviceBuffer<float> d_out(gate.size());
    d_out.poison();
    test::TestStream stream;
    float* out_ptr = c.in_place ? d_gate.get() : d_out.get();
    kernels::swiglu(d_gate.get(), d_up.get(), out_ptr, c.n, stream.get());
    const auto out = c.in_place ? d_gate.download() : d_out.download();
    const double err = test::nmse(out, ref);
    test::report_nmse("swiglu", what, err);
    CHECK(test::count_unwritten(out) == 0);
    CHECK(d_out.guard_intact());
    CHECK(d_gate.guard_intact());
    CHECK(err <= kSwigluMaxNmse);
}

void check_swiglu_pairs(const kcases::SwigluPairsCase& c) {
    const std::string what = c.name();
    INFO(what);
    const auto gate_up = kcases::swiglu_pairs_inputs(c);
    const auto ref = kcases::swiglu_pairs_reference(gate_up, c.rows, c.n);
    DeviceBuffer<float> d_gate_up(gate_up);
    DeviceBuffer<float> d_out(ref.size());
    d_out.poison();
    test::TestStream stream;
    kernels::swiglu_pairs(d_gate_up.get(), c.rows, c.n, d_out.get(), stream.get());
    const auto out = d_out.download();
    const double err = test::nmse(out, ref);
    test::report_nmse("swiglu_pairs", what, err);
    CHECK(test::count_unwritten(out) == 0);
    CHECK(d_out.guard_intact());
    CHECK(err <= kSwigluMaxNmse);
}

void check_add(const kcases::AddCase& c) {
    INFO("n " << c.name());
    const auto [a, b] = kcases::add_inputs(c);
    const auto ref = kcases::add_reference(a, b);
    DeviceBuffer<float> d_a(a);
    DeviceBuffer<float> d_b(b);
    DeviceBuffer<float> d_out(a.size());
    d_out.poison();
    test::TestStream stream;
    kernels::add(d_a.get(), d_b.get(), c.in_place ? d_a.get() : d_out.get(), c.n, stream.get());
    const auto out = c.in_place ? d_a.download() : d_out.download();
    const double err = test::nmse(out, ref);
    test::report_nmse("add", c.name(), err);
    CHECK(test::count_mismatches(out, ref) == 0);
    CHECK(d_out.guard_intact());
    CHECK(d_a.guard_intact());
}

void check_add_bias(const kcases::AddBiasCase& c) {
    INFO(c.name());
    const auto [x, bias] = kcases::add_bias_inputs(c);
    const auto ref = kcases::add_bias_reference(x, bias, c.rows, c.n);
    DeviceBuffer<float> d_x(x);
    DeviceBuffer<float> d_bias(bias);
    test::TestStream stream;
    kernels::add_bias(d_x.get(), d_bias.get(), c.rows, c.n, stream.get());
    const auto out = d_x.download();
    test::report_nmse("add_bias", c.name(), test::nmse(out, ref));
    CHECK(test::count_mismatches(out, ref) == 0);
    CHECK(d_x.guard_intact());
}

void check_gather(const kcases::GatherCase& c) {
    INFO(c.name());
    const auto src = kcases::gather_inputs(c);
    const auto ref = kcases::gather_reference(src, c);
    DeviceBuffer<float> d_src(src);
    DeviceBuffer<int32_t> d_rows(c.rows);
    DeviceBuffer<float> d_dst(ref.size());
    d_dst.poison();
    test::TestStream stream;
    kernels::gather_rows(d_src.get(), c.width, d_rows.get(), static_cast<int>(c.rows.size()), d_dst.get(),
                         stream.get());
    const auto out = d_dst.download();
    CHECK(test::count_mismatches(out, ref) == 0);
    CHECK(d_dst.guard_intact());
}

}  // namespace

TEST_CASE("swiglu matches the CPU reference", "[gpu][elementwise]") {
    for (const auto& c : kcases::swiglu_test_cases()) check_swiglu(c);
}

TEST_CASE("swiglu_pairs equals swiglu on each row's gate and up values in the pair layout", "[gpu][elementwise]") {
    for (const auto& c : kcases::swiglu_pairs_test_cases()) check_swiglu_pairs(c);
}

TEST_CASE("add is the exact residual sum, in place or not", "[gpu][elementwise]") {
    for (const auto& c : kcases::add_test_cases()) check_add(c);
}

TEST_CASE("add_bias adds the bias to every row exactly", "[gpu][elementwise]") {
    for (const auto& c : kcases::add_bias_test_cases()) check_add_bias(c);
}

TEST_CASE("gather_rows copies the chosen rows exactly, repeats and any order included", "[gpu][elementwise]") {
    for (const auto& c : kcases::gather_test_cases()) check_gather(c);
}

// The shapes kernel_bench times, checked as it runs them.
TEST_CASE("the elementwise kernels at kernel_bench's shapes match the CPU", "[gpu][elementwise][bench_shapes]") {
    for (const auto& m : kcases::bench_models()) {
        for (const int tokens : kcases::kBenchTokens) {
            check_swiglu(kcases::swiglu_bench_case(m, tokens));
            check_swiglu_pairs(kcases::swiglu_pairs_bench_case(m, tokens));
            check_add(kcases::add_bench_case(m, tokens));
            check_add_bias(kcases::add_bias_bench_case(m, tokens));
        }
        for (const int n_seq : kcases::kGatherBenchSeqs) check_gather(kcases::gather_bench_case(m, n_seq));
    }
}
