// Matrix-vector product cases: the tests' shapes, kernel_bench's shapes, inputs, references, bytes.
#include "kernel_cases/matvec_cases.h"

#include <array>
#include <cctype>
#include <cmath>
#include <initializer_list>

namespace loom::kcases {

using gguf::TensorType;

namespace {

std::string type_name(TensorType type) { return std::string(gguf::tensor_type_name(type)); }

std::string lower(std::string s) {
    for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
}

// Every shape (n_out, n_in, n_vec) under every type, type by type, seeds counting up from `seed`.
std::vector<MatvecCase> grid(std::initializer_list<TensorType> types, std::initializer_list<std::array<int, 3>> shapes,
                             uint32_t seed) {
    std::vector<MatvecCase> cases;
    for (const auto type : types)
        for (const auto& [n_out, n_in, n_vec] : shapes) cases.push_back({type, n_out, n_in, n_vec, seed++});
    return cases;
}

}  // namespace

std::string MatvecCase::name() const {
    return type_name(type) + " " + std::to_string(n_out) + "x" + std::to_string(n_in) + " T=" + std::to_string(n_vec);
}

std::string FusedChainCase::name() const {
    return type_name(type) + " n=" + std::to_string(n) + " mid=" + std::to_string(n_mid) +
           " T=" + std::to_string(n_vec);
}

std::vector<MatvecCase> matvec_block32_cases() {
    // SmolLM2-135M: q/o (576x576), gate/up (1536x576), down (576x1536); Qwen2.5-0.5B: q/o (896x896),
    // gate/up (4864x896), down (896x4864); odd: rows not a multiple of the warps per block, rows
    // shorter than one warp pass.
    return grid({TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0},
                {{576, 576, 1},
                 {1536, 576, 2},
                 {576, 1536, 3},
                 {896, 896, 1},
                 {4864, 896, 5},
                 {896, 4864, 8},
                 {37, 32, 1},
                 {131, 96, 4},
                 {1, 160, 7}},
                1000);
}

std::vector<MatvecCase> matvec_kquant_cases() {
    // SmolLM2 down; Qwen2.5 down (19 super-blocks per row); odd.
    return grid(
        {TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K},
        {{576, 1536, 1}, {576, 1536, 4}, {896, 4864, 1}, {896, 4864, 8}, {37, 256, 2}, {131, 512, 3}, {1, 768, 6}},
        2000);
}

std::vector<MatvecCase> matvec_half_cases() {
    // 37x33 and 5x7: rows of odd length, the unaligned path.
    return grid({TensorType::F16, TensorType::BF16},
                {{576, 576, 1}, {4864, 896, 2}, {1536, 576, 6}, {131, 1000, 1}, {37, 33, 3}, {5, 7, 8}}, 3000);
}

std::vector<MatvecCase> matvec_f32_cases() {
    // stories260K's output projection and layers; 37x30: rows not a multiple of 4, the unaligned path.
    return grid({TensorType::F32}, {{512, 64, 1}, {172, 64, 8}, {64, 172, 5}, {1000, 576, 2}, {37, 30, 4}, {3, 1, 1}},
                3500);
}

std::vector<MatvecCase> matvec_output_cases() {
    return {{TensorType::Q8_0, 49152, 576, 1, 4000},
            {TensorType::Q8_0, 49152, 576, 4, 4001},
            {TensorType::F16, 49152, 576, 1, 4002},
            {TensorType::BF16, 49152, 576, 2, 4003}};
}

std::vector<MatvecCase> matvec_batched_cases() {
    auto cases = grid(
        {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q6_K, TensorType::F16},
        {{576, 1536, 32}, {1536, 512, 12}, {131, 256, 9}}, 4500);
    uint32_t seed = cases.back().seed + 1;
    cases.push_back({TensorType::F16, 37, 33, 32, seed++});  // the unaligned path
    cases.push_back({TensorType::F32, 64, 172, 17, seed++});
    return cases;
}

std::vector<MatvecCase> matvec_batch_invariance_cases() {
    return {{TensorType::Q4_1, 576, 576, 32, 6000},
            {TensorType::Q8_0, 131, 512, 8, 6001},
            {TensorType::Q4_K, 256, 512, 19, 6002},
            {TensorType::F16, 37, 36, 5, 6003}};  // the unaligned path
}

std::vector<FusedChainCase> fused_chain_cases() {
    std::vector<FusedChainCase> cases;
    uint32_t seed = 5000;
    for (const auto type : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0,
                            TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K, TensorType::F16, TensorType::BF16}) {
        const bool k_quant = gguf::tensor_type_info(type).block_elems == 256;
        cases.push_back({type, k_quant ? 768 : 576, 1536, 1, seed += 10});  // SmolLM2's width: gate_up then down
        cases.push_back({type, 512, 256, 7, seed += 10});
        cases.push_back({type, 768, 512, 32, seed += 10});
    }
    cases.push_back({TensorType::Q4_0, 4096, 1024, 2, seed += 10});  // the 8B width
    cases.push_back({TensorType::F32, 64, 172, 3, seed += 10});      // stories260K's shapes
    cases.push_back({TensorType::F16, 64, 172, 4, seed += 10});      // rows of 172 halves: the unaligned path
    cases.push_back({TensorType::F16, 66, 40, 5, seed += 10});       // 66 rows: a last partial of 2
    return cases;
}

