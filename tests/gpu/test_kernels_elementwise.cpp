// SwiGLU (separate and fused halves), residual add, bias add and row gathering on the GPU against the CPU.
#include <string>
#include <vector>

#include "catch.hpp"
#include "engine/cpu/cpu_ops.h"
#include "kernel_test_support.h"
#include "kernels/elementwise.h"

using namespace loom;
using test::DeviceBuffer;

namespace {

constexpr double kMaxNmse = 1e-6;

void check_swiglu(int64_t n, bool in_place, uint32_t seed) {
    const std::string what = std::to_string(n) + (in_place ? " in-place" : "");
    INFO(what);
    const auto gate = test::random_uniform(static_cast<size_t>(n), seed, -8.f, 8.f);
    const auto up = test::random_uniform(static_cast<size_t>(n), seed + 1, -2.f, 2.f);
    std::vector<float> ref(gate.size());
    engine::cpu::swiglu(gate.data(), up.data(), ref.data(), static_cast<int>(n));

    DeviceBuffer<float> d_gate(gate);
    DeviceBuffer<float> d_up(up);
    DeviceBuffer<float> d_out(gate.size());
    d_out.poison();
    test::TestStream stream;
    float* out_ptr = in_place ? d_gate.get() : d_out.get();
    kernels::swiglu(d_gate.get(), d_up.get(), out_ptr, n, stream.get());
    const auto out = in_place ? d_gate.download() : d_out.download();
    const double err = test::nmse(out, ref);
    test::report_nmse("swiglu", what, err);
    CHECK(test::count_unwritten(out) == 0);
    CHECK(d_out.guard_intact());
    CHECK(d_gate.guard_intact());
    CHECK(err <= kMaxNmse);
}

}  // namespace

TEST_CASE("swiglu matches the CPU reference", "[gpu][elementwise]") {
    uint32_t seed = 800;
    check_swiglu(1536, false, seed++);      // SmolLM2 FFN, one token
    check_swiglu(4864, false, seed++);      // Qwen2.5-0.5B FFN
    check_swiglu(4864 * 7, false, seed++);  // seven tokens
    check_swiglu(37, false, seed++);
    check_swiglu(1, false, seed++);
    check_swiglu(5'000'003, false, seed++);  // more elements than the grid has threads
    check_swiglu(4864, true, seed++);
}

TEST_CASE("swiglu_pairs equals swiglu on each row's gate and up values in the pair layout", "[gpu][elementwise]") {
    uint32_t seed = 850;
    struct Shape {
        int rows, n;
    };
    for (const Shape s : {Shape{1, 1536}, Shape{8, 1536}, Shape{3, 14336}, Shape{5, 38}, Shape{512, 4864}}) {
        const std::string what = std::to_string(s.rows) + "x" + std::to_string(s.n);
        INFO(what);
        const auto gate_up = test::random_uniform(static_cast<size_t>(s.rows) * 2 * s.n, seed++, -8.f, 8.f);
        std::vector<float> ref(static_cast<size_t>(s.rows) * s.n);
        std::vector<float> gate(static_cast<size_t>(s.n)), up(static_cast<size_t>(s.n));
        for (int r = 0; r < s.rows; ++r) {
            const float* row = gate_up.data() + static_cast<size_t>(r) * 2 * s.n;
            for (int j = 0; j < s.n; j += 2)  // [gate j, gate j+1, up j, up j+1]
                for (int k = 0; k < 2; ++k) {
                    gate[static_cast<size_t>(j + k)] = row[2 * j + k];
                    up[static_cast<size_t>(j + k)] = row[2 * j + 2 + k];
                }
            engine::cpu::swiglu(gate.data(), up.data(), ref.data() + static_cast<size_t>(r) * s.n, s.n);
        }
        DeviceBuffer<float> d_gate_up(gate_up);
        DeviceBuffer<float> d_out(ref.size());
        d_out.poison();
        test::TestStream stream;
        kernels::swiglu_pairs(d_gate_up.get(), s.rows, s.n, d_out.get(), stream.get());
        const auto out = d_out.download();
        const double err = test::nmse(out, ref);
        test::report_nmse("swiglu_pairs", what, err);
        CHECK(test::count_unwritten(out) == 0);
        CHECK(d_out.guard_intact());
        CHECK(err <= kMaxNmse);
    }
}

