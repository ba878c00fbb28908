// CPU quantizers from f32 to GGML block formats: simple, deterministic, one pass per block.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "gguf/errors.h"
#include "gguf/half.h"
#include "gguf/quant_blocks.h"
#include "gguf/quantize.h"

// Every scale is stored rounded away from the range it must cover (fp16 up, 6/8-bit sub-block
// scales up), so the quant levels always reach the block's extremes and an element's error stays
// within half a step, apart from the one level the signed types (Q4_0, Q5_0, Q6_K) lack on the
// side opposite their largest element.
namespace loom::gguf {
namespace {

constexpr uint16_t kHalfMaxBits = 0x7bff;  // 65504, the largest finite fp16

// Neighbouring fp16 values toward +inf / -inf (finite inputs).
uint16_t half_next_up(uint16_t h) {
    if (h == 0x8000) return 0x0001;
    return static_cast<uint16_t>((h & 0x8000) ? h - 1 : h + 1);
}

uint16_t half_next_down(uint16_t h) {
    if (h == 0x0000) return 0x8001;
    return static_cast<uint16_t>((h & 0x8000) ? h + 1 : h - 1);
}

// The smallest fp16 >= v, and the largest fp16 <= v (both saturate at +-65504).
uint16_t half_at_least(float v) {
    if (v > 65504.0f) return kHalfMaxBits;
    uint16_t h = float_to_half(v);
    if (half_to_float(h) < v) h = half_next_up(h);
    return h;
}

uint16_t half_at_most(float v) {
    if (v < -65504.0f) return kHalfMaxBits | 0x8000;
    uint16_t h = float_to_half(v);
    if (half_to_float(h) > v) h = half_next_down(h);
    return h;
}

int nearest_clamped(float v, int lo, int hi) {
    return static_cast<int>(std::clamp(std::lround(v), static_cast<long>(lo), static_cast<long>(hi)));
}

int ceil_clamped(float v, int lo, int hi) {
    return static_cast<int>(std::clamp(std::ceil(v), static_cast<float>(lo), static_cast<float>(hi)));
}

template <typename Block>
void store_block(uint8_t* dst, uint64_t index, const Block& b) {
    std::memcpy(dst + index * sizeof(Block), &b, sizeof(Block));
}

// Signed block of 32 with quants 0..kLevels-1 meaning q - kLevels/2 (Q4_0: 16, Q5_0: 32).
// d = extreme / -(kLevels/2): the largest-magnitude element lands on the lowest level exactly.
template <int kLevels>
uint16_t quant_signed_block(const float* x, int* q) {
    float amax = 0, extreme = 0;
    for (int j = 0; j < kQK; ++j)
        if (std::fabs(x[j]) > amax) {
            amax = std::fabs(x[j]);
            extreme = x[j];
        }
    const uint16_t magnitude = half_at_least(amax / (kLevels / 2));
    const uint16_t d_bits = extreme > 0 ? static_cast<uint16_t>(magnitude | 0x8000) : magnitude;
    const float d = half_to_float(d_bits);
    const float id = d != 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < kQK; ++j) q[j] = nearest_clamped(x[j] * id, -kLevels / 2, kLevels / 2 - 1) + kLevels / 2;
    return d_bits;
}

// Block of 32 with quants 0..kMaxQ meaning q * d + m (Q4_1: 15, Q5_1: 31); m = block minimum.
template <int kMaxQ>
void quant_offset_block(const float* x, int* q, uint16_t& d_bits, uint16_t& m_bits) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < kQK; ++j) {
        lo = std::min(lo, x[j]);
        hi = std::max(hi, x[j]);
    }
    m_bits = half_at_most(lo);
    const float m = half_to_float(m_bits);
    d_bits = half_at_least((hi - m) / kMaxQ);
    const float d = half_to_float(d_bits);
    const float id = d > 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < kQK; ++j) q[j] = nearest_clamped((x[j] - m) * id, 0, kMaxQ);
}

