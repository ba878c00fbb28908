// RoPE cases (both pairings, separate and fused QKV rows): shapes, inputs, engine::cpu::rope as the
// reference, the tolerance, and the bytes a launch must move.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model_config.h"
#include "kernel_cases/bench_shapes.h"

namespace loom::kcases {

inline constexpr double kRopeMaxNmse = 1e-6;

struct RopeCase {
    int n_tokens, n_head, n_head_kv, head_dim;
    float base;
    engine::RopeMode mode;
    bool fused;  // q, k and v in one row of (n_head + 2 n_head_kv) heads, as a fused QKV matvec writes
    int max_pos;
    uint32_t seed;
    std::string name() const;  // "neox T=5 h=14/2 hd=64 fused"
    int q_dim() const { return n_head * head_dim; }
    int kv_dim() const { return n_head_kv * head_dim; }
    int q_stride() const { return fused ? q_dim() + 2 * kv_dim() : q_dim(); }
    int k_stride() const { return fused ? q_stride() : kv_dim(); }
};
std::vector<RopeCase> rope_test_cases();
// kernel_bench's: `tokens` rows (kBenchTokens) of the model's heads (NeoX pairing for Qwen2).
RopeCase rope_bench_case(const BenchModel& m, int tokens);

struct RopeInputs {
    std::vector<float> q;            // (n_tokens, q_stride) U(-1, 1) (seed)
    std::vector<float> k;            // (n_tokens, k_stride) U(-1, 1) (seed + 1)
    std::vector<int32_t> positions;  // in [0, max_pos], the first max_pos (seed + 2)
    std::vector<float> inv_freq;     // engine::cpu::rope_inv_freq(head_dim, base)
};
RopeInputs rope_inputs(const RopeCase& c);

// Every q and k head of every token rotated by engine::cpu::rope; in the fused layout k lives in
// q's rows (at q_dim) and `k` is returned as given.
struct RopeReference {
    std::vector<float> q, k;
};
RopeReference rope_reference(const RopeCase& c, const RopeInputs& in);

// Bytes: q and k read and written, the positions and the frequencies read.
double rope_bytes(int n_tokens, int q_dim, int kv_dim, int head_dim);

}  // namespace loom::kcases
