// Elementwise kernel cases (SwiGLU, SwiGLU in the pair layout, the residual add, the bias add, row
// gathering): shapes, inputs, engine::cpu::swiglu or exact sums as the reference, the tolerance,
// and the bytes a launch must move.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_cases/bench_shapes.h"

namespace loom::kcases {

// SwiGLU against engine::cpu::swiglu: expf may differ in its last bit between host and device.
inline constexpr double kSwigluMaxNmse = 1e-6;

// gate, up (n) -> out (n); in_place: out is gate.
struct SwigluCase {
    int64_t n;
    bool in_place;
    uint32_t seed;             // gate seed, up seed + 1
    std::string name() const;  // "4864" or "4864 in-place"
};
std::vector<SwigluCase> swiglu_test_cases();
// kernel_bench's: `tokens` rows of the model's FFN width, out of place.
SwigluCase swiglu_bench_case(const BenchModel& m, int tokens);
struct SwigluInputs {
    std::vector<float> gate;  // U(-8, 8): silu's tails and its middle
    std::vector<float> up;    // U(-2, 2)
};
SwigluInputs swiglu_inputs(const SwigluCase& c);
// engine::cpu::swiglu over the whole vector.
std::vector<float> swiglu_reference(const std::vector<float>& gate, const std::vector<float>& up);

// gate_up (rows, 2n) in the pair layout (kSwigluPairRows = 2: [gate j, gate j+1, up j, up j+1]) -> out (rows, n).
struct SwigluPairsCase {
    int rows, n;
    uint32_t seed;
    std::string name() const;  // "8x1536"
};
std::vector<SwigluPairsCase> swiglu_pairs_test_cases();
SwigluPairsCase swiglu_pairs_bench_case(const BenchModel& m, int tokens);
// U(-8, 8), rows x 2n.
std::vector<float> swiglu_pairs_inputs(const SwigluPairsCase& c);
// Each row split into its gate and up values, then engine::cpu::swiglu.
std::vector<float> swiglu_pairs_reference(const std::vector<float>& gate_up, int rows, int n);

// a + b -> out, exact; in_place: out is a (the residual add).
struct AddCase {
    int64_t n;
    bool in_place;
    uint32_t seed;             // a seed, b seed + 1
    std::string name() const;  // "576" or "576-in-place"
};
std::vector<AddCase> add_test_cases();
// kernel_bench's: `tokens` rows of the model's width, in place.
AddCase add_bench_case(const BenchModel& m, int tokens);
struct AddInputs {
    std::vector<float> a, b;  // U(-3, 3)
};
AddInputs add_inputs(const AddCase& c);
std::vector<float> add_reference(const std::vector<float>& a, const std::vector<float>& b);

// X (rows, n) += bias (n), exact.
struct AddBiasCase {
    int rows, n;
    uint32_t seed;             // x seed, bias seed + 1
    std::string name() const;  // "7x896"
};
std::vector<AddBiasCase> add_bias_test_cases();
// kernel_bench's: `tokens` rows of the model's query width (qwen2's q bias).
AddBiasCase add_bias_bench_case(const BenchModel& m, int tokens);
struct AddBiasInputs {
    std::vector<float> x;     // U(-2, 2)
    std::vector<float> bias;  // U(-1, 1)
};
AddBiasInputs add_bias_inputs(const AddBiasCase& c);
std::vector<float> add_bias_reference(const std::vector<float>& x, const std::vector<float>& bias, int rows, int n);

// dst (rows.size(), width) = src rows `rows` (repeats and any order allowed), exact.
struct GatherCase {
    int src_rows;
    int64_t width;
    std::vector<int32_t> rows;
    uint32_t seed;
    std::string name() const;  // "9x576, 4 rows"
};
std::vector<GatherCase> gather_test_cases();
// kernel_bench's: the last row of each of `n_seq` (kGatherBenchSeqs) sequences of a 512-token step, at the model's
// width.
inline constexpr int kGatherBenchSeqs[] = {1, 32};
GatherCase gather_bench_case(const BenchModel& m, int n_seq);
// U(-2, 2), src_rows x width.
std::vector<float> gather_inputs(const GatherCase& c);
std::vector<float> gather_reference(const std::vector<float>& src, const GatherCase& c);

// Bytes: SwiGLU reads gate and up and writes out (the pair layout reads the same two values per
// output); add reads a and b and writes the sum; add_bias reads and writes X and reads the bias
// once; gather reads the row ids and copies each chosen row.
inline double swiglu_bytes(uint64_t n) { return 12.0 * static_cast<double>(n); }
inline double add_bytes(uint64_t n) { return 12.0 * static_cast<double>(n); }
inline double add_bias_bytes(int rows, int n) { return 8.0 * rows * n + 4.0 * n; }
inline double gather_bytes(int n_rows, int64_t width) {
    return 4.0 * n_rows + 8.0 * n_rows * static_cast<double>(width);
}

}  // namespace loom::kcases
