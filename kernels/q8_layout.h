// The q8 family's shared definitions, for host and device code alike: where the repacked weight streams keep
// each quant, the per-unit metadata of quantized x, a unit's f32 term and the 32-slot tree, so the CPU
// reference and the kernels do the very same float operations (no CUDA headers: plain C++ includes it too).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "gguf/tensor_type.h"

#if defined(__CUDACC__)
#define LOOM_Q8_HD __host__ __device__
#else
#define LOOM_Q8_HD
#endif

namespace loom::kernels::q8 {

using gguf::TensorType;

// The family's types, in one list for loops over all of them (tests, matvec_dev).
inline constexpr TensorType kTypes[] = {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q8_0,
                                        TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K};

inline constexpr int kUnit = 32;          // elements per unit: one exact int8 dot product / one MMA K slice
inline constexpr int kSlots = 32;         // f32 partial sums per output, summed by tree32
inline constexpr int kUnitsPerQuad = 4;   // units a lane's 16-byte load covers (the MMA fragment's rows)
inline constexpr int kUnitsPerSuper = 8;  // a K-quant super-block is 8 units

// Bytes per unit of the quant stream qs (the low 4 bits, or Q8_0's bytes), of the high-bit stream qh
// (Q5_0/Q5_K: bit 4, Q6_K: bits 4-5), of the unit-scale stream um (Q4_1: d and m), and bytes per
// super-block of the super-scale stream sm (Q4_K/Q5_K: d, dmin and the 12 packed scale bytes; Q6_K: d).
struct StreamBytes {
    int qs, qh, um, super;
};

LOOM_Q8_HD constexpr StreamBytes stream_bytes(TensorType t) {
    switch (t) {
        case TensorType::Q8_0: return {32, 0, 2, 0};
        case TensorType::Q4_1: return {16, 0, 4, 0};
        case TensorType::Q5_0: return {16, 4, 2, 0};
        case TensorType::Q4_K: return {16, 0, 0, 16};
        case TensorType::Q5_K: return {16, 4, 0, 16};
        case TensorType::Q6_K: return {16, 8, 2, 2};
        default: return {16, 0, 2, 0};  // Q4_0
    }
}

LOOM_Q8_HD constexpr bool is_k_quant(TensorType t) {
    return t == TensorType::Q4_K || t == TensorType::Q5_K || t == TensorType::Q6_K;
}

// Q4_K and Q5_K: unit scales and mins packed 12 bytes per super-block in the sm stream (no um stream).
LOOM_Q8_HD constexpr bool has_packed_scales(TensorType t) { return t == TensorType::Q4_K || t == TensorType::Q5_K; }

// Q5_0 and Q5_K: a fifth quant bit in the qh stream.
LOOM_Q8_HD constexpr bool has_bit5(TensorType t) { return t == TensorType::Q5_0 || t == TensorType::Q5_K; }

// Q4_K sub-block j's 6-bit scale and min, as the word sc | m << 8, from the 12 packed scale bytes
// (little-endian words s0, s1, s2; layout in gguf/quant_blocks.h).
LOOM_Q8_HD constexpr uint32_t k4_um(uint32_t s0, uint32_t s1, uint32_t s2, int j) {
    const int i = j % 4;
    const uint32_t b0 = (s0 >> (8 * i)) & 0xFFu, b1 = (s1 >> (8 * i)) & 0xFFu, b2 = (s2 >> (8 * i)) & 0xFFu;
    const uint32_t sc = j < 4 ? b0 & 63u : (b2 & 0xFu) | (b0 >> 6) << 4;
    const uint32_t m = j < 4 ? b1 & 63u : (b2 >> 4) | (b1 >> 6) << 4;
    return sc | m << 8;
}

// Byte of a row's qs stream that holds 4-bit unit u's natural byte k (low nibble: element k, high:
// element k + 16): word k/4 of each of the quad's four units sits in lane k/4's 16 bytes.
LOOM_Q8_HD constexpr int pos4(int u, int k) { return (u / 4) * 64 + ((k / 4) * 4 + u % 4) * 4 + k % 4; }

// 8-bit unit u's element k (Q8_0 weights and quantized x): lane t's 32 bytes hold words t and t + 4
// (elements 4t.. and 16 + 4t..) of each unit, exactly the fragment mma.sync m16n8k32 wants.
LOOM_Q8_HD constexpr int pos8(int u, int k) {
    return (u / 4) * 128 + (((k / 4) % 4) * 8 + (u % 4) * 2 + k / 16) * 4 + k % 4;
}

// Q6_K's top two bits of unit u's element k: lane t's 8 bytes; byte j of word (u%4)/2 holds elements
// 4t + j and 16 + 4t + j of two units, at bits 4 (u%2) and 4 (u%2) + 2.
LOOM_Q8_HD constexpr int pos6h(int u, int k) { return (u / 4) * 32 + (((k % 16) / 4) * 2 + (u % 4) / 2) * 4 + k % 4; }
LOOM_Q8_HD constexpr int shift6h(int u, int k) { return (u % 2) * 4 + (k >= 16 ? 2 : 0); }

// Q5_0/Q5_K's fifth bit of unit u's element k: lane t's 4 bytes; byte j holds elements 4t + j (bits 0-3)
// and 16 + 4t + j (bits 4-7) of the quad's four units, unit u % 4 at bit u % 4.
LOOM_Q8_HD constexpr int pos5h(int u, int k) { return (u / 4) * 16 + ((k % 16) / 4) * 4 + k % 4; }
LOOM_Q8_HD constexpr int shift5h(int u, int k) { return u % 4 + (k >= 16 ? 4 : 0); }

// IEEE binary16 bits -> float, exact (the conversion gguf::half_to_float does; C++17 for nvcc's host pass).
LOOM_Q8_HD inline float half_bits(uint16_t bits) {
#ifdef __CUDA_ARCH__
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(bits));
    return f;
#else
    const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16, exp = (bits >> 10) & 0x1Fu;
    uint32_t mant = bits & 0x3FFu, out = sign;
    if (exp == 0x1F) {
        out |= 0x7F800000u | mant << 13;
    } else if (exp != 0) {
        out |= (exp + 112) << 23 | mant << 13;
    } else if (mant != 0) {  // subnormal: shift the leading one up to the implicit bit
        uint32_t e = 113;
        while ((mant & 0x400u) == 0) mant <<= 1, --e;
        out |= e << 23 | (mant & 0x3FFu) << 13;
    }
    float f;
    std::memcpy(&f, &out, 4);
    return f;
#endif
}

