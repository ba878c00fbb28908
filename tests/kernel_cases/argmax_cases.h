// Argmax cases: shapes and seeded logits, rows planted with ties, infinities, -0 and NaN with the
// indices they must give, the CPU reference, and the bytes a launch must move.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_cases/bench_shapes.h"

namespace loom::kcases {

// rows x n logits, N(0, 5) (seed).
struct ArgmaxCase {
    int rows, n;
    uint32_t seed;
    std::string name() const;  // "3x151936"
};
// SmolLM2 (49152) and Qwen2.5 (151936) vocabularies, odd and tiny rows.
std::vector<ArgmaxCase> argmax_test_cases();
// kernel_bench's: 1 and 32 rows of the model's vocabulary.
std::vector<ArgmaxCase> argmax_bench_cases(const BenchModel& m);
std::vector<float> argmax_inputs(const ArgmaxCase& c);

// Rows built to trip the rules (ties to the lowest index, -0 ties +0, a NaN wins), with the
// index each row must give.
struct ArgmaxPlanted {
    std::string name;
    int rows, n;
    std::vector<float> x;
    std::vector<int32_t> expected;
};
std::vector<ArgmaxPlanted> argmax_planted_cases();

// Per row: the first NaN if there is one, else the lowest index of the largest value (-0 == +0).
std::vector<int32_t> argmax_reference(const std::vector<float>& x, int rows, int n);

// Every row read, one index per row written.
inline double argmax_bytes(int rows, int n) { return 4.0 * rows * n + 4.0 * rows; }

}  // namespace loom::kcases
