// RMSNorm cases: the tests' shapes, kernel_bench's shapes, inputs, the CPU reference, bytes.
#include "kernel_cases/rmsnorm_cases.h"

#include <utility>

#include "engine/cpu/cpu_ops.h"
#include "kernel_cases/inputs.h"

namespace loom::kcases {

std::string RmsnormCase::name() const {
    return std::to_string(rows) + "x" + std::to_string(n) + (in_place ? " in-place" : "");
}

std::string AddRmsnormCase::name() const { return std::to_string(rows) + "x" + std::to_string(n); }

std::vector<RmsnormCase> rmsnorm_test_cases() {
    return {{1, 576, 1e-5f, false, 500},                                 // SmolLM2 decode
            {7, 576, 1e-5f, false, 501},                                 // a short prompt
            {5, 896, 1e-6f, false, 502},                                 // Qwen2.5-0.5B
            {3, 1536, 1e-5f, false, 503}, {2, 4864, 1e-6f, false, 504},  // past the 4096 elements held in registers
            {2, 4096, 1e-5f, true, 505},                                 // exactly the held elements, in place
            {72, 64, 1e-6f, false, 506},                                 // per-head norm: 8 tokens x 9 heads of 64
            {13, 37, 1e-5f, false, 507},                                 // fewer elements than threads, odd
            {9, 1, 1e-5f, false, 508},    {3, 1000, 1e-5f, false, 509},  // not a multiple of the block size
            {4, 896, 1e-6f, true, 510},   {2, 577, 1e-5f, true, 511}};
}

RmsnormCase rmsnorm_bench_case(const BenchModel& m, int tokens) {
    return {tokens, static_cast<int>(m.shape.embd), m.shape.rms_eps, false, 5};
}

RmsnormInputs rmsnorm_inputs(const RmsnormCase& c) {
    return {random_uniform(static_cast<size_t>(c.rows) * c.n, c.seed, -2.f, 2.f),
            random_normal(static_cast<size_t>(c.n), c.seed + 1, 1.f, 0.2f)};
}

std::vector<float> rmsnorm_reference(const std::vector<float>& x, const std::vector<float>& w, int rows, int n,
                                     float eps) {
    std::vector<float> ref(x.size());
    for (int r = 0; r < rows; ++r)
        engine::cpu::rmsnorm(x.data() + static_cast<size_t>(r) * n, w.data(), ref.data() + static_cast<size_t>(r) * n,
                             n, eps);
    return ref;
}

std::vector<AddRmsnormCase> add_rmsnorm_test_cases() {
    std::vector<AddRmsnormCase> cases;
    uint32_t seed = 560;
    for (const auto& [rows, n] : {std::pair{1, 576}, std::pair{8, 576}, std::pair{3, 4096}, std::pair{2, 5000},
                                  std::pair{5, 37}, std::pair{512, 896}}) {
        cases.push_back({rows, n, seed});
        seed += 3;
    }
    return cases;
}

AddRmsnormInputs add_rmsnorm_inputs(const AddRmsnormCase& c) {
    const size_t total = static_cast<size_t>(c.rows) * c.n;
    return {random_uniform(total, c.seed, -2.f, 2.f), random_uniform(total, c.seed + 1, -1.f, 1.f),
            random_normal(static_cast<size_t>(c.n), c.seed + 2, 1.f, 0.2f)};
}

double rmsnorm_bytes(int rows, int n) { return 8.0 * rows * n + 4.0 * n; }

double norm_inputs_bytes(int rows, int n) { return 9.0 * rows * n + 4.0 * n; }

}  // namespace loom::kcases
