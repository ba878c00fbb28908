// RoPE on the GPU against engine::cpu::rope, both pairings, separate and fused QKV rows.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch.hpp"
#include "engine/cpu/cpu_ops.h"
#include "kernel_cases/rope_cases.h"
#include "kernel_test_support.h"
#include "kernels/rope.h"

using namespace loom;
using test::DeviceBuffer;

namespace {

using kcases::kRopeMaxNmse;

void check_rope(const kcases::RopeCase& c) {
    const std::string what = c.name();
    INFO(what);
    const int q_dim = c.q_dim(), kv_dim = c.kv_dim(), q_stride = c.q_stride(), k_stride = c.k_stride();
    const auto in = kcases::rope_inputs(c);
    // In the fused layout q and k share the buffer `q` (k at offset q_dim) and the v heads must
    // come back untouched.
    const auto ref = kcases::rope_reference(c, in);
    const auto& q = in.q;
    const auto& k = in.k;

    DeviceBuffer<float> d_q(q);
    DeviceBuffer<float> d_k(k);
    DeviceBuffer<int32_t> d_pos(in.positions);
    DeviceBuffer<float> d_freq(in.inv_freq);
    test::TestStream stream;
    const auto style = c.mode == engine::RopeMode::NeoX ? kernels::RopeStyle::NeoX : kernels::RopeStyle::Normal;
    float* k_ptr = c.fused ? d_q.get() + q_dim : d_k.get();
    kernels::rope(d_q.get(), k_ptr, c.n_tokens, c.n_head, c.n_head_kv, c.head_dim, q_stride, k_stride, d_pos.get(),
                  d_freq.get(), style, stream.get());
    const auto out_q = d_q.download();
    const auto out_k = d_k.download();

    double err_q = test::nmse(out_q, ref.q), err_k = c.fused ? 0.0 : test::nmse(out_k, ref.k);
    test::report_nmse("rope", what, std::max(err_q, err_k));
    CHECK(err_q <= kRopeMaxNmse);
    CHECK(err_k <= kRopeMaxNmse);
    CHECK(d_q.guard_intact());
    CHECK(d_k.guard_intact());
    if (c.fused) {
        size_t v_changed = 0;
        for (int t = 0; t < c.n_tokens; ++t)
            for (int i = q_dim + kv_dim; i < q_stride; ++i) {
                const size_t o = static_cast<size_t>(t) * q_stride + i;
                v_changed += out_q[o] == q[o] ? 0 : 1;
            }
        CHECK(v_changed == 0);
        CHECK(test::count_mismatches(out_k, k) == 0);  // the separate k buffer was not named: untouched
    }
}

}  // namespace

TEST_CASE("rope matches the CPU reference for both pairings and large positions", "[gpu][rope]") {
    for (const auto& c : kcases::rope_test_cases()) check_rope(c);
}

// The shapes kernel_bench times, checked as it runs them.
TEST_CASE("rope at kernel_bench's shapes matches the CPU reference", "[gpu][rope][bench_shapes]") {
    for (const auto& m : kcases::bench_models())
        for (const int tokens : kcases::kBenchTokens) check_rope(kcases::rope_bench_case(m, tokens));
}

TEST_CASE("rope with no KV heads accepts a null k", "[gpu][rope]") {
    const std::vector<float> q = test::random_uniform(2 * 64, 9, -1.f, 1.f);
    const std::vector<int32_t> positions = {3, 1000};
    const auto inv_freq = engine::cpu::rope_inv_freq(64, 10000.f, {});
    std::vector<float> ref = q;
    for (int t = 0; t < 2; ++t)
        engine::cpu::rope(ref.data() + 64 * t, 64, positions[t], engine::RopeMode::Normal, inv_freq);
    DeviceBuffer<float> d_q(q);
    DeviceBuffer<int32_t> d_pos(positions);
    DeviceBuffer<float> d_freq(inv_freq);
    kernels::rope(d_q.get(), nullptr, 2, 1, 0, 64, 64, 0, d_pos.get(), d_freq.get(), kernels::RopeStyle::Normal,
                  nullptr);
    CHECK(test::nmse(d_q.download(), ref) <= kRopeMaxNmse);
    CHECK_THROWS_AS(kernels::rope(d_q.get(), nullptr, 2, 1, 1, 64, 64, 64, d_pos.get(), d_freq.get(),
                                  kernels::RopeStyle::Normal, nullptr),
                    std::invalid_argument);
}
