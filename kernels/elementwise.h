// Elementwise kernels of the forward pass: SwiGLU, the residual add, the bias add, row gathering.
#pragma once

#include <cstdint>

#include "kernels/stream.h"

namespace loom::kernels {

// gate (n), up (n) -> out (n) = silu(gate) * up = gate / (1 + exp(-gate)) * up.
// out may equal gate or up. Device pointers; asynchronous on `stream`.
void swiglu(const float* gate, const float* up, float* out, int64_t n, Stream stream);

// gate_up (rows, 2n), each row a fused gate/up product in the pair layout of kernels/matvec.h
// (kSwigluPairRows gate values, as many up values, in turn) -> out (rows, n) = silu(gate) * up, the
// same float operations as swiglu(). n even; out must not overlap gate_up.
void swiglu_pairs(const float* gate_up, int rows, int n, float* out, Stream stream);

// a (n) + b (n) -> out (n); out may equal a or b (the residual add: x = x + f(x)).
void add(const float* a, const float* b, float* out, int64_t n, Stream stream);

// X (rows, n) += bias (n) on every row (qwen2's q/k/v biases).
void add_bias(float* X, const float* bias, int rows, int n, Stream stream);

// dst (n, width) = src rows rows[0..n-1] (src (*, width)): picks the tokens whose logits a step
// needs. dst must not overlap src. Device pointers; asynchronous on `stream`.
void gather_rows(const float* src, int64_t width, const int32_t* rows, int n, float* dst, Stream stream);

}  // namespace loom::kernels
