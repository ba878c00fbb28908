// cuBLAS matrix product cases: shapes, inputs, the f64 references (exact, and over the fp16-rounded
// inputs), the hi + lo split of activations and its CPU reference, the tolerances, bytes and FLOPs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/tensor_type.h"
#include "kernel_cases/bench_shapes.h"
#include "kernel_cases/inputs.h"
#include "kernels/split.h"

namespace loom::kcases {

// Against the exact product (CPU-dequantized weights, f32 activations): rounding both inputs to fp16
// perturbs each term by a relative error of at most 2^-11, independently, so the NMSE is about the
// summed variances of the two roundings, ~1e-7 (measured on an H100: 3e-8 .. 8e-8); f32 accumulation
// adds ~1e-12. The bound 5e-5 leaves room for inputs less kind than these (weights near fp16
// subnormals, activations with outliers), yet a wrong layout, a transposed operand or a stale block
// scores ~1 or more.
inline constexpr double kGemmMaxNmse = 5e-5;
// Against the product of the fp16-rounded inputs themselves only the accumulation differs: fp32 in
// the tensor cores (truncating adds per 16-element step) and cuBLAS's fp32 split-K sums (measured:
// 5e-13 at 576 terms .. 7e-11 at 14336). 1e-7 still fails bf16 (~1e-5) or TF32-like operand rounding.
inline constexpr double kGemmMaxNmseF16Inputs = 1e-7;
// F32 weights are multiplied in full fp32 (no fp16 or TF32 rounding of either operand): only the
// fp32 accumulation order differs from the exact product (~1e-12); any operand rounding scores ~1e-7.
inline constexpr double kGemmMaxNmseF32 = 1e-9;
// F16 and BF16 weights are used as stored, times activations split into hi + lo of the same type:
// each activation keeps a relative error of <= 2^-22 (fp16; an absolute 2^-25 below |x| = 2^-3) or
// 2^-16 (bf16), an NMSE of ~1e-14 or ~2e-11, beside the fp32 accumulation's ~1e-12 .. 7e-11. Against
// the exact product 1e-9 holds them with room, yet fails one rounding of the activations (fp16 ~2e-8,
// bf16 ~1e-6): the lo product missing or dropped scores that.
inline constexpr double kGemmMaxNmseSplit = 1e-9;

// Every weight type gemm takes.
const std::vector<gguf::TensorType>& gemm_types();

// W (n_out, n_in) of `type` times X (n_rows, n_in).
struct GemmCase {
    gguf::TensorType type;
    int n_in, n_out, n_rows;
    uint32_t seed;
    std::string name() const;  // "Q4_K 64x1536->576"
};
// Every type at SmolLM2's gate/up and down, and small and odd shapes.
std::vector<GemmCase> gemm_test_cases();
// Prefill sizes: 512 rows, the SmolLM2 vocabulary, an 8B MLP.
std::vector<GemmCase> gemm_prefill_cases();

// A kernel_bench case: a model's matrix at n_rows rows, named "<role>/<type>/rows:<n>".
struct NamedGemmCase {
    std::string label;
    GemmCase c;
};
// kernel_bench's: every synth matrix of the model at the prompt size of kBenchTokens (512 rows).
std::vector<NamedGemmCase> gemm_bench_cases(const BenchModel& m);

struct GemmInputs {
    QuantMatrix w;         // N(0, 0.05) weights (seed)
    std::vector<float> x;  // U(-1, 1) rows (seed + 1)
};
GemmInputs gemm_inputs(const GemmCase& c);
// The rows alone (kernel_bench builds its weights from repeated tiles instead).
std::vector<float> gemm_activations(const GemmCase& c);

// f64 products of W (n_out, n_in) and X (n_rows, n_in): `exact` over the given values, `f16` over the
// same values rounded to fp16. Split over the host's cores.
struct GemmReference {
    std::vector<double> exact, f16;
};
GemmReference gemm_reference(const std::vector<float>& w, const std::vector<float>& x, int n_in, int n_out, int n_rows);

// The split of kernels/split.h on the CPU: hi = round(x), lo = round(x - hi) (0 where hi is
// infinite), round to nearest even, as fp16 or bf16 bits.
struct SplitHalves {
    std::vector<uint16_t> hi, lo;
};
SplitHalves split_reference(kernels::HalfType type, const std::vector<float>& x);
// The value hi + lo stands for, in f64.
double split_value(kernels::HalfType type, uint16_t hi, uint16_t lo);
// How far hi + lo may lie from x: max(2^-22 |x|, 2^-25) for fp16, 2^-16 |x| for bf16.
double split_error_bound(kernels::HalfType type, float x);
// Activations for the split: N(0, 1) scaled by 2^-30 .. 2^15 in turn (fp16's subnormals to its top
// binade), after the edges (fp16's largest finite 65504, its overflow at 65520, ties, subnormals).
std::vector<float> split_inputs(size_t n, uint32_t seed);

double gemm_flops(int n_in, int n_out, int n_rows);
// Bytes of the dequantization: the quantized W read, its fp16 copy written.
double gemm_dequantize_bytes(gguf::TensorType type, int n_in, int n_out);
// Bytes of one gemm() call: F32 W and X read as they are; F16 / BF16: X read, its hi and lo halves
// written and read, W read twice (one product each), Y written, read and written again; quantized:
// X read and its fp16 copy written and read, W dequantized and its fp16 copy read, Y written.
double gemm_bytes(gguf::TensorType type, int n_in, int n_out, int n_rows);

}  // namespace loom::kcases
