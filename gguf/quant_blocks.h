// Byte layouts of the GGML quantized blocks loom can dequantize (shared by CPU and CUDA code).
#pragma once

#include <cstdint>

// Plain structs with no padding: every uint16_t field sits at an even offset, so the natural layout
// already matches the file bytes (the static_asserts check it). Blocks inside a file may be
// unaligned: CPU code copies them out with memcpy before reading multi-byte fields.
// fp16 fields hold IEEE binary16 bits. All multi-byte values are little-endian.
namespace loom::gguf {

inline constexpr int kQK = 32;     // elements per legacy block (Q4_0 .. Q8_0)
inline constexpr int kQK_K = 256;  // elements per K-quant super-block

// Q4_0: 32 elements. x[j] = ((qs[j] & 0xF) - 8) * d, x[j+16] = ((qs[j] >> 4) - 8) * d, j < 16.
struct BlockQ4_0 {
    uint16_t d;      // fp16 scale
    uint8_t qs[16];  // 4-bit quants, low nibbles = elements 0..15, high nibbles = 16..31
};

// Q4_1: 32 elements. x[j] = (qs[j] & 0xF) * d + m, x[j+16] = (qs[j] >> 4) * d + m, j < 16.
struct BlockQ4_1 {
    uint16_t d;  // fp16 scale
    uint16_t m;  // fp16 offset (the block minimum)
    uint8_t qs[16];
};

// Q5_0: 32 elements. Bit i of the little-endian uint32 qh is bit 4 of element i's quant.
// x[i] = ((nibble_i | high_i << 4) - 16) * d, nibbles placed as in Q4_0.
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[16];
};

// Q5_1: 32 elements, bits as Q5_0. x[i] = (nibble_i | high_i << 4) * d + m.
struct BlockQ5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[16];
};

// Q8_0: 32 elements. x[i] = qs[i] * d.
struct BlockQ8_0 {
    uint16_t d;
    int8_t qs[32];
};

// Q2_K: 256 elements in 16 groups of 16. scales[g] = scale (low nibble) | min (high nibble).
// Half h (128 elements, bytes qs[32h .. 32h+31]), shift index s = 0..3, group A/B (g = 8h+2s, +1):
// A takes bits 2s..2s+1 of qs[32h + l], B of qs[32h + 16 + l], l < 16.
// x = d * (scales[g] & 0xF) * q - dmin * (scales[g] >> 4).
struct BlockQ2_K {
    uint8_t scales[16];
    uint8_t qs[64];
    uint16_t d;     // fp16 super-block scale of the 4-bit scales
    uint16_t dmin;  // fp16 super-block scale of the 4-bit mins
};

// Q3_K: 256 elements in 16 groups of 16; 3-bit quants = 2 low bits in qs (laid out as Q2_K) plus
// a high bit in hmask (bit 4h+s of hmask[l] / hmask[16 + l]). 16 signed 6-bit scales, stored +32,
// packed in 12 bytes: low nibbles in scales[0..7] (groups 0..7 low, 8..15 high nibble), the top
// 2 bits of group g in bits 2*(g/4) of scales[8 + g%4].
// x = d * (scale_g - 32) * (q_low2 - (high bit set ? 0 : 4)).
struct BlockQ3_K {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    uint16_t d;
};

// Q4_K: 256 elements in 8 sub-blocks of 32 with 6-bit scale sc_j and min m_j packed in 12 bytes:
// j < 4: sc = scales[j] & 63, m = scales[j+4] & 63; j >= 4: low 4 bits in scales[j+4] (sc low
// nibble, m high nibble), top 2 bits in scales[j-4] >> 6 (sc) and scales[j] >> 6 (m).
// Chunk c (64 elements, qs[32c .. 32c+31]): sub-block 2c = low nibbles, 2c+1 = high nibbles.
// x = d * sc_j * q - dmin * m_j.
struct BlockQ4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[128];
};

// Q5_K: as Q4_K plus a fifth bit: element l of sub-block j gets +16 when bit j of qh[l] is set.
struct BlockQ5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
};

// Q6_K: 256 elements in 16 groups of 16 with int8 scales; 6-bit quants, stored +32.
// Half h (128 elements): low 4 bits from ql[64h ..], top 2 bits from qh[32h ..]; for l < 32, the
// four elements l, l+32, l+64, l+96 take ql[l] low, ql[l+32] low, ql[l] high, ql[l+32] high
// nibbles and qh[l] bits 0-1, 2-3, 4-5, 6-7. x = d * scales[8h + l/16 + 2k] * (q - 32), k = 0..3.
struct BlockQ6_K {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
};

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);

}  // namespace loom::gguf
