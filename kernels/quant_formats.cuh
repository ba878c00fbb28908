// Device decoders of the GGML block formats (layouts in gguf/quant_blocks.h), shared by the
// matvec and embedding kernels through kernels/format_dispatch.cuh (device code only).
#pragma once

#include <cuda_fp16.h>

#include <cstddef>
#include <cstdint>

#include "gguf/quant_blocks.h"

// Each format splits one block among kLanes threads: thread `sub` (0 .. kLanes-1) decodes
// kValues weights, in groups of 4 that are contiguous in the row, so the matching activations
// load as float4. Group g of thread `sub` starts offset(sub, g) elements into the block.
// Consecutive subs read consecutive bytes of the block, so a warp's loads stay coalesced.
// Values equal the CPU dequantizer's bit for bit: products and sums round separately (__fmul_rn,
// __fsub_rn), as the CPU code does, instead of being contracted into an FMA.
// Plain types (kPlain) treat a group of kElems scalars as a block, which needs rows whose length
// is a multiple of kElems (16-byte aligned rows); scalar(row, i) reads element i of a row of any
// length, for the kernels' fallback paths.
namespace loom::kernels::quant {

__device__ __forceinline__ float half_bits_to_float(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }

// bfloat16 is the top half of a float: widening is exact, as gguf::bf16_to_float.
__device__ __forceinline__ float bf16_bits_to_float(uint16_t bits) { return __uint_as_float(uint32_t{bits} << 16); }

__device__ __forceinline__ uint16_t load_u16(const uint8_t* p) {
    return __ldg(reinterpret_cast<const unsigned short*>(p));
}

// Four bytes at a 2-byte aligned address: blocks with an odd number of halves (18, 22, 34, 210
// bytes) leave their fields only 2-byte aligned.
__device__ __forceinline__ uint32_t load_u32_align2(const uint8_t* p) {
    return uint32_t{load_u16(p)} | uint32_t{load_u16(p + 2)} << 16;
}

__device__ __forceinline__ uint32_t load_u32(const uint8_t* p) {
    return __ldg(reinterpret_cast<const unsigned int*>(p));
}

__device__ __forceinline__ uint4 load_u128(const uint8_t* p) { return __ldg(reinterpret_cast<const uint4*>(p)); }

__device__ __forceinline__ int byte_of(uint32_t word, int i) { return static_cast<int>((word >> (8 * i)) & 0xFFu); }

// F32: a "block" is 4 floats (one 16-byte load).
struct F32x4 {
    static constexpr bool kPlain = true;
    static constexpr int kElems = 4, kBytes = 16, kLanes = 1, kValues = 4, kElemBytes = 4;
    __device__ static int offset(int, int g) { return 4 * g; }
    __device__ static void decode(const uint8_t* block, int, float* v) {
        const float4 f = __ldg(reinterpret_cast<const float4*>(block));
        v[0] = f.x;
        v[1] = f.y;
        v[2] = f.z;
        v[3] = f.w;
    }
    __device__ static float scalar(const uint8_t* row, int64_t i) {
        return __ldg(reinterpret_cast<const float*>(row) + i);
    }
};

// 16-bit floats, 8 per 16-byte "block"; Widen::to_float turns the bits of one value into a float.
template <class Widen>
struct Half16x8 {
    static constexpr bool kPlain = true;
    static constexpr int kElems = 8, kBytes = 16, kLanes = 1, kValues = 8, kElemBytes = 2;
    __device__ static int offset(int, int g) { return 4 * g; }
    __device__ static void decode(const uint8_t* block, int, float* v) {
        const uint4 u = load_u128(block);
        const uint32_t words[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            v[2 * i] = Widen::to_float(static_cast<uint16_t>(words[i] & 0xFFFFu));
            v[2 * i + 1] = Widen::to_float(static_cast<uint16_t>(words[i] >> 16));
        }
    }
    __device__ static float scalar(const uint8_t* row, int64_t i) {
        return Widen::to_float(__ldg(reinterpret_cast<const unsigned short*>(row) + i));
    }
};

struct HalfBits {
    __device__ static float to_float(uint16_t bits) { return half_bits_to_float(bits); }
};
struct BF16Bits {
    __device__ static float to_float(uint16_t bits) { return bf16_bits_to_float(bits); }
};

using F16x8 = Half16x8<HalfBits>;
using BF16x8 = Half16x8<BF16Bits>;

// Thread `sub` takes qs[4 sub .. 4 sub + 3]: elements 4 sub + e (low nibbles), 16 + 4 sub + e (high).
struct Q4_0 {
    using Block = gguf::BlockQ4_0;
    static constexpr bool kPlain = false;
    static constexpr int kElems = gguf::kQK, kBytes = sizeof(Block), kLanes = 4, kValues = 8;
    __device__ static int offset(int sub, int g) { return 16 * g + 4 * sub; }
    __device__ static void decode(const uint8_t* block, int sub, float* v) {
        const float d = half_bits_to_float(load_u16(block + offsetof(Block, d)));
        const uint32_t q = load_u32_align2(block + offsetof(Block, qs) + 4 * sub);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            v[e] = __fmul_rn(static_cast<float>((byte_of(q, e) & 0xF) - 8), d);
            v[4 + e] = __fmul_rn(static_cast<float>((byte_of(q, e) >> 4) - 8), d);
        }
    }
};

