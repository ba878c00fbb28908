// RMSNorm cases (plain, in place, fused residual add): shapes, inputs, engine::cpu::rmsnorm as the
// reference, the tolerance, and the bytes a launch must move.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_cases/bench_shapes.h"

namespace loom::kcases {

inline constexpr double kRmsnormMaxNmse = 1e-6;

// rows x n, normalized with eps; in_place: the kernel writes over x.
struct RmsnormCase {
    int rows, n;
    float eps;
    bool in_place;
    uint32_t seed;
    std::string name() const;  // "7x576" or "2x4096 in-place"
};
std::vector<RmsnormCase> rmsnorm_test_cases();
// kernel_bench's: `tokens` rows (kBenchTokens) at the model's width and epsilon.
RmsnormCase rmsnorm_bench_case(const BenchModel& m, int tokens);

struct RmsnormInputs {
    std::vector<float> x;  // U(-2, 2) (seed)
    std::vector<float> w;  // N(1, 0.2) (seed + 1)
};
RmsnormInputs rmsnorm_inputs(const RmsnormCase& c);
// engine::cpu::rmsnorm on each row.
std::vector<float> rmsnorm_reference(const std::vector<float>& x, const std::vector<float>& w, int rows, int n,
                                     float eps);

// add_rmsnorm: x += r (exact), then the norm of the sum; eps 1e-5.
struct AddRmsnormCase {
    int rows, n;
    uint32_t seed;  // x, r and w take seed, seed + 1, seed + 2
    std::string name() const;
};
inline constexpr float kAddRmsnormEps = 1e-5f;
std::vector<AddRmsnormCase> add_rmsnorm_test_cases();
struct AddRmsnormInputs {
    std::vector<float> x, r, w;  // U(-2, 2), U(-1, 1), N(1, 0.2)
};
AddRmsnormInputs add_rmsnorm_inputs(const AddRmsnormCase& c);

// Bytes: x read, y written, w read once; norm_inputs writes x * w and one partial square sum per 4 elements.
double rmsnorm_bytes(int rows, int n);
double norm_inputs_bytes(int rows, int n);

}  // namespace loom::kcases
