// Argmax cases: shapes, seeded and planted logits, the CPU reference.
#include "kernel_cases/argmax_cases.h"

#include <cmath>
#include <limits>

#include "kernel_cases/inputs.h"

namespace loom::kcases {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Row 0: the maximum at two far-apart ids (owned by different threads); row 1: every value equal;
// row 2: all -inf but one finite value near the end; row 3: all -inf, so the lowest id wins.
ArgmaxPlanted ties() {
    const int n = 49152, rows = 4;
    ArgmaxPlanted p{"ties", rows, n, random_normal(static_cast<size_t>(rows) * n, 650, 0.f, 1.f), {1234, 0, n - 2, 0}};
    auto& x = p.x;
    x[40000] = 100.f;
    x[1234] = 100.f;
    for (int i = 0; i < n; ++i) x[n + i] = -3.5f;
    for (int i = 0; i < n; ++i) x[2 * n + i] = -kInf;
    x[2 * n + n - 2] = -1e30f;
    for (int i = 0; i < n; ++i) x[3 * n + i] = -kInf;
    return p;
}

// Row 0: -0 before +0 in thread order, +0 at the lower id; row 1: -0 at the lower id; row 2: +inf,
// then NaNs (the first one negative).
ArgmaxPlanted signed_zeros_and_nan() {
    const int n = 3000, rows = 3;
    ArgmaxPlanted p{
        "-0 and NaN", rows, n, random_uniform(static_cast<size_t>(rows) * n, 660, -10.f, -1.f), {17, 5, 2000}};
    auto& x = p.x;
    x[2500] = -0.0f;
    x[17] = 0.0f;
    x[n + 5] = -0.0f;
    x[n + 2999] = 0.0f;
    x[2 * n + 100] = kInf;
    x[2 * n + 2000] = -std::numeric_limits<float>::quiet_NaN();
    x[2 * n + 2001] = std::numeric_limits<float>::quiet_NaN();
    return p;
}

int32_t row_argmax(const float* x, int n) {
    for (int i = 0; i < n; ++i)
        if (std::isnan(x[i])) return i;
    int32_t best = 0;
    for (int i = 1; i < n; ++i)
        if (x[i] > x[best]) best = i;
    return best;
}

}  // namespace

std::string ArgmaxCase::name() const { return std::to_string(rows) + "x" + std::to_string(n); }

std::vector<ArgmaxCase> argmax_test_cases() {
    return {{1, 49152, 600}, {3, 151936, 601}, {5, 37, 602}, {2, 1, 603}, {4, 1025, 604}, {8, 49152, 605}};
}

std::vector<ArgmaxCase> argmax_bench_cases(const BenchModel& m) {
    return {{1, static_cast<int>(m.shape.vocab), 16}, {32, static_cast<int>(m.shape.vocab), 16}};
}

std::vector<float> argmax_inputs(const ArgmaxCase& c) {
    return random_normal(static_cast<size_t>(c.rows) * c.n, c.seed, 0.f, 5.f);
}

std::vector<ArgmaxPlanted> argmax_planted_cases() { return {ties(), signed_zeros_and_nan()}; }

std::vector<int32_t> argmax_reference(const std::vector<float>& x, int rows, int n) {
    std::vector<int32_t> out(static_cast<size_t>(rows));
    for (int r = 0; r < rows; ++r) out[static_cast<size_t>(r)] = row_argmax(x.data() + static_cast<size_t>(r) * n, n);
    return out;
}

}  // namespace loom::kcases