struct Q4_1 {
    using Block = gguf::BlockQ4_1;
    static constexpr bool kPlain = false;
    static constexpr int kElems = gguf::kQK, kBytes = sizeof(Block), kLanes = 4, kValues = 8;
    __device__ static int offset(int sub, int g) { return 16 * g + 4 * sub; }
    __device__ static void decode(const uint8_t* block, int sub, float* v) {
        const uint32_t dm = load_u32(block + offsetof(Block, d));  // 20-byte blocks keep 4-byte alignment
        const float d = half_bits_to_float(static_cast<uint16_t>(dm & 0xFFFFu));
        const float m = half_bits_to_float(static_cast<uint16_t>(dm >> 16));
        const uint32_t q = load_u32(block + offsetof(Block, qs) + 4 * sub);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            v[e] = __fadd_rn(__fmul_rn(static_cast<float>(byte_of(q, e) & 0xF), d), m);
            v[4 + e] = __fadd_rn(__fmul_rn(static_cast<float>(byte_of(q, e) >> 4), d), m);
        }
    }
};

struct Q5_0 {
    using Block = gguf::BlockQ5_0;
    static constexpr bool kPlain = false;
    static constexpr int kElems = gguf::kQK, kBytes = sizeof(Block), kLanes = 4, kValues = 8;
    __device__ static int offset(int sub, int g) { return 16 * g + 4 * sub; }
    __device__ static void decode(const uint8_t* block, int sub, float* v) {
        const float d = half_bits_to_float(load_u16(block + offsetof(Block, d)));
        const uint32_t qh = load_u32_align2(block + offsetof(Block, qh));
        const uint32_t q = load_u32_align2(block + offsetof(Block, qs) + 4 * sub);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int i = 4 * sub + e;
            const int lo = (byte_of(q, e) & 0xF) | static_cast<int>((qh >> i) & 1u) << 4;
            const int hi = (byte_of(q, e) >> 4) | static_cast<int>((qh >> (i + 16)) & 1u) << 4;
            v[e] = __fmul_rn(static_cast<float>(lo - 16), d);
            v[4 + e] = __fmul_rn(static_cast<float>(hi - 16), d);
        }
    }
};

// Q5_0's bits plus an offset. The 24-byte blocks keep 8-byte alignment: every field loads as a word.
struct Q5_1 {
    using Block = gguf::BlockQ5_1;
    static constexpr bool kPlain = false;
    static constexpr int kElems = gguf::kQK, kBytes = sizeof(Block), kLanes = 4, kValues = 8;
    __device__ static int offset(int sub, int g) { return 16 * g + 4 * sub; }
    __device__ static void decode(const uint8_t* block, int sub, float* v) {
        static_assert(offsetof(Block, qh) % 4 == 0 && offsetof(Block, qs) % 4 == 0 && sizeof(Block) % 4 == 0);
        const uint32_t dm = load_u32(block + offsetof(Block, d));
        const float d = half_bits_to_float(static_cast<uint16_t>(dm & 0xFFFFu));
        const float m = half_bits_to_float(static_cast<uint16_t>(dm >> 16));
        const uint32_t qh = load_u32(block + offsetof(Block, qh));
        const uint32_t q = load_u32(block + offsetof(Block, qs) + 4 * sub);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int i = 4 * sub + e;
            const int lo = (byte_of(q, e) & 0xF) | static_cast<int>((qh >> i) & 1u) << 4;
            const int hi = (byte_of(q, e) >> 4) | static_cast<int>((qh >> (i + 16)) & 1u) << 4;
            v[e] = __fadd_rn(__fmul_rn(static_cast<float>(lo), d), m);
            v[4 + e] = __fadd_rn(__fmul_rn(static_cast<float>(hi), d), m);
        }
    }
};