// Low nibbles hold elements 0..15, high nibbles 16..31 (Q4_0/Q4_1/Q5_0/Q5_1).
void pack_nibbles(const int* q, uint8_t* qs) {
    for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
}

// Bit 4 of each quant into the little-endian uint32 qh.
void pack_fifth_bits(const int* q, uint8_t* qh) {
    uint32_t bits = 0;
    for (int j = 0; j < kQK; ++j) bits |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    for (int k = 0; k < 4; ++k) qh[k] = static_cast<uint8_t>(bits >> (8 * k));
}

void quant_q4_0(const float* x, uint8_t* dst, uint64_t nb) {
    int q[kQK];
    for (uint64_t i = 0; i < nb; ++i, x += kQK) {
        BlockQ4_0 b;
        b.d = quant_signed_block<16>(x, q);
        pack_nibbles(q, b.qs);
        store_block(dst, i, b);
    }
}

void quant_q4_1(const float* x, uint8_t* dst, uint64_t nb) {
    int q[kQK];
    for (uint64_t i = 0; i < nb; ++i, x += kQK) {
        BlockQ4_1 b;
        quant_offset_block<15>(x, q, b.d, b.m);
        pack_nibbles(q, b.qs);
        store_block(dst, i, b);
    }
}

void quant_q5_0(const float* x, uint8_t* dst, uint64_t nb) {
    int q[kQK];
    for (uint64_t i = 0; i < nb; ++i, x += kQK) {
        BlockQ5_0 b;
        b.d = quant_signed_block<32>(x, q);
        pack_nibbles(q, b.qs);
        pack_fifth_bits(q, b.qh);
        store_block(dst, i, b);
    }
}

void quant_q5_1(const float* x, uint8_t* dst, uint64_t nb) {
    int q[kQK];
    for (uint64_t i = 0; i < nb; ++i, x += kQK) {
        BlockQ5_1 b;
        quant_offset_block<31>(x, q, b.d, b.m);
        pack_nibbles(q, b.qs);
        pack_fifth_bits(q, b.qh);
        store_block(dst, i, b);
    }
}

// Symmetric -127..127 (no -128), so d = amax / 127.
void quant_q8_0(const float* x, uint8_t* dst, uint64_t nb) {
    for (uint64_t i = 0; i < nb; ++i, x += kQK) {
        float amax = 0;
        for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
        BlockQ8_0 b;
        b.d = half_at_least(amax / 127);
        const float d = half_to_float(b.d);
        const float id = d > 0 ? 1.0f / d : 0.0f;
        for (int j = 0; j < kQK; ++j) b.qs[j] = static_cast<int8_t>(nearest_clamped(x[j] * id, -127, 127));
        store_block(dst, i, b);
    }
}

