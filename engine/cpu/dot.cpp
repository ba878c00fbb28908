// Dot product and axpy with runtime dispatch: the build targets generic x86-64, the AVX2 path is
// compiled per function and chosen once by CPUID.
#include "engine/cpu/dot.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace loom::engine::cpu {

namespace {

float dot_portable(const float* a, const float* b, int n) {
    float acc[8] = {};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
    float s = 0;
    for (float x : acc) s += x;
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

void axpy_portable(float s, const float* x, float* y, int n) {
    for (int i = 0; i < n; ++i) y[i] += s * x[i];
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, int n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),
           acc3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    const __m256 sum8 = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
    __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(sum8), _mm256_extractf128_ps(sum8, 1));
    sum4 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
    sum4 = _mm_add_ss(sum4, _mm_shuffle_ps(sum4, sum4, 1));
    float s = _mm_cvtss_f32(sum4);
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

__attribute__((target("avx2,fma"))) void axpy_avx2(float s, const float* x, float* y, int n) {
    const __m256 vs = _mm256_set1_ps(s);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(vs, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] += s * x[i];
}

const bool kHasAvx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif

}  // namespace

float dot(const float* a, const float* b, int n) {
#if defined(__x86_64__)
    if (kHasAvx2) return dot_avx2(a, b, n);
#endif
    return dot_portable(a, b, n);
}

void axpy(float s, const float* x, float* y, int n) {
#if defined(__x86_64__)
    if (kHasAvx2) return axpy_avx2(s, x, y, n);
#endif
    axpy_portable(s, x, y, n);
}

}  // namespace loom::engine::cpu
