// RMSNorm over the rows of a batch of hidden states.
#pragma once

#include "kernels/stream.h"

namespace loom::kernels {

// X (rows, n), w (n) -> Y (rows, n): y = x / sqrt(mean(x^2) + eps) * w, one thread block per row.
// Y may equal X (in place); device pointers; asynchronous on `stream`. n > 0, rows >= 0.
// Also serves per-head norms (rows = tokens * heads, n = head_dim).
void rmsnorm(const float* X, const float* w, float* Y, int rows, int n, float eps, Stream stream);

// The residual add fused into the norm after it: X (rows, n) += R (rows, n), then Y = rmsnorm(X) * w,
// the same float operations as add() followed by rmsnorm(). Y must not overlap X or R.
void add_rmsnorm(float* X, const float* R, const float* w, float* Y, int rows, int n, float eps, Stream stream);

}  // namespace loom::kernels