// Thread `sub` takes qs[8 sub .. 8 sub + 7].
struct Q8_0 {
    using Block = gguf::BlockQ8_0;
    static constexpr bool kPlain = false;
    static constexpr int kElems = gguf::kQK, kBytes = sizeof(Block), kLanes = 4, kValues = 8;
    __device__ static int offset(int sub, int g) { return 8 * sub + 4 * g; }
    __device__ static void decode(const uint8_t* block, int sub, float* v) {
        const float d = half_bits_to_float(load_u16(block + offsetof(Block, d)));
        const uint8_t* qs = block + offsetof(Block, qs) + 8 * sub;
        const uint32_t words[2] = {load_u32_align2(qs), load_u32_align2(qs + 4)};
#pragma unroll
        for (int e = 0; e < 8; ++e)
            v[e] = __fmul_rn(static_cast<float>(static_cast<int8_t>(byte_of(words[e / 4], e % 4))), d);
    }
};

// Thread p (0..7) takes the 16 bytes qs[16 p ..]: chunk c = p / 2, bytes l = 16 (p % 2) .. l + 15,
// i.e. elements 64 c + l + e of sub-block 2c (low nibbles) and 64 c + 32 + l + e of 2c+1 (high).
// The 144-byte blocks keep 16-byte alignment, so qs arrives in one 16-byte load.
struct Q4_K {
    using Block = gguf::BlockQ4_K;
    static constexpr bool kPlain = false;
    static constexpr int kElems = gguf::kQK_K, kBytes = sizeof(Block), kLanes = 8, kValues = 32;
    __device__ static int offset(int p, int g) {
        return 64 * (p / 2) + 16 * (p % 2) + (g < 4 ? 4 * g : 32 + 4 * (g - 4));
    }

    // Sub-block j's 6-bit scale and min from the 12 packed bytes s0|s1|s2 (layout in quant_blocks.h).
    __device__ static void scale_min(uint32_t s0, uint32_t s1, uint32_t s2, int j, int& sc, int& m) {
        if (j < 4) {
            sc = byte_of(s0, j) & 63;
            m = byte_of(s1, j) & 63;
        } else {
            const int i = j - 4;
            sc = (byte_of(s2, i) & 0xF) | (byte_of(s0, i) >> 6) << 4;
            m = (byte_of(s2, i) >> 4) | (byte_of(s1, i) >> 6) << 4;
        }
    }

    __device__ static void decode(const uint8_t* block, int p, float* v) {
        static_assert(offsetof(Block, qs) % 16 == 0 && sizeof(Block) % 16 == 0);
        const uint32_t dm = load_u32(block + offsetof(Block, d));
        const float d = half_bits_to_float(static_cast<uint16_t>(dm & 0xFFFFu));
        const float dmin = half_bits_to_float(static_cast<uint16_t>(dm >> 16));
        const uint8_t* scales = block + offsetof(Block, scales);
        const uint32_t s0 = load_u32(scales), s1 = load_u32(scales + 4), s2 = load_u32(scales + 8);
        const int c = p / 2;
        int sc_lo, m_lo, sc_hi, m_hi;
        scale_min(s0, s1, s2, 2 * c, sc_lo, m_lo);
        scale_min(s0, s1, s2, 2 * c + 1, sc_hi, m_hi);
        const float scale_lo = __fmul_rn(d, static_cast<float>(sc_lo)),
                    min_lo = __fmul_rn(dmin, static_cast<float>(m_lo));
        const float scale_hi = __fmul_rn(d, static_cast<float>(sc_hi)),
                    min_hi = __fmul_rn(dmin, static_cast<float>(m_hi));
        const uint4 u = load_u128(block + offsetof(Block, qs) + 16 * p);
        const uint32_t words[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int e = 0; e < 16; ++e) {
            const int q = byte_of(words[e / 4], e % 4);
            v[e] = __fsub_rn(__fmul_rn(scale_lo, static_cast<float>(q & 0xF)), min_lo);
            v[16 + e] = __fsub_rn(__fmul_rn(scale_hi, static_cast<float>(q >> 4)), min_hi);
        }
    }
};

