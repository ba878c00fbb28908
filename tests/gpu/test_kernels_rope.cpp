// RoPE on the GPU against engine::cpu::rope, both pairings, separate and fused QKV rows.
#include <algorithm>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch.hpp"
#include "engine/cpu/cpu_ops.h"
#include "kernel_test_support.h"
#include "kernels/rope.h"

using namespace loom;
using test::DeviceBuffer;

namespace {

constexpr double kMaxNmse = 1e-6;

struct RopeCase {
    int n_tokens, n_head, n_head_kv, head_dim;
    float base;
    engine::RopeMode mode;
    bool fused;  // q, k and v in one row of (n_head + 2 n_head_kv) heads, as a fused QKV matvec writes
    int max_pos;
};

void check_rope(const RopeCase& c, uint32_t seed) {
    const std::string what = std::string(c.mode == engine::RopeMode::NeoX ? "neox" : "normal") + " T=" +
                             std::to_string(c.n_tokens) + " h=" + std::to_string(c.n_head) + "/" +
                             std::to_string(c.n_head_kv) + " hd=" + std::to_string(c.head_dim) +
                             (c.fused ? " fused" : "");
    INFO(what);
    const int q_dim = c.n_head * c.head_dim, kv_dim = c.n_head_kv * c.head_dim;
    const int q_stride = c.fused ? q_dim + 2 * kv_dim : q_dim;
    const int k_stride = c.fused ? q_stride : kv_dim;
    const auto q = test::random_uniform(static_cast<size_t>(c.n_tokens) * q_stride, seed, -1.f, 1.f);
    const auto k = test::random_uniform(static_cast<size_t>(c.n_tokens) * k_stride, seed + 1, -1.f, 1.f);
    std::mt19937 rng(seed + 2);
    std::uniform_int_distribution<int32_t> pick(0, c.max_pos);
    std::vector<int32_t> positions(static_cast<size_t>(c.n_tokens));
    for (auto& p : positions) p = pick(rng);
    positions.front() = c.max_pos;
    const auto inv_freq = engine::cpu::rope_inv_freq(c.head_dim, c.base, {});

    // Reference: every q and k head of every token rotated on the CPU; in the fused layout q and
    // k share the buffer `q` (k at offset q_dim) and the v heads must come back untouched.
    std::vector<float> ref_q = q, ref_k = k;
    for (int t = 0; t < c.n_tokens; ++t) {
        for (int h = 0; h < c.n_head; ++h)
            engine::cpu::rope(ref_q.data() + static_cast<size_t>(t) * q_stride + h * c.head_dim, c.head_dim,
                              positions[t], c.mode, inv_freq);
        float* k_row = c.fused ? ref_q.data() + static_cast<size_t>(t) * q_stride + q_dim
                               : ref_k.data() + static_cast<size_t>(t) * k_stride;
        for (int h = 0; h < c.n_head_kv; ++h)
            engine::cpu::rope(k_row + h * c.head_dim, c.head_dim, positions[t], c.mode, inv_freq);
    }

    DeviceBuffer<float> d_q(q);
    DeviceBuffer<float> d_k(k);
    DeviceBuffer<int32_t> d_pos(positions);
    DeviceBuffer<float> d_freq(inv_freq);
    test::TestStream stream;
    const auto style = c.mode == engine::RopeMode::NeoX ? kernels::RopeStyle::NeoX : kernels::RopeStyle::Normal;
    float* k_ptr = c.fused ? d_q.get() + q_dim : d_k.get();
    kernels::rope(d_q.get(), k_ptr, c.n_tokens, c.n_head, c.n_head_kv, c.head_dim, q_stride, k_stride, d_pos.get(),
                  d_freq.get(), style, stream.get());
    const auto out_q = d_q.download();
    const auto out_k = d_k.download();

    double err_q = test::nmse(out_q, ref_q), err_k = c.fused ? 0.0 : test::nmse(out_k, ref_k);
    test::report_nmse("rope", what, std::max(err_q, err_k));
    CHECK(err_q <= kMaxNmse);
    CHECK(err_k <= kMaxNmse);
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
    using engine::RopeMode;
    uint32_t seed = 700;
    // SmolLM2-135M: 9 query heads, 3 KV heads of 64, Normal pairing (llama), base 1e5.
    check_rope({1, 9, 3, 64, 100000.f, RopeMode::Normal, false, 8191}, seed++);
    check_rope({17, 9, 3, 64, 100000.f, RopeMode::Normal, false, 8191}, seed++);
    // Qwen2.5-0.5B: 14 query heads, 2 KV heads of 64, NeoX pairing, base 1e6, positions to 32k.
    check_rope({1, 14, 2, 64, 1000000.f, RopeMode::NeoX, false, 32767}, seed++);
    check_rope({5, 14, 2, 64, 1000000.f, RopeMode::NeoX, true, 32767}, seed++);
    check_rope({6, 9, 3, 64, 100000.f, RopeMode::Normal, true, 2047}, seed++);
    // Larger heads, and odd ones: 3 heads of 6 (3 pairs), more pairs than threads per block.
    check_rope({3, 32, 8, 128, 500000.f, RopeMode::Normal, false, 131071}, seed++);
    check_rope({7, 3, 1, 6, 10000.f, RopeMode::NeoX, false, 100}, seed++);
    check_rope({7, 3, 1, 6, 10000.f, RopeMode::Normal, true, 100}, seed++);
    check_rope({2, 5, 0, 64, 10000.f, RopeMode::NeoX, false, 4096}, seed++);  // no k heads
}

TEST_CASE("rope with no KV heads accepts a null k", "[gpu][rope]") {
    const std::vector<float> q = test::random_uniform(2 * 64, 9, -1.f, 1.f);
    const std::vector<int32_t> positions = {3, 1000};
    const auto inv_freq = engine::cpu::rope_inv_freq(64, 10000.f, {});
    std::vector<float> ref = q;
    for (int t = 0; t < 2; ++t) engine::cpu::rope(ref.data() + 64 * t, 64, positions[t], engine::RopeMode::Normal, inv_freq);
    DeviceBuffer<float> d_q(q);
    DeviceBuffer<int32_t> d_pos(positions);
    DeviceBuffer<float> d_freq(inv_freq);
    kernels::rope(d_q.get(), nullptr, 2, 1, 0, 64, 64, 0, d_pos.get(), d_freq.get(), kernels::RopeStyle::Normal, nullptr);
    CHECK(test::nmse(d_q.download(), ref) <= kMaxNmse);
    CHECK_THROWS_AS(kernels::rope(d_q.get(), nullptr, 2, 1, 1, 64, 64, 64, d_pos.get(), d_freq.get(),
                                  kernels::RopeStyle::Normal, nullptr),
                    std::invalid_argument);
}