std::vector<NamedMatvecCase> matvec_bench_cases(const BenchModel& m) {
    std::vector<NamedMatvecCase> cases;
    for (const auto& mat : synth_matrices(m))
        for (const int n_vec : {1, 8})
            cases.push_back({mat.role,
                             mat.role + "/" + lower(type_name(mat.type)) + "/nvec:" + std::to_string(n_vec),
                             {mat.type, mat.n_out, mat.n_in, n_vec, 3}});
    return cases;
}

std::vector<NamedMatvecCase> fused_matvec_bench_cases(const BenchModel& m) {
    std::vector<NamedMatvecCase> cases;
    for (const auto& mat : synth_matrices(m)) {
        if (mat.role != "q" && mat.role != "gate" && mat.role != "o" && mat.role != "down") continue;
        for (const int n_vec : {1, 32})
            cases.push_back({mat.role,
                             mat.role + "/" + lower(type_name(mat.type)) + "/nvec:" + std::to_string(n_vec),
                             {mat.type, mat.n_out, mat.n_in, n_vec, 3}});
    }
    return cases;
}

MatvecInputs matvec_inputs(const MatvecCase& c) {
    return {random_matrix(c.type, c.n_out, c.n_in, c.seed), matvec_vectors(c)};
}

std::vector<float> matvec_vectors(const MatvecCase& c) {
    return random_uniform(static_cast<size_t>(c.n_vec) * c.n_in, c.seed + 1, -1.f, 1.f);
}

std::vector<double> matvec_reference(const QuantMatrix& w, const std::vector<double>& x, int n_out, int n_in,
                                     int n_vec) {
    std::vector<double> y(static_cast<size_t>(n_vec) * n_out);
    for (int t = 0; t < n_vec; ++t)
        for (int o = 0; o < n_out; ++o) {
            const float* row = w.values.data() + static_cast<size_t>(o) * n_in;
            const double* xt = x.data() + static_cast<size_t>(t) * n_in;
            double sum = 0;
            for (int i = 0; i < n_in; ++i) sum += static_cast<double>(row[i]) * xt[i];
            y[static_cast<size_t>(t) * n_out + o] = sum;
        }
    return y;
}

std::vector<double> rmsnorm_reference_f64(const std::vector<double>& x, const std::vector<float>& w, int n,
                                          double eps) {
    std::vector<double> out(x.size());
    for (size_t t = 0; t < x.size() / n; ++t) {
        double ss = 0;
        for (int i = 0; i < n; ++i) ss += x[t * n + i] * x[t * n + i];
        const double scale = 1.0 / std::sqrt(ss / n + eps);
        for (int i = 0; i < n; ++i) out[t * n + i] = x[t * n + i] * scale * w[static_cast<size_t>(i)];
    }
    return out;
}

double matvec_bytes(TensorType type, int n_in, int n_out, int n_vec) {
    return static_cast<double>(gguf::tensor_bytes(type, static_cast<uint64_t>(n_in) * n_out)) +
           4.0 * n_vec * (n_in + n_out);
}

double fused_matvec_bytes(TensorType type, int n_in, int n_out, int n_vec, bool residual) {
    return static_cast<double>(gguf::tensor_bytes(type, static_cast<uint64_t>(n_in) * n_out)) +
           4.0 * n_vec * (n_in + (residual ? 3 : 1) * n_out);
}

double matvec_flops(int n_in, int n_out, int n_vec) { return 2.0 * n_in * n_out * n_vec; }

}  // namespace loom::kcases
