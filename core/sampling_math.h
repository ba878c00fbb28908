// The sampler's exact arithmetic (integer token weights, top-p/min-p thresholds, the draw position),
// header-only so the CPU sampler and a CUDA sampler compute bit-identical results.
#pragma once

// <cstdint> is usable from device code; nothing else is included so nvcc can take this header.
#include <cstdint>

#if defined(__CUDACC__)
#define LOOM_SAMPLING_HD __host__ __device__
#else
#define LOOM_SAMPLING_HD
#endif

namespace loom::sampling {

// A token's weight is round(exp(z) * 2^40) with z = (l - l_max) / T <= 0: the top token weighs
// exactly 2^40, and integer sums are exact in any order (n_vocab <= 2^23 keeps them below 2^63).
inline constexpr int kWeightBits = 40;
inline constexpr std::uint64_t kTopWeight = std::uint64_t{1} << kWeightBits;
inline constexpr std::int32_t kMaxVocab = std::int32_t{1} << 23;

// At and below z = -32, exp(z) * 2^40 < 0.014 and the weight is 0: exactly the z with |z| >= 32,
// which the biased exponent field tells (>= 1023 + 5) without a floating-point comparison.
inline constexpr std::uint64_t kFirstZeroWeightExponent = 1023 + 5;

// Round-to-nearest double operations that nvcc never fuses into an FMA. Host translation units
// using this header must be compiled with -ffp-contract=off: GCC fuses a*b+c across statements in
// C++ whenever the target has FMA (-march=native), which changes some weights by one unit.
LOOM_SAMPLING_HD inline double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}
LOOM_SAMPLING_HD inline double add_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dadd_rn(a, b);
#else
    return a + b;
#endif
}

// A double's bits as an integer, and back.
LOOM_SAMPLING_HD inline std::uint64_t bits_of(double v) {
#if defined(__CUDA_ARCH__)
    return static_cast<std::uint64_t>(__double_as_longlong(v));
#else
    return __builtin_bit_cast(std::uint64_t, v);
#endif
}
LOOM_SAMPLING_HD inline double double_of(std::uint64_t bits) {
#if defined(__CUDA_ARCH__)
    return __longlong_as_double(static_cast<long long>(bits));
#else
    return __builtin_bit_cast(double, bits);
#endif
}

// z = (double(l) - double(l_max)) / double(temperature): one subtraction, one division, both exact
// IEEE operations, so every implementation agrees.
LOOM_SAMPLING_HD inline double exponent(float logit, float max_logit, float temperature) {
    return (static_cast<double>(logit) - static_cast<double>(max_logit)) / static_cast<double>(temperature);
}

// round(exp(z) * 2^40) for z <= 0 (z = -inf gives 0), by this exact recipe, free of branches and
// floating-point comparisons so that CPU loops vectorize (every step is a correctly rounded IEEE
// operation or exact bit arithmetic):
//   in range: |z| < 32 (by the exponent field); y = z in range, else -16 (any value, discarded);
//   k = rint(y * log2(e)) (ties to even; k in [-46, 0]);  r = (y - k * ln2_hi) - k * ln2_lo (|r| <= 0.35);
//   p = the degree-11 Taylor polynomial of e^r by Horner, from the highest coefficient down;
//   x = p * 2^(k + 40);  w = in range ? rint(x) : 0 (ties to even).
// The polynomial's relative error (< 1e-14) keeps x within 0.01 of exp(z) * 2^40.
LOOM_SAMPLING_HD inline std::uint64_t weight(double z) {
    constexpr double kLog2E = 1.44269504088896338700e+00;
    constexpr double kLn2Hi = 6.93147180369123816490e-01;  // ln 2 with its low 21 bits zero: k * kLn2Hi is exact
    constexpr double kLn2Lo = 1.90821492927058770002e-10;  // ln 2 - kLn2Hi
    constexpr double kRoundInteger = 0x1.8p52;             // t + this - this = rint(t) for |t| < 2^51
    constexpr double kRoundUnsigned = 0x1p52;              // x + this has rint(x) in its low bits for 0 <= x < 2^52
    constexpr double kInverseFactorial[12] = {
        1.0,         1.0,          1.0 / 2.0,     1.0 / 6.0,      1.0 / 24.0,      1.0 / 120.0,
        1.0 / 720.0, 1.0 / 5040.0, 1.0 / 40320.0, 1.0 / 362880.0, 1.0 / 3628800.0, 1.0 / 39916800.0,
    };
    const std::uint64_t z_bits = bits_of(z);
    const std::uint64_t biased_exponent = (z_bits >> 52) & 0x7ff;
    // All ones when the exponent is below the first zero-weight one (the subtraction wraps), else 0.
    const std::uint64_t in_range = 0 - ((biased_exponent - kFirstZeroWeightExponent) >> 63);
    const double y = double_of((z_bits & in_range) | (bits_of(-16.0) & ~in_range));
    const double shifted = add_rn(mul_rn(y, kLog2E), kRoundInteger);
    const double k = add_rn(shifted, -kRoundInteger);
    const std::uint64_t k_plus_bias = bits_of(shifted) - bits_of(kRoundInteger) + kWeightBits + 1023;
    const double r = add_rn(add_rn(y, -mul_rn(k, kLn2Hi)), -mul_rn(k, kLn2Lo));
    double p = kInverseFactorial[11];
    for (int i = 10; i >= 0; --i) p = add_rn(mul_rn(p, r), kInverseFactorial[i]);
    const double scale = double_of(k_plus_bias << 52);  // 2^(k + 40), a normal double
    const std::uint64_t w = bits_of(add_rn(mul_rn(p, scale), kRoundUnsigned)) - bits_of(kRoundUnsigned);
    return w & in_range;
}

