// CPU dequantization of GGML tensor data (plain floats and quantized blocks) to f32.
#include <cstring>
#include <stdexcept>
#include <string>

#include "gguf/errors.h"
#include "gguf/half.h"
#include "gguf/quant_blocks.h"
#include "gguf/quantize.h"

namespace loom::gguf {
namespace {

// Blocks in a file need not be aligned for their uint16_t fields: copy each one out.
template <typename Block>
Block load_block(const uint8_t* src, uint64_t index) {
    Block b;
    std::memcpy(&b, src + index * sizeof(Block), sizeof(Block));
    return b;
}

uint32_t load_le32(const uint8_t* p) {
    return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

void dequant_f16(const uint8_t* src, float* dst, uint64_t n) {
    for (uint64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = half_to_float(h);
    }
}

void dequant_bf16(const uint8_t* src, float* dst, uint64_t n) {
    for (uint64_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, src + 2 * i, 2);
        dst[i] = bf16_to_float(b);
    }
}

void dequant_q4_0(const uint8_t* src, float* dst, uint64_t nb) {
    for (uint64_t i = 0; i < nb; ++i, dst += kQK) {
        const auto b = load_block<BlockQ4_0>(src, i);
        const float d = half_to_float(b.d);
        for (int j = 0; j < 16; ++j) {
            dst[j] = static_cast<float>((b.qs[j] & 0xF) - 8) * d;
            dst[j + 16] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
        }
    }
}

void dequant_q4_1(const uint8_t* src, float* dst, uint64_t nb) {
    for (uint64_t i = 0; i < nb; ++i, dst += kQK) {
        const auto b = load_block<BlockQ4_1>(src, i);
        const float d = half_to_float(b.d), m = half_to_float(b.m);
        for (int j = 0; j < 16; ++j) {
            dst[j] = static_cast<float>(b.qs[j] & 0xF) * d + m;
            dst[j + 16] = static_cast<float>(b.qs[j] >> 4) * d + m;
        }
    }
}

void dequant_q5_0(const uint8_t* src, float* dst, uint64_t nb) {
    for (uint64_t i = 0; i < nb; ++i, dst += kQK) {
        const auto b = load_block<BlockQ5_0>(src, i);
        const float d = half_to_float(b.d);
        const uint32_t qh = load_le32(b.qh);
        for (int j = 0; j < 16; ++j) {
            const int lo = (b.qs[j] & 0xF) | ((qh >> j) & 1) << 4;
            const int hi = (b.qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4;
            dst[j] = static_cast<float>(lo - 16) * d;
            dst[j + 16] = static_cast<float>(hi - 16) * d;
        }
    }
}

void dequant_q5_1(const uint8_t* src, float* dst, uint64_t nb) {
    for (uint64_t i = 0; i < nb; ++i, dst += kQK) {
        const auto b = load_block<BlockQ5_1>(src, i);
        const float d = half_to_float(b.d), m = half_to_float(b.m);
        const uint32_t qh = load_le32(b.qh);
        for (int j = 0; j < 16; ++j) {
            const int lo = (b.qs[j] & 0xF) | ((qh >> j) & 1) << 4;
            const int hi = (b.qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4;
            dst[j] = static_cast<float>(lo) * d + m;
            dst[j + 16] = static_cast<float>(hi) * d + m;
        }
    }
}

void dequant_q8_0(const uint8_t* src, float* dst, uint64_t nb) {
    for (uint64_t i = 0; i < nb; ++i, dst += kQK) {
        const auto b = load_block<BlockQ8_0>(src, i);
        const float d = half_to_float(b.d);
        for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(b.qs[j]) * d;
    }
}

void dequant_q2_k(const uint8_t* src, float* dst, uint64_t nb) {
    for (uint64_t i = 0; i < nb; ++i) {
        const auto b = load_block<BlockQ2_K>(src, i);
        const float d = half_to_float(b.d), dmin = half_to_float(b.dmin);
        for (int h = 0; h < 2; ++h) {
            const uint8_t* q = b.qs + 32 * h;
            for (int s = 0; s < 4; ++s) {
                // Group A reads q[0..15], group B q[16..31]; both take bits 2s..2s+1.
                for (int g = 0; g < 2; ++g) {
                    const uint8_t sc = b.scales[8 * h + 2 * s + g];
                    const float scale = d * static_cast<float>(sc & 0xF);
                    const float min = dmin * static_cast<float>(sc >> 4);
                    for (int l = 0; l < 16; ++l)
                        *dst++ = scale * static_cast<float>((q[16 * g + l] >> (2 * s)) & 3) - min;
                }
            }
        }
    }
}

// Scale g of a Q3_K block, unbiased to -32..31 (layout in quant_blocks.h).
int q3_k_scale(const uint8_t* scales, int g) {
    const int low = g < 8 ? scales[g] & 0xF : scales[g - 8] >> 4;
    const int high = (scales[8 + g % 4] >> (2 * (g / 4))) & 3;
    return (low | high << 4) - 32;
}

void dequant_q3_k(const uint8_t* src, float* dst, uint64_t nb) {
    for (uint64_t i = 0; i < nb; ++i) {
        const auto b = load_block<BlockQ3_K>(src, i);
        const float d = half_to_float(b.d);
        for (int h = 0; h < 2; ++h) {
            const uint8_t* q = b.qs + 32 * h;
            for (int s = 0; s < 4; ++s) {
                const uint8_t mask = static_cast<uint8_t>(1u << (4 * h + s));
                for (int g = 0; g < 2; ++g) {
                    const float scale = d * static_cast<float>(q3_k_scale(b.scales, 8 * h + 2 * s + g));
                    for (int l = 0; l < 16; ++l) {
                        const int low2 = (q[16 * g + l] >> (2 * s)) & 3;
                        const int value = low2 - ((b.hmask[16 * g + l] & mask) ? 0 : 4);
                        *dst++ = scale * static_cast<float>(value);
                    }
                }
            }
        }
    }
}

// 6-bit scale and min of sub-block j (0..7) in the 12 packed bytes shared by Q4_K and Q5_K.
void k4_scale_min(const uint8_t* scales, int j, int& sc, int& m) {
    if (j < 4) {
        sc = scales[j] & 63;
        m = scales[j + 4] & 63;
    } else {
        sc = (scales[j + 4] & 0xF) | (scales[j - 4] >> 6) << 4;
        m = (scales[j + 4] >> 4) | (scales[j] >> 6) << 4;
    }
}

void dequant_q4_k(const uint8_t* src, float* dst, uint64_t nb) {
    for (uint64_t i = 0; i < nb; ++i) {
        const auto b = load_block<BlockQ4_K>(src, i);
        const float d = half_to_float(b.d), dmin = half_to_float(b.dmin);
        for (int j = 0; j < 8; ++j) {
            int sc, m;
            k4_scale_min(b.scales, j, sc, m);
            const float scale = d * static_cast<float>(sc), min = dmin * static_cast<float>(m);
            const uint8_t* q = b.qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);  // even sub-blocks: low nibbles, odd: high
            for (int l = 0; l < 32; ++l) *dst++ = scale * static_cast<float>((q[l] >> shift) & 0xF) - min;
        }
    }
}

void dequant_q5_k(const uint8_t* src, float* dst, uint64_t nb) {
    for (uint64_t i = 0; i < nb; ++i) {
        const auto b = load_block<BlockQ5_K>(src, i);
        const float d = half_to_float(b.d), dmin = half_to_float(b.dmin);
        for (int j = 0; j < 8; ++j) {
            int sc, m;
            k4_scale_min(b.scales, j, sc, m);
            const float scale = d * static_cast<float>(sc), min = dmin * static_cast<float>(m);
            const uint8_t* q = b.qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            for (int l = 0; l < 32; ++l) {
                const int value = ((q[l] >> shift) & 0xF) | ((b.qh[l] >> j) & 1) << 4;
                *dst++ = scale * static_cast<float>(value) - min;
            }
        }
    }
}

void dequant_q6_k(const uint8_t* src, float* dst, uint64_t nb) {
    for (uint64_t i = 0; i < nb; ++i, dst += kQK_K) {
        const auto b = load_block<BlockQ6_K>(src, i);
        const float d = half_to_float(b.d);
        for (int h = 0; h < 2; ++h) {
            const uint8_t* ql = b.ql + 64 * h;
            const uint8_t* qh = b.qh + 32 * h;
            const int8_t* sc = b.scales + 8 * h;
            float* out = dst + 128 * h;
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32;
                const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                out[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
                out[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
                out[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
                out[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
            }
        }
    }
}

}  // namespace

void dequantize(TensorType type, const void* src, float* dst, uint64_t n, const std::string& tensor) {
    const auto& info = tensor_type_info(type);
    if (!info.dequantizable) throw UnsupportedTypeError(type, tensor);
    if (n % info.block_elems != 0)
        throw std::invalid_argument("dequantize: " + std::to_string(n) + " elements is not a multiple of the " +
                                    std::string(info.name) + " block size " + std::to_string(info.block_elems) +
                                    (tensor.empty() ? std::string() : " in " + tensor));
    const auto* bytes = static_cast<const uint8_t*>(src);
    const uint64_t nb = n / info.block_elems;
    switch (type) {
        case TensorType::F32:
            if (n) std::memcpy(dst, bytes, n * sizeof(float));
            return;
        case TensorType::F16: dequant_f16(bytes, dst, n); return;
        case TensorType::BF16: dequant_bf16(bytes, dst, n); return;
        case TensorType::Q4_0: dequant_q4_0(bytes, dst, nb); return;
        case TensorType::Q4_1: dequant_q4_1(bytes, dst, nb); return;
        case TensorType::Q5_0: dequant_q5_0(bytes, dst, nb); return;
        case TensorType::Q5_1: dequant_q5_1(bytes, dst, nb); return;
        case TensorType::Q8_0: dequant_q8_0(bytes, dst, nb); return;
        case TensorType::Q2_K: dequant_q2_k(bytes, dst, nb); return;
        case TensorType::Q3_K: dequant_q3_k(bytes, dst, nb); return;
        case TensorType::Q4_K: dequant_q4_k(bytes, dst, nb); return;
        case TensorType::Q5_K: dequant_q5_k(bytes, dst, nb); return;
        case TensorType::Q6_K: dequant_q6_k(bytes, dst, nb); return;
        default: throw UnsupportedTypeError(type, tensor);
    }
}

}  // namespace loom::gguf
