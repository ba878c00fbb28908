// CPU reference operators: plain loops, f32 data, double where a reduction is cheap to widen.
#include "engine/cpu/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/cpu/dot.h"

namespace loom::engine::cpu {

void rmsnorm(const float* x, const float* w, float* out, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; ++i) ss += double(x[i]) * x[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(ss / n + eps));
    for (int i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

void matmul(ThreadPool& pool, const float* W, const float* X, float* Y, int T, int n_in, int n_out) {
    // Chunks of W rows; within a chunk each row meets every X row while it is hot in cache.
    pool.parallel_for(static_cast<size_t>(n_out), 16, [&](size_t begin, size_t end) {
        for (size_t o = begin; o < end; ++o) {
            const float* w = W + o * static_cast<size_t>(n_in);
            for (int t = 0; t < T; ++t)
                Y[static_cast<size_t>(t) * n_out + o] = dot(w, X + static_cast<size_t>(t) * n_in, n_in);
        }
    });
}

std::vector<float> rope_inv_freq(int rope_dim, float base, std::span<const float> divisors) {
    std::vector<float> f(rope_dim / 2);
    for (int i = 0; i < rope_dim / 2; ++i) {
        double v = std::pow(double(base), -2.0 * i / rope_dim);
        if (!divisors.empty()) v /= divisors[i];
        f[i] = static_cast<float>(v);
    }
    return f;
}

void rope(float* v, int head_dim, int pos, RopeMode mode, std::span<const float> inv_freq) {
    const int half = head_dim / 2;
    for (int i = 0; i < half; ++i) {
        const double angle = double(pos) * inv_freq[i];
        const float c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
        const int a = mode == RopeMode::Normal ? 2 * i : i;
        const int b = mode == RopeMode::Normal ? 2 * i + 1 : i + half;
        const float x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
    }
}

void attention(ThreadPool& pool, const float* q, const float* k_cache, const float* v_cache, float* out, int T,
               int pos0, int n_head, int n_head_kv, int head_dim) {
    const int q_dim = n_head * head_dim, kv_dim = n_head_kv * head_dim;
    const int group = n_head / n_head_kv;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    pool.parallel_for(static_cast<size_t>(T) * n_head, 1, [&](size_t begin, size_t end) {
        std::vector<float> scores(static_cast<size_t>(pos0 + T));
        for (size_t job = begin; job < end; ++job) {
            const int t = static_cast<int>(job / n_head), h = static_cast<int>(job % n_head);
            const int g = h / group;
            const int n_keys = pos0 + t + 1;  // causal: this query sees positions 0 .. pos0 + t
            const float* qh = q + static_cast<size_t>(t) * q_dim + h * head_dim;
            float max_score = -INFINITY;
            for (int j = 0; j < n_keys; ++j) {
                scores[j] = dot(qh, k_cache + static_cast<size_t>(j) * kv_dim + g * head_dim, head_dim) * scale;
                max_score = std::max(max_score, scores[j]);
            }
            double sum = 0;
            for (int j = 0; j < n_keys; ++j) {
                scores[j] = std::exp(scores[j] - max_score);
                sum += scores[j];
            }
            float* oh = out + static_cast<size_t>(t) * q_dim + h * head_dim;
            std::fill(oh, oh + head_dim, 0.f);
            const float inv_sum = static_cast<float>(1.0 / sum);
            for (int j = 0; j < n_keys; ++j)
                axpy(scores[j] * inv_sum, v_cache + static_cast<size_t>(j) * kv_dim + g * head_dim, oh, head_dim);
        }
    });
}

void swiglu(const float* gate, const float* up, float* out, int n) {
    for (int i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace loom::engine::cpu
