// Elementwise kernel cases: the tests' shapes, kernel_bench's shapes, inputs, the CPU references.
#include "kernel_cases/elementwise_cases.h"

#include "engine/cpu/cpu_ops.h"
#include "kernel_cases/inputs.h"

namespace loom::kcases {

namespace {

std::string by(int64_t rows, int64_t n) { return std::to_string(rows) + "x" + std::to_string(n); }

}  // namespace

std::string SwigluCase::name() const { return std::to_string(n) + (in_place ? " in-place" : ""); }

std::vector<SwigluCase> swiglu_test_cases() {
    return {{1536, false, 800},      // SmolLM2 FFN, one token
            {4864, false, 801},      // Qwen2.5-0.5B FFN
            {4864 * 7, false, 802},  // seven tokens
            {37, false, 803},        {1, false, 804},
            {5'000'003, false, 805},  // more elements than the grid has threads
            {4864, true, 806}};
}

SwigluCase swiglu_bench_case(const BenchModel& m, int tokens) {
    return {static_cast<int64_t>(tokens) * m.shape.ffn, false, 7};
}

SwigluInputs swiglu_inputs(const SwigluCase& c) {
    return {random_uniform(static_cast<size_t>(c.n), c.seed, -8.f, 8.f),
            random_uniform(static_cast<size_t>(c.n), c.seed + 1, -2.f, 2.f)};
}

std::vector<float> swiglu_reference(const std::vector<float>& gate, const std::vector<float>& up) {
    std::vector<float> ref(gate.size());
    engine::cpu::swiglu(gate.data(), up.data(), ref.data(), static_cast<int>(gate.size()));
    return ref;
}

std::string SwigluPairsCase::name() const { return by(rows, n); }

std::vector<SwigluPairsCase> swiglu_pairs_test_cases() {
    return {{1, 1536, 850}, {8, 1536, 851}, {3, 14336, 852}, {5, 38, 853}, {512, 4864, 854}};
}

SwigluPairsCase swiglu_pairs_bench_case(const BenchModel& m, int tokens) {
    return {tokens, static_cast<int>(m.shape.ffn), 7};
}

std::vector<float> swiglu_pairs_inputs(const SwigluPairsCase& c) {
    return random_uniform(static_cast<size_t>(c.rows) * 2 * c.n, c.seed, -8.f, 8.f);
}

std::vector<float> swiglu_pairs_reference(const std::vector<float>& gate_up, int rows, int n) {
    std::vector<float> ref(static_cast<size_t>(rows) * n);
    std::vector<float> gate(static_cast<size_t>(n)), up(static_cast<size_t>(n));
    for (int r = 0; r < rows; ++r) {
        const float* row = gate_up.data() + static_cast<size_t>(r) * 2 * n;
        for (int j = 0; j < n; j += 2)  // [gate j, gate j+1, up j, up j+1]
            for (int k = 0; k < 2; ++k) {
                gate[static_cast<size_t>(j + k)] = row[2 * j + k];
                up[static_cast<size_t>(j + k)] = row[2 * j + 2 + k];
            }
        engine::cpu::swiglu(gate.data(), up.data(), ref.data() + static_cast<size_t>(r) * n, n);
    }
    return ref;
}

std::string AddCase::name() const { return std::to_string(n) + (in_place ? "-in-place" : ""); }

std::vector<AddCase> add_test_cases() {
    std::vector<AddCase> cases;
    uint32_t seed = 900;
    for (const int64_t n : {int64_t{576}, int64_t{896 * 5}, int64_t{37}, int64_t{3'000'001}})
        for (const bool in_place : {false, true}) {
            cases.push_back({n, in_place, seed});
            seed += 2;
        }
    return cases;
}

AddCase add_bench_case(const BenchModel& m, int tokens) {
    return {static_cast<int64_t>(tokens) * m.shape.embd, true, 9};
}

AddInputs add_inputs(const AddCase& c) {
    return {random_uniform(static_cast<size_t>(c.n), c.seed, -3.f, 3.f),
            random_uniform(static_cast<size_t>(c.n), c.seed + 1, -3.f, 3.f)};
}

std::vector<float> add_reference(const std::vector<float>& a, const std::vector<float>& b) {
    std::vector<float> ref(a.size());
    for (size_t i = 0; i < a.size(); ++i) ref[i] = a[i] + b[i];
    return ref;
}

std::string AddBiasCase::name() const { return by(rows, n); }

std::vector<AddBiasCase> add_bias_test_cases() {
    return {{1, 896, 950}, {7, 896, 952}, {5, 128, 954}, {3, 37, 956}, {1000, 1, 958}};
}

AddBiasCase add_bias_bench_case(const BenchModel& m, int tokens) { return {tokens, m.q_dim(), 12}; }

AddBiasInputs add_bias_inputs(const AddBiasCase& c) {
    return {random_uniform(static_cast<size_t>(c.rows) * c.n, c.seed, -2.f, 2.f),
            random_uniform(static_cast<size_t>(c.n), c.seed + 1, -1.f, 1.f)};
}

std::vector<float> add_bias_reference(const std::vector<float>& x, const std::vector<float>& bias, int rows, int n) {
    std::vector<float> ref = x;
    for (int r = 0; r < rows; ++r)
        for (int i = 0; i < n; ++i) ref[static_cast<size_t>(r) * n + i] += bias[static_cast<size_t>(i)];
    return ref;
}

std::string GatherCase::name() const { return by(src_rows, width) + ", " + std::to_string(rows.size()) + " rows"; }

std::vector<GatherCase> gather_test_cases() {
    return {{9, 576, {8, 0, 3, 3}, 990},
            {512, 4096, {511, 17, 0, 256, 255}, 991},
            {3, 37, {2}, 992},
            {2, 100000, {1, 0}, 993}};
}

GatherCase gather_bench_case(const BenchModel& m, int n_seq) {
    constexpr int kStepTokens = 512;
    GatherCase c{kStepTokens, m.shape.embd, {}, 15};
    for (int s = 0; s < n_seq; ++s) c.rows.push_back((s + 1) * kStepTokens / n_seq - 1);
    return c;
}

std::vector<float> gather_inputs(const GatherCase& c) {
    return random_uniform(static_cast<size_t>(c.src_rows) * static_cast<size_t>(c.width), c.seed, -2.f, 2.f);
}

std::vector<float> gather_reference(const std::vector<float>& src, const GatherCase& c) {
    std::vector<float> ref;
    for (const int32_t r : c.rows) ref.insert(ref.end(), src.begin() + r * c.width, src.begin() + (r + 1) * c.width);
    return ref;
}

}  // namespace loom::kcases
