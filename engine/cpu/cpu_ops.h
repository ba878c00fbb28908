// The CPU reference operators of the forward pass. Every CUDA kernel is checked against these.
// Row-major throughout; a weight matrix W with GGUF ne = {n_in, n_out} is n_out rows of n_in.
#pragma once

#include <span>

#include "engine/cpu/thread_pool.h"
#include "engine/model_config.h"

namespace loom::engine::cpu {

// x (n) -> out (n) = x / sqrt(mean(x^2) + eps) * w; the mean is taken in double.
void rmsnorm(const float* x, const float* w, float* out, int n, float eps);

// W (n_out, n_in) @ X (T, n_in)^T -> Y (T, n_out), split over rows of W across the pool.
void matmul(ThreadPool& pool, const float* W, const float* X, float* Y, int T, int n_in, int n_out);

// Angular frequency of each rotated pair: base^(-2i/rope_dim) / divisor[i] (divisors may be empty).
std::vector<float> rope_inv_freq(int rope_dim, float base, std::span<const float> divisors);

// Rotates one head vector v (head_dim) for position `pos` in place. Normal mode pairs (2i, 2i+1);
// NeoX pairs (i, i + head_dim/2). The angle pos * inv_freq[i] is formed in double.
void rope(float* v, int head_dim, int pos, RopeMode mode, std::span<const float> inv_freq);

// Causal attention of T queries at positions pos0 .. pos0+T-1 over a cache holding positions
// 0 .. pos0+T-1. q (T, n_head*hd), k_cache/v_cache (n_pos, n_head_kv*hd) -> out (T, n_head*hd).
// Query head h reads KV head h / (n_head / n_head_kv) (GQA). Softmax max and sum in double.
void attention(ThreadPool& pool, const float* q, const float* k_cache, const float* v_cache, float* out, int T,
               int pos0, int n_head, int n_head_kv, int head_dim);

// gate (n), up (n) -> out (n) = silu(gate) * up
void swiglu(const float* gate, const float* up, float* out, int n);

}  // namespace loom::engine::cpu