// Q4_K's split plus the fifth bits: thread p's elements l = 16 (p % 2) + e of chunk c = p / 2 take
// bit 2c (low nibbles) and 2c+1 (high nibbles) of qh[l], which arrive in one 16-byte load.
struct Q5_K {
    using Block = gguf::BlockQ5_K;
    static constexpr bool kPlain = false;
    static constexpr int kElems = gguf::kQK_K, kBytes = sizeof(Block), kLanes = 8, kValues = 32;
    __device__ static int offset(int p, int g) { return Q4_K::offset(p, g); }
    __device__ static void decode(const uint8_t* block, int p, float* v) {
        static_assert(offsetof(Block, qs) % 16 == 0 && offsetof(Block, qh) % 16 == 0 && sizeof(Block) % 16 == 0);
        static_assert(offsetof(Block, scales) == offsetof(gguf::BlockQ4_K, scales));
        const uint32_t dm = load_u32(block + offsetof(Block, d));
        const float d = half_bits_to_float(static_cast<uint16_t>(dm & 0xFFFFu));
        const float dmin = half_bits_to_float(static_cast<uint16_t>(dm >> 16));
        const uint8_t* scales = block + offsetof(Block, scales);
        const uint32_t s0 = load_u32(scales), s1 = load_u32(scales + 4), s2 = load_u32(scales + 8);
        const int c = p / 2;
        int sc_lo, m_lo, sc_hi, m_hi;
        Q4_K::scale_min(s0, s1, s2, 2 * c, sc_lo, m_lo);
        Q4_K::scale_min(s0, s1, s2, 2 * c + 1, sc_hi, m_hi);
        const float scale_lo = __fmul_rn(d, static_cast<float>(sc_lo)),
                    min_lo = __fmul_rn(dmin, static_cast<float>(m_lo));
        const float scale_hi = __fmul_rn(d, static_cast<float>(sc_hi)),
                    min_hi = __fmul_rn(dmin, static_cast<float>(m_hi));
        const uint4 u = load_u128(block + offsetof(Block, qs) + 16 * p);
        const uint4 h = load_u128(block + offsetof(Block, qh) + 16 * (p % 2));
        const uint32_t words[4] = {u.x, u.y, u.z, u.w};
        const uint32_t high[4] = {h.x, h.y, h.z, h.w};
#pragma unroll
        for (int e = 0; e < 16; ++e) {
            const int q = byte_of(words[e / 4], e % 4);
            const int top = byte_of(high[e / 4], e % 4) >> (2 * c);
            v[e] = __fsub_rn(__fmul_rn(scale_lo, static_cast<float>((q & 0xF) | (top & 1) << 4)), min_lo);
            v[16 + e] = __fsub_rn(__fmul_rn(scale_hi, static_cast<float>((q >> 4) | (top & 2) << 3)), min_hi);
        }
    }
};

// Thread p (0..7) takes half h = p / 4 and positions l0 = 8 (p % 4) .. l0 + 7 of it: bytes
// ql[64h + l0 ..], ql[64h + 32 + l0 ..], qh[32h + l0 ..] give elements 128h + 32k + l0 + e, k = 0..3.
struct Q6_K {
    using Block = gguf::BlockQ6_K;
    static constexpr bool kPlain = false;
    static constexpr int kElems = gguf::kQK_K, kBytes = sizeof(Block), kLanes = 8, kValues = 32;
    __device__ static int offset(int p, int g) { return 128 * (p / 4) + 32 * (g / 2) + 8 * (p % 4) + 4 * (g % 2); }
    __device__ static void decode(const uint8_t* block, int p, float* v) {
        const int h = p / 4, l0 = 8 * (p % 4);
        const float d = half_bits_to_float(load_u16(block + offsetof(Block, d)));
        const uint8_t* ql = block + offsetof(Block, ql) + 64 * h + l0;
        const uint8_t* qh = block + offsetof(Block, qh) + 32 * h + l0;
        const uint32_t ql_a[2] = {load_u32_align2(ql), load_u32_align2(ql + 4)};
        const uint32_t ql_b[2] = {load_u32_align2(ql + 32), load_u32_align2(ql + 36)};
        const uint32_t high[2] = {load_u32_align2(qh), load_u32_align2(qh + 4)};
        const auto* sc = reinterpret_cast<const signed char*>(block + offsetof(Block, scales)) + 8 * h + l0 / 16;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const float scale = __fmul_rn(d, static_cast<float>(__ldg(sc + 2 * k)));
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                const uint32_t low = (k % 2) ? ql_b[e / 4] : ql_a[e / 4];  // k = 0, 2: ql[l]; k = 1, 3: ql[l + 32]
                const int nibble = (byte_of(low, e % 4) >> (4 * (k / 2))) & 0xF;
                const int top = (byte_of(high[e / 4], e % 4) >> (2 * k)) & 3;
                v[8 * k + e] = __fmul_rn(scale, static_cast<float>((nibble | top << 4) - 32));
            }
        }
    }
};

}  // namespace loom::kernels::quant