// Explicitly rounded f32 ops: on the device no FMA contraction; host code using them is compiled with
// -ffp-contract=off, so both sides round every product and sum separately.
LOOM_Q8_HD inline float fmul(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
LOOM_Q8_HD inline float fadd(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
LOOM_Q8_HD inline float fsub(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

// The weight of raw quant q (unsigned 4/5/6-bit, or Q8_0's int8 bits) at element k of a unit with scale word
// um and super-block word sm (as unit_term takes them), with gguf::dequantize's float operations in its
// order: q8_dequantize_row and q8_dequantize_f16 both compute it here.
template <TensorType T>
LOOM_Q8_HD inline float weight_value(int q, int k, uint32_t um, uint32_t sm) {
    if constexpr (T == TensorType::Q4_0 || T == TensorType::Q5_0) {
        return fmul(static_cast<float>(q - (T == TensorType::Q4_0 ? 8 : 16)), half_bits(static_cast<uint16_t>(um)));
    } else if constexpr (T == TensorType::Q8_0) {
        return fmul(static_cast<float>(static_cast<int8_t>(q)), half_bits(static_cast<uint16_t>(um)));
    } else if constexpr (T == TensorType::Q4_1) {
        const float d = half_bits(static_cast<uint16_t>(um & 0xFFFFu)), m = half_bits(static_cast<uint16_t>(um >> 16));
        return fadd(fmul(static_cast<float>(q), d), m);
    } else if constexpr (T == TensorType::Q4_K || T == TensorType::Q5_K) {
        const float scale = fmul(half_bits(static_cast<uint16_t>(sm & 0xFFFFu)), static_cast<float>(um & 0xFFu));
        const float min = fmul(half_bits(static_cast<uint16_t>(sm >> 16)), static_cast<float>(um >> 8));
        return fsub(fmul(scale, static_cast<float>(q)), min);
    } else {
        static_assert(T == TensorType::Q6_K, "q8 family: Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K");
        const int sc = static_cast<int8_t>(k < 16 ? um & 0xFFu : (um >> 8) & 0xFFu);
        return fmul(fmul(half_bits(static_cast<uint16_t>(sm)), static_cast<float>(sc)), static_cast<float>(q - 32));
    }
}

// The per-unit scale of quantized x: d (x ≈ q d), and the sums of the int8 values of elements 0..15 and
// 16..31 (Q4_0's and Q6_K's offsets and Q4_K's mins need them).
struct XMeta {
    float d;
    int16_t sa, sb;
};
static_assert(sizeof(XMeta) == 8);

// unit_term's factors of the weights' unit alone (um, sm) and of x's unit alone, so a kernel that meets one
// unit of weights with many vectors, or one of x with many rows (the MMA kernel), forms each once. d: the
// unit's scale (Q4_K/Q5_K: d·sc); m: Q4_1's min, Q4_K/Q5_K's dmin·mn; sa, sb: Q6_K's two int8 scales.
struct UnitRowFactors {
    float d, m;
    int sa, sb;
};
// d: x's scale; s: float(sa + sb); sa, sb: the sums of its int8 halves; off: Q4_0's 8 (sa + sb), Q5_0's 16.
struct UnitXFactors {
    float d, s;
    int sa, sb, off;
};

template <TensorType T>
LOOM_Q8_HD inline UnitRowFactors unit_row_factors(uint32_t um, uint32_t sm) {
    if constexpr (T == TensorType::Q4_0 || T == TensorType::Q5_0 || T == TensorType::Q8_0) {
        return {half_bits(static_cast<uint16_t>(um)), 0.0f, 0, 0};
    } else if constexpr (T == TensorType::Q4_1) {
        return {half_bits(static_cast<uint16_t>(um & 0xFFFFu)), half_bits(static_cast<uint16_t>(um >> 16)), 0, 0};
    } else if constexpr (T == TensorType::Q4_K || T == TensorType::Q5_K) {
        return {fmul(half_bits(static_cast<uint16_t>(sm & 0xFFFFu)), static_cast<float>(um & 0xFFu)),
                fmul(half_bits(static_cast<uint16_t>(sm >> 16)), static_cast<float>(um >> 8)), 0, 0};
    } else {
        static_assert(T == TensorType::Q6_K, "q8 family: Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K");
        return {half_bits(static_cast<uint16_t>(sm)), 0.0f, static_cast<int8_t>(um & 0xFFu),
                static_cast<int8_t>(um >> 8)};
    }
}

template <TensorType T>
LOOM_Q8_HD inline UnitXFactors unit_x_factors(XMeta x) {
    const int offset = T == TensorType::Q4_0 ? 8 : T == TensorType::Q5_0 ? 16 : 0;
    return {x.d, static_cast<float>(x.sa + x.sb), x.sa, x.sb, offset * (x.sa + x.sb)};
}

// The term of one unit from its exact integer dot product `dot` (Σ q·xq over the raw quants; Q6_K:
// sa·Σ_lo + sb·Σ_hi with its two 16-element int8 scales) and the two units' factors.
template <TensorType T>
LOOM_Q8_HD inline float unit_term(int dot, const UnitRowFactors& r, const UnitXFactors& x) {
    if constexpr (T == TensorType::Q4_0 || T == TensorType::Q5_0) {
        return fmul(fmul(r.d, x.d), static_cast<float>(dot - x.off));
    } else if constexpr (T == TensorType::Q8_0) {
        return fmul(fmul(r.d, x.d), static_cast<float>(dot));
    } else if constexpr (T == TensorType::Q4_1) {
        return fmul(x.d, fadd(fmul(r.d, static_cast<float>(dot)), fmul(r.m, x.s)));
    } else if constexpr (T == TensorType::Q4_K || T == TensorType::Q5_K) {
        return fmul(x.d, fsub(fmul(r.d, static_cast<float>(dot)), fmul(r.m, x.s)));
    } else {
        const int i = dot - 32 * (r.sa * x.sa + r.sb * x.sb);
        return fmul(fmul(r.d, x.d), static_cast<float>(i));
    }
}

// The same from the words: um, the unit's scale word (fp16 d; Q4_1: d | m << 16; Q4_K/Q5_K: sc | m << 8;
// Q6_K: the two int8 scales), sm, its super-block's word (Q4_K/Q5_K: d | dmin << 16; Q6_K: d).
template <TensorType T>
LOOM_Q8_HD inline float unit_term(int dot, uint32_t um, uint32_t sm, XMeta x) {
    return unit_term<T>(dot, unit_row_factors<T>(um, sm), unit_x_factors<T>(x));
}

// The slots' final sum; equals a warp butterfly (lane s adds lane s ^ off, off = 16 .. 1) bit for bit.
LOOM_Q8_HD inline float tree32(float (&v)[kSlots]) {
    for (int off = kSlots / 2; off > 0; off /= 2)
        for (int s = 0; s < off; ++s) v[s] = fadd(v[s], v[s + off]);
    return v[0];
}

// 1 / sqrt(Σ S / n_in + eps) from the square-sum partials S (kernels/matvec.h) of one vector, in a fixed
// order: partial i goes to slot i mod 32 (a slot adds its partials in increasing i), then tree32. Every
// caller (each block of the normed quantization, the CPU reference) gets the same bits.
LOOM_Q8_HD inline float norm_scale_from_slots(float (&slots)[kSlots], int n_in, float eps) {
    const float sum = tree32(slots), n = static_cast<float>(n_in);
#ifdef __CUDA_ARCH__
    return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(sum, n), eps)));
#else
    return 1.0f / std::sqrt(sum / n + eps);
#endif
}

}  // namespace loom::kernels::q8