// a * b as 128 bits (hi, lo).
struct Wide {
    std::uint64_t hi;
    std::uint64_t lo;
};
LOOM_SAMPLING_HD constexpr Wide multiply_wide(std::uint64_t a, std::uint64_t b) {
    const std::uint64_t a0 = a & 0xffffffffu, a1 = a >> 32;
    const std::uint64_t b0 = b & 0xffffffffu, b1 = b >> 32;
    const std::uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    const std::uint64_t middle = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
    return Wide{p11 + (p01 >> 32) + (p10 >> 32) + (middle >> 32), (middle << 32) | (p00 & 0xffffffffu)};
}

// ceil(total * fraction) exactly, for a float fraction in (0, 1]: fraction = m / 2^s with an
// integer m < 2^24, so the product is a 128-bit integer shifted right with rounding up.
LOOM_SAMPLING_HD constexpr std::uint64_t ceil_fraction(std::uint64_t total, float fraction) {
    double m = fraction;
    int s = 0;
    while (m != static_cast<double>(static_cast<std::uint64_t>(m))) {  // doubling is exact
        m *= 2.0;
        ++s;
    }
    const Wide p = multiply_wide(total, static_cast<std::uint64_t>(m));
    if (s == 0) return p.lo;  // fraction == 1
    if (s >= 128) return (p.hi | p.lo) != 0 ? 1 : 0;
    const std::uint64_t quotient = s >= 64 ? p.hi >> (s - 64) : (p.lo >> s) | (p.hi << (64 - s));
    const bool remainder = s >= 64 ? (p.lo != 0 || (p.hi & ((std::uint64_t{1} << (s - 64)) - 1)) != 0)
                                   : (p.lo & ((std::uint64_t{1} << s) - 1)) != 0;
    return quotient + (remainder ? 1 : 0);
}

// top-p keeps the shortest σ-prefix whose cumulative weight reaches ceil(top_p * W).
LOOM_SAMPLING_HD constexpr std::uint64_t top_p_target(std::uint64_t total, float top_p) {
    return ceil_fraction(total, top_p);
}

// min-p keeps weights >= ceil(min_p * 2^40), i.e. p >= min_p * p_max.
LOOM_SAMPLING_HD constexpr std::uint64_t min_p_threshold(float min_p) {
    const double x = static_cast<double>(min_p) * static_cast<double>(kTopWeight);  // exact
    const auto q = static_cast<std::uint64_t>(x);
    return static_cast<double>(q) == x ? q : q + 1;
}

// The draw: floor(u * W) for u = bits * 2^-53, as an exact integer in [0, W).
LOOM_SAMPLING_HD constexpr std::uint64_t draw_position(std::uint64_t bits53, std::uint64_t total) {
    const Wide p = multiply_wide(bits53, total);
    return (p.hi << 11) | (p.lo >> 53);
}

// A 32-bit key increasing with the logit (-0 and +0 equal), for radix selection in σ order;
// branch-free, since logit signs are random and mispredictions would dominate a pass.
LOOM_SAMPLING_HD constexpr std::uint32_t order_key(std::uint32_t float_bits) {
    const std::uint32_t sign_fill = 0u - (float_bits >> 31);           // all ones for negatives
    const std::uint32_t key = float_bits ^ (sign_fill | 0x80000000u);  // negatives flip, positives gain the top bit
    return key + (key == 0x7fffffffu ? 1u : 0u);                       // -0 joins +0
}

}  // namespace loom::sampling

#undef LOOM_SAMPLING_HD