// Q4_K/Q5_K super-block: 8 sub-blocks of 32, x = d*sc_j*q - dmin*m_j with q in 0..kMaxQ and
// 6-bit sc_j, m_j. Fills d/dmin bits, the 12 packed scale bytes and q[256].
template <int kMaxQ>
void quant_k_scale_min(const float* x, uint16_t& d_bits, uint16_t& dmin_bits, uint8_t* scales, int* q) {
    // The offset -dmin*m_j is never positive, so each sub-block's range is widened to include 0.
    float lo[8], hi[8];
    float lo_abs_max = 0;
    for (int j = 0; j < 8; ++j) {
        lo[j] = std::min(0.0f, *std::min_element(x + 32 * j, x + 32 * j + 32));
        hi[j] = *std::max_element(x + 32 * j, x + 32 * j + 32);
        lo_abs_max = std::max(lo_abs_max, -lo[j]);
    }
    dmin_bits = half_at_least(lo_abs_max / 63);
    const float dmin = half_to_float(dmin_bits);

    // Mins round up so -dmin*m_j <= lo_j; then each sub-block needs step (hi_j + dmin*m_j) / kMaxQ.
    int sc[8], m[8];
    float need[8];
    float need_max = 0;
    for (int j = 0; j < 8; ++j) {
        m[j] = dmin > 0 ? ceil_clamped(-lo[j] / dmin, 0, 63) : 0;
        need[j] = std::max(0.0f, (hi[j] + dmin * static_cast<float>(m[j])) / kMaxQ);
        need_max = std::max(need_max, need[j]);
    }
    d_bits = half_at_least(need_max / 63);
    const float d = half_to_float(d_bits);

    for (int j = 0; j < 8; ++j) {
        sc[j] = d > 0 ? ceil_clamped(need[j] / d, 0, 63) : 0;
        const float step = d * static_cast<float>(sc[j]);
        const float offset = dmin * static_cast<float>(m[j]);
        const float inv_step = step > 0 ? 1.0f / step : 0.0f;
        for (int l = 0; l < 32; ++l) q[32 * j + l] = nearest_clamped((x[32 * j + l] + offset) * inv_step, 0, kMaxQ);
    }

    // Sub-blocks 0..3 keep 6 bits in scales[0..7]; 4..7 split into a nibble pair in scales[8..11]
    // and their top 2 bits in the spare bits 6-7 of scales[0..7].
    for (int j = 0; j < 4; ++j) {
        scales[j] = static_cast<uint8_t>(sc[j] | (sc[j + 4] >> 4) << 6);
        scales[j + 4] = static_cast<uint8_t>(m[j] | (m[j + 4] >> 4) << 6);
        scales[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | (m[j + 4] & 0xF) << 4);
    }
}

// Chunk c of 64 elements: sub-block 2c in the low nibbles of qs[32c..], 2c+1 in the high ones.
void pack_k_nibbles(const int* q, uint8_t* qs) {
    for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l)
            qs[32 * c + l] = static_cast<uint8_t>((q[64 * c + l] & 0xF) | (q[64 * c + 32 + l] & 0xF) << 4);
}

void quant_q4_k(const float* x, uint8_t* dst, uint64_t nb) {
    int q[kQK_K];
    for (uint64_t i = 0; i < nb; ++i, x += kQK_K) {
        BlockQ4_K b;
        quant_k_scale_min<15>(x, b.d, b.dmin, b.scales, q);
        pack_k_nibbles(q, b.qs);
        store_block(dst, i, b);
    }
}

void quant_q5_k(const float* x, uint8_t* dst, uint64_t nb) {
    int q[kQK_K];
    for (uint64_t i = 0; i < nb; ++i, x += kQK_K) {
        BlockQ5_K b;
        quant_k_scale_min<31>(x, b.d, b.dmin, b.scales, q);
        pack_k_nibbles(q, b.qs);
        std::memset(b.qh, 0, sizeof b.qh);
        for (int j = 0; j < 8; ++j)
            for (int l = 0; l < 32; ++l) b.qh[l] |= static_cast<uint8_t>(((q[32 * j + l] >> 4) & 1) << j);
        store_block(dst, i, b);
    }
}