TEST_CASE("add is the exact residual sum, in place or not", "[gpu][elementwise]") {
    uint32_t seed = 900;
    for (const int64_t n : {int64_t{576}, int64_t{896 * 5}, int64_t{37}, int64_t{3'000'001}}) {
        for (const bool in_place : {false, true}) {
            INFO("n " << n << (in_place ? " in-place" : ""));
            const auto a = test::random_uniform(static_cast<size_t>(n), seed++, -3.f, 3.f);
            const auto b = test::random_uniform(static_cast<size_t>(n), seed++, -3.f, 3.f);
            std::vector<float> ref(a.size());
            for (size_t i = 0; i < a.size(); ++i) ref[i] = a[i] + b[i];
            DeviceBuffer<float> d_a(a);
            DeviceBuffer<float> d_b(b);
            DeviceBuffer<float> d_out(a.size());
            d_out.poison();
            test::TestStream stream;
            kernels::add(d_a.get(), d_b.get(), in_place ? d_a.get() : d_out.get(), n, stream.get());
            const auto out = in_place ? d_a.download() : d_out.download();
            const double err = test::nmse(out, ref);
            test::report_nmse("add", std::to_string(n) + (in_place ? "-in-place" : ""), err);
            CHECK(test::count_mismatches(out, ref) == 0);
            CHECK(d_out.guard_intact());
            CHECK(d_a.guard_intact());
        }
    }
}

TEST_CASE("add_bias adds the bias to every row exactly", "[gpu][elementwise]") {
    uint32_t seed = 950;
    struct Shape {
        int rows, n;
    };
    for (const Shape s : {Shape{1, 896}, Shape{7, 896}, Shape{5, 128}, Shape{3, 37}, Shape{1000, 1}}) {
        INFO(s.rows << "x" << s.n);
        const auto x = test::random_uniform(static_cast<size_t>(s.rows) * s.n, seed++, -2.f, 2.f);
        const auto bias = test::random_uniform(static_cast<size_t>(s.n), seed++, -1.f, 1.f);
        std::vector<float> ref = x;
        for (int r = 0; r < s.rows; ++r)
            for (int i = 0; i < s.n; ++i) ref[static_cast<size_t>(r) * s.n + i] += bias[i];
        DeviceBuffer<float> d_x(x);
        DeviceBuffer<float> d_bias(bias);
        test::TestStream stream;
        kernels::add_bias(d_x.get(), d_bias.get(), s.rows, s.n, stream.get());
        const auto out = d_x.download();
        test::report_nmse("add_bias", std::to_string(s.rows) + "x" + std::to_string(s.n), test::nmse(out, ref));
        CHECK(test::count_mismatches(out, ref) == 0);
        CHECK(d_x.guard_intact());
    }
}

TEST_CASE("gather_rows copies the chosen rows exactly, repeats and any order included", "[gpu][elementwise]") {
    uint32_t seed = 990;
    struct Shape {
        int src_rows;
        int64_t width;
        std::vector<int32_t> rows;
    };
    for (const Shape& s : {Shape{9, 576, {8, 0, 3, 3}}, Shape{512, 4096, {511, 17, 0, 256, 255}}, Shape{3, 37, {2}},
                           Shape{2, 100000, {1, 0}}}) {
        INFO(s.src_rows << "x" << s.width << ", " << s.rows.size() << " rows");
        const auto src = test::random_uniform(static_cast<size_t>(s.src_rows) * s.width, seed++, -2.f, 2.f);
        std::vector<float> ref;
        for (const int32_t r : s.rows)
            ref.insert(ref.end(), src.begin() + r * s.width, src.begin() + (r + 1) * s.width);
        DeviceBuffer<float> d_src(src);
        DeviceBuffer<int32_t> d_rows(s.rows);
        DeviceBuffer<float> d_dst(ref.size());
        d_dst.poison();
        test::TestStream stream;
        kernels::gather_rows(d_src.get(), s.width, d_rows.get(), static_cast<int>(s.rows.size()), d_dst.get(),
                             stream.get());
        const auto out = d_dst.download();
        CHECK(test::count_mismatches(out, ref) == 0);
        CHECK(d_dst.guard_intact());
    }
}
