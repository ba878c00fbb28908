// Matrix-vector product cases (plain and fused RMSNorm/residual forms): shapes, inputs, the f64
// reference over the CPU-dequantized weights, the tolerance, and the bytes a launch must move.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/tensor_type.h"
#include "kernel_cases/bench_shapes.h"
#include "kernel_cases/inputs.h"

namespace loom::kcases {

// The kernel multiplies by exactly dequantized weights, so only f32 summation separates it from
// the f64 reference: the f32 budget applies, far inside the 5e-4 allowed to quantized products.
inline constexpr double kMatvecMaxNmse = 1e-6;
inline constexpr float kMatvecEps = 1e-5f;  // the fused forms' RMSNorm epsilon

// W (n_out, n_in) of `type` times n_vec vectors of n_in.
struct MatvecCase {
    gguf::TensorType type;
    int n_out, n_in, n_vec;
    uint32_t seed;
    std::string name() const;  // "Q4_0 576x576 T=1"
};

// The test groups: 32-element block formats, K-quant super-blocks, F16/BF16 (aligned or not), F32,
// the SmolLM2 output projection, up to 32 vectors (batched decode).
std::vector<MatvecCase> matvec_block32_cases();
std::vector<MatvecCase> matvec_kquant_cases();
std::vector<MatvecCase> matvec_half_cases();
std::vector<MatvecCase> matvec_f32_cases();
std::vector<MatvecCase> matvec_output_cases();
std::vector<MatvecCase> matvec_batched_cases();
// Vector t of a batch equals a one-vector call on it alone, bit for bit (no reference).
std::vector<MatvecCase> matvec_batch_invariance_cases();

// The decode layer's fused chain: norm_inputs over x (n), a normed product A (n_mid, n), a residual
// product B (n, n_mid) into x, then a normed product of the new x.
struct FusedChainCase {
    gguf::TensorType type;
    int n, n_mid, n_vec;
    uint32_t seed;
    std::string name() const;  // "Q4_0 n=576 mid=1536 T=1"
};
std::vector<FusedChainCase> fused_chain_cases();

// A kernel_bench case: a model's matrix at n_vec vectors, named "<role>/<type>/nvec:<n>".
struct NamedMatvecCase {
    std::string role, label;
    MatvecCase c;
};
// kernel_bench's plain matvec cases of a model: every synth matrix at 1 and 8 vectors.
std::vector<NamedMatvecCase> matvec_bench_cases(const BenchModel& m);
// The fused forms' cases: the normed (q, gate) and residual (o, down) matrices at 1 and 32 vectors.
std::vector<NamedMatvecCase> fused_matvec_bench_cases(const BenchModel& m);

struct MatvecInputs {
    QuantMatrix w;         // N(0, 0.05) weights (seed)
    std::vector<float> x;  // U(-1, 1) vectors (seed + 1)
};
MatvecInputs matvec_inputs(const MatvecCase& c);
// The vectors alone (kernel_bench builds its weights from repeated tiles instead).
std::vector<float> matvec_vectors(const MatvecCase& c);

// Y (n_vec, n_out) = W @ X^T in f64, over W's dequantized values.
std::vector<double> matvec_reference(const QuantMatrix& w, const std::vector<double>& x, int n_out, int n_in,
                                     int n_vec);
// rmsnorm(x) * w per vector of n, in f64.
std::vector<double> rmsnorm_reference_f64(const std::vector<double>& x, const std::vector<float>& w, int n, double eps);

// Bytes one launch must move: W once, the vectors in and the products out.
double matvec_bytes(gguf::TensorType type, int n_in, int n_out, int n_vec);
// The fused forms: a residual product also reads R and writes R and the next norm's inputs.
double fused_matvec_bytes(gguf::TensorType type, int n_in, int n_out, int n_vec, bool residual);
double matvec_flops(int n_in, int n_out, int n_vec);

}  // namespace loom::kcases
