// RoPE cases: the tests' shapes, kernel_bench's shapes, inputs, the CPU reference, bytes.
#include "kernel_cases/rope_cases.h"

#include <random>

#include "engine/cpu/cpu_ops.h"
#include "kernel_cases/inputs.h"

namespace loom::kcases {

using engine::RopeMode;

std::string RopeCase::name() const {
    return std::string(mode == RopeMode::NeoX ? "neox" : "normal") + " T=" + std::to_string(n_tokens) +
           " h=" + std::to_string(n_head) + "/" + std::to_string(n_head_kv) + " hd=" + std::to_string(head_dim) +
           (fused ? " fused" : "");
}

std::vector<RopeCase> rope_test_cases() {
    return {
        // SmolLM2-135M: 9 query heads, 3 KV heads of 64, Normal pairing (llama), base 1e5.
        {1, 9, 3, 64, 100000.f, RopeMode::Normal, false, 8191, 700},
        {17, 9, 3, 64, 100000.f, RopeMode::Normal, false, 8191, 701},
        // Qwen2.5-0.5B: 14 query heads, 2 KV heads of 64, NeoX pairing, base 1e6, positions to 32k.
        {1, 14, 2, 64, 1000000.f, RopeMode::NeoX, false, 32767, 702},
        {5, 14, 2, 64, 1000000.f, RopeMode::NeoX, true, 32767, 703},
        {6, 9, 3, 64, 100000.f, RopeMode::Normal, true, 2047, 704},
        // Larger heads, and odd ones: 3 heads of 6 (3 pairs), more pairs than threads per block.
        {3, 32, 8, 128, 500000.f, RopeMode::Normal, false, 131071, 705},
        {7, 3, 1, 6, 10000.f, RopeMode::NeoX, false, 100, 706},
        {7, 3, 1, 6, 10000.f, RopeMode::Normal, true, 100, 707},
        {2, 5, 0, 64, 10000.f, RopeMode::NeoX, false, 4096, 708},  // no k heads
    };
}

RopeCase rope_bench_case(const BenchModel& m, int tokens) {
    const auto mode = m.arch == gguf::SynthArch::qwen2 ? RopeMode::NeoX : RopeMode::Normal;
    return {tokens,
            static_cast<int>(m.shape.heads),
            static_cast<int>(m.shape.kv_heads),
            m.head_dim(),
            m.shape.rope_base,
            mode,
            false,
            4095,
            14};
}

RopeInputs rope_inputs(const RopeCase& c) {
    RopeInputs in;
    in.q = random_uniform(static_cast<size_t>(c.n_tokens) * c.q_stride(), c.seed, -1.f, 1.f);
    in.k = random_uniform(static_cast<size_t>(c.n_tokens) * c.k_stride(), c.seed + 1, -1.f, 1.f);
    std::mt19937 rng(c.seed + 2);
    std::uniform_int_distribution<int32_t> pick(0, c.max_pos);
    in.positions.resize(static_cast<size_t>(c.n_tokens));
    for (auto& p : in.positions) p = pick(rng);
    in.positions.front() = c.max_pos;
    in.inv_freq = engine::cpu::rope_inv_freq(c.head_dim, c.base, {});
    return in;
}

RopeReference rope_reference(const RopeCase& c, const RopeInputs& in) {
    RopeReference ref{in.q, in.k};
    for (int t = 0; t < c.n_tokens; ++t) {
        for (int h = 0; h < c.n_head; ++h)
            engine::cpu::rope(ref.q.data() + static_cast<size_t>(t) * c.q_stride() + h * c.head_dim, c.head_dim,
                              in.positions[t], c.mode, in.inv_freq);
        float* k_row = c.fused ? ref.q.data() + static_cast<size_t>(t) * c.q_stride() + c.q_dim()
                               : ref.k.data() + static_cast<size_t>(t) * c.k_stride();
        for (int h = 0; h < c.n_head_kv; ++h)
            engine::cpu::rope(k_row + h * c.head_dim, c.head_dim, in.positions[t], c.mode, in.inv_freq);
    }
    return ref;
}

double rope_bytes(int n_tokens, int q_dim, int kv_dim, int head_dim) {
    return 8.0 * n_tokens * (q_dim + kv_dim) + 4.0 * n_tokens + 2.0 * head_dim;
}

}  // namespace loom::kcases