// Q6_K: 16 groups of 16 with signed int8 scales; quants -32..31 (stored +32). Each group's
// largest-magnitude element maps to -32; the int8 scale magnitude rounds up against d.
void quant_q6_k(const float* x, uint8_t* dst, uint64_t nb) {
    int q[kQK_K];
    for (uint64_t i = 0; i < nb; ++i, x += kQK_K) {
        float group_scale[16];  // signed: extreme / -32
        float scale_abs_max = 0;
        for (int g = 0; g < 16; ++g) {
            float amax = 0, extreme = 0;
            for (int l = 0; l < 16; ++l) {
                const float v = x[16 * g + l];
                if (std::fabs(v) > amax) {
                    amax = std::fabs(v);
                    extreme = v;
                }
            }
            group_scale[g] = extreme / -32;
            scale_abs_max = std::max(scale_abs_max, amax / 32);
        }
        BlockQ6_K b;
        b.d = half_at_least(scale_abs_max / 127);
        const float d = half_to_float(b.d);
        for (int g = 0; g < 16; ++g) {
            const int magnitude = d > 0 ? ceil_clamped(std::fabs(group_scale[g]) / d, 0, 127) : 0;
            b.scales[g] = static_cast<int8_t>(group_scale[g] < 0 ? -magnitude : magnitude);
            const float step = d * static_cast<float>(b.scales[g]);
            const float inv_step = step != 0 ? 1.0f / step : 0.0f;
            for (int l = 0; l < 16; ++l) q[16 * g + l] = nearest_clamped(x[16 * g + l] * inv_step, -32, 31) + 32;
        }
        // Half h: for l < 32, elements l, l+32, l+64, l+96 share ql[l], ql[l+32] and qh[l].
        for (int h = 0; h < 2; ++h) {
            const int* qq = q + 128 * h;
            for (int l = 0; l < 32; ++l) {
                b.ql[64 * h + l] = static_cast<uint8_t>((qq[l] & 0xF) | (qq[l + 64] & 0xF) << 4);
                b.ql[64 * h + l + 32] = static_cast<uint8_t>((qq[l + 32] & 0xF) | (qq[l + 96] & 0xF) << 4);
                b.qh[32 * h + l] = static_cast<uint8_t>((qq[l] >> 4) | (qq[l + 32] >> 4) << 2 | (qq[l + 64] >> 4) << 4 |
                                                        (qq[l + 96] >> 4) << 6);
            }
        }
        store_block(dst, i, b);
    }
}

}  // namespace

bool can_quantize(TensorType type) {
    switch (type) {
        case TensorType::F32:
        case TensorType::F16:
        case TensorType::BF16:
        case TensorType::Q4_0:
        case TensorType::Q4_1:
        case TensorType::Q5_0:
        case TensorType::Q5_1:
        case TensorType::Q8_0:
        case TensorType::Q4_K:
        case TensorType::Q5_K:
        case TensorType::Q6_K: return true;
        default: return false;
    }
}

void quantize(TensorType type, const float* src, void* dst, uint64_t n) {
    if (!can_quantize(type)) throw UnsupportedTypeError(type, {});
    const auto& info = tensor_type_info(type);
    if (n % info.block_elems != 0)
        throw std::invalid_argument("quantize: " + std::to_string(n) + " elements is not a multiple of the " +
                                    std::string(info.name) + " block size " + std::to_string(info.block_elems));
    auto* bytes = static_cast<uint8_t*>(dst);
    const uint64_t nb = n / info.block_elems;
    switch (type) {
        case TensorType::F32:
            if (n) std::memcpy(bytes, src, n * sizeof(float));
            return;
        case TensorType::F16:
            for (uint64_t i = 0; i < n; ++i) {
                const uint16_t h = float_to_half(src[i]);
                std::memcpy(bytes + 2 * i, &h, 2);
            }
            return;
        case TensorType::BF16:
            for (uint64_t i = 0; i < n; ++i) {
                const uint16_t b = float_to_bf16(src[i]);
                std::memcpy(bytes + 2 * i, &b, 2);
            }
            return;
        case TensorType::Q4_0: quant_q4_0(src, bytes, nb); return;
        case TensorType::Q4_1: quant_q4_1(src, bytes, nb); return;
        case TensorType::Q5_0: quant_q5_0(src, bytes, nb); return;
        case TensorType::Q5_1: quant_q5_1(src, bytes, nb); return;
        case TensorType::Q8_0: quant_q8_0(src, bytes, nb); return;
        case TensorType::Q4_K: quant_q4_k(src, bytes, nb); return;
        case TensorType::Q5_K: quant_q5_k(src, bytes, nb); return;
        case TensorType::Q6_K: quant_q6_k(src, bytes, nb); return;
        default: throw UnsupportedTypeError(type, {});
    }
}

}  // namespace loom::gguf
