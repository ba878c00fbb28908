// matvec_dev: candidate decode matvec kernels for issue 16, each validated against a CPU reference and
// timed beside the current kernels::matvec in one run (reference, validation and timing in one file).
//
// Usage: matvec_dev [--cpu-check] [--types q4_0,q8_0,q4_k,q6_k] [--nvec 1,2,4,8,16,32] [--runs 21]
//                   [--csv FILE]
//   --cpu-check  validates the CPU side only (repack round trip, x quantization, the canonical int8
//                order against the f64 reference, slot tree = warp butterfly); needs no GPU.
//
// Shapes: the Llama-3-8B decode products 4096x4096 (q/o), 4096x1024 (k/v), 4096x28672 (gate+up),
// 14336x4096 (down). Weights: 256 distinct random rows quantized with gguf::quantize, repeated to n_out
// rows; launches cycle through enough copies of the matrix (>= 4x L2) that L2 never serves them.
//
// Repacked layout (made once at load by repack(), timed): the row's 32-element "units" (a Q4_0/Q8_0
// block, a K-quant sub-block) in groups of four ("quads"); lane t of a quad of lanes reads one 16-byte
// piece of a quad holding word t of each of its four units (8-bit: words t and t+4), exactly the
// fragment mma.sync m16n8k32 wants. Quants, per-unit scales and per-256 super scales are separate
// streams, so every quant load is a coalesced 16-byte load. Same bytes per row as the GGUF blocks.
//
// Reduction orders (which results can be equal bit for bit):
// - base (kernels::matvec): its own lane-strided order; batch invariant; equals none of the others.
// - f32 family (repacked weights, f32 x, dequantize + FMA): per unit, each of four lanes sums its 8
//   products in element order, the four partials meet by a fixed 2-step exchange (quad_reduce), the
//   unit's term goes to slot (unit mod 32); a slot adds its units in increasing order; the 32 slots
//   end in the fixed tree tree32() (= a warp butterfly). Every f32 variant (rows per warp, warps,
//   unroll, vectors per block) gives the same bits; x is not quantized (f32 accuracy).
// - q8 family (x quantized per unit to int8 + f32 scale by quantize_x): per unit an exact integer dot
//   product (so its order is free: dp4a or int8 MMA), the unit's f32 term by unit_term(), then the
//   same slots and tree32(). dp4a and mma variants and the CPU emulation emulate_q8() give the same
//   bits, so a dispatcher may pick dp4a for small batches and mma for large ones and stay batch
//   invariant. x quantization costs accuracy (the err column) and a small extra kernel.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "gguf/quantize.h"
#include "gguf/tensor_type.h"
#include "kernel_cases/inputs.h"
#include "kernels/cuda_check.h"
#include "kernels/device_info.h"
#include "kernels/matvec.h"

namespace {

using loom::gguf::TensorType;

enum class QType { q4_0, q8_0, q4_k, q6_k };

constexpr int kUnit = 32;          // elements per unit: one int8 dot product / one MMA K slice
constexpr int kSlots = 32;         // f32 partial sums per output before tree32
constexpr int kUnitsPerSuper = 8;  // K-quant super-block = 8 units
constexpr int kMaxVec = 32;

struct LayoutInfo {
    int qs;     // quant bytes per unit in the qs stream
    int qh;     // Q6_K's top-2-bit bytes per unit
    int um;     // scale bytes per unit in the um stream
    int super;  // bytes per super-block in the sm stream (Q4_K: d, dmin and the 12 packed scale bytes)
};

__host__ __device__ constexpr LayoutInfo layout_of(QType t) {
    return t == QType::q8_0   ? LayoutInfo{32, 0, 2, 0}
           : t == QType::q4_k ? LayoutInfo{16, 0, 0, 16}
           : t == QType::q6_k ? LayoutInfo{16, 8, 2, 2}
                              : LayoutInfo{16, 0, 2, 0};
}

// Q4_K sub-block j's 6-bit scale and min, as the word sc | m << 8, from the 12 packed scale bytes
// (little-endian words s0, s1, s2; layout in gguf/quant_blocks.h).
__host__ __device__ constexpr uint32_t k4_um(uint32_t s0, uint32_t s1, uint32_t s2, int j) {
    const int i = j % 4;
    const uint32_t b0 = (s0 >> (8 * i)) & 0xFFu, b1 = (s1 >> (8 * i)) & 0xFFu, b2 = (s2 >> (8 * i)) & 0xFFu;
    const uint32_t sc = j < 4 ? b0 & 63u : (b2 & 0xFu) | (b0 >> 6) << 4;
    const uint32_t m = j < 4 ? b1 & 63u : (b2 >> 4) | (b1 >> 6) << 4;
    return sc | m << 8;
}

// Byte of a row's qs stream that holds 4-bit unit u's natural byte k (low nibble: element k, high:
// element k + 16): word k/4 of each of the quad's four units sits in lane k/4's 16 bytes.
__host__ __device__ constexpr int pos4(int u, int k) { return (u / 4) * 64 + ((k / 4) * 4 + u % 4) * 4 + k % 4; }

// 8-bit unit u's element k (Q8_0 weights and quantized x): lane t's 32 bytes hold words t and t + 4
// (elements 4t.. and 16 + 4t..) of each unit.
__host__ __device__ constexpr int pos8(int u, int k) {
    return (u / 4) * 128 + (((k / 4) % 4) * 8 + (u % 4) * 2 + k / 16) * 4 + k % 4;
}

// Q6_K's top two bits of unit u's element k: lane t's 8 bytes; byte j of word (u%4)/2 holds elements
// 4t + j and 16 + 4t + j of two units, at bits 4 (u%2) and 4 (u%2) + 2.
__host__ __device__ constexpr int pos6h(int u, int k) {
    return (u / 4) * 32 + (((k % 16) / 4) * 2 + (u % 4) / 2) * 4 + k % 4;
}
__host__ __device__ constexpr int shift6h(int u, int k) { return (u % 2) * 4 + (k >= 16 ? 2 : 0); }

__host__ __device__ inline float half_bits(uint16_t bits) {
    __half_raw raw;
    raw.x = bits;
    return __half2float(__half(raw));
}

// Explicitly rounded f32 ops: the device and the CPU emulation must do the very same operations.
__host__ __device__ inline float fmul(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
__host__ __device__ inline float fadd(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
__host__ __device__ inline float fsub(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

// The per-unit scales of quantized x: d, and the sums of the int8 values of elements 0..15 and 16..31
// (the offsets of Q4_0/Q6_K and Q4_K's mins need them).
struct XMeta {
    float d;
    int16_t sa, sb;
};
static_assert(sizeof(XMeta) == 8);

// The q8 family's term of one unit from its exact integer dot product `dot` (Σ q·xq over the raw
// quants; Q6_K: sa·Σ_lo + sb·Σ_hi with its two 16-element scales). um: the unit's 16-bit scale word,
// sm: its super-block's scale word.
template <QType T>
__host__ __device__ inline float unit_term(int dot, uint32_t um, uint32_t sm, XMeta x) {
    if constexpr (T == QType::q4_0) {
        const int i = dot - 8 * (x.sa + x.sb);
        return fmul(fmul(half_bits(static_cast<uint16_t>(um)), x.d), static_cast<float>(i));
    } else if constexpr (T == QType::q8_0) {
        return fmul(fmul(half_bits(static_cast<uint16_t>(um)), x.d), static_cast<float>(dot));
    } else if constexpr (T == QType::q4_k) {
        const float dsc = fmul(half_bits(static_cast<uint16_t>(sm & 0xFFFFu)), static_cast<float>(um & 0xFFu));
        const float dmn = fmul(half_bits(static_cast<uint16_t>(sm >> 16)), static_cast<float>(um >> 8));
        return fmul(x.d, fsub(fmul(dsc, static_cast<float>(dot)), fmul(dmn, static_cast<float>(x.sa + x.sb))));
    } else {
        const int sa = static_cast<int8_t>(um & 0xFFu), sb = static_cast<int8_t>(um >> 8);
        const int i = dot - 32 * (sa * x.sa + sb * x.sb);
        return fmul(fmul(half_bits(static_cast<uint16_t>(sm)), x.d), static_cast<float>(i));
    }
}

// The slots' final sum; equals a warp butterfly (lane s adds lane s ^ off, off = 16 .. 1) bit for bit.
__host__ __device__ inline float tree32(float (&v)[kSlots]) {
    for (int off = kSlots / 2; off > 0; off /= 2)
        for (int s = 0; s < off; ++s) v[s] = fadd(v[s], v[s + off]);
    return v[0];
}

// ---------------------------------------------------------------------------------------------
// CPU side: unpacking GGUF blocks, the repacked layout, x quantization, references.

const char* qtype_name(QType t) {
    switch (t) {
        case QType::q4_0: return "Q4_0";
        case QType::q8_0: return "Q8_0";
        case QType::q4_k: return "Q4_K";
        case QType::q6_k: return "Q6_K";
    }
    return "?";
}

TensorType tensor_type(QType t) {
    switch (t) {
        case QType::q4_0: return TensorType::Q4_0;
        case QType::q8_0: return TensorType::Q8_0;
        case QType::q4_k: return TensorType::Q4_K;
        case QType::q6_k: return TensorType::Q6_K;
    }
    throw std::invalid_argument("unknown QType");
}

uint16_t u16_at(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}

// One row of GGUF blocks -> raw quants (32 per unit, unsigned 4/6-bit or int8 bits), unit scale words
// (Q4_0/Q8_0: fp16 d; Q6_K: int8 scales of elements 0..15 | 16..31 << 8; none for Q4_K) and the
// super-block bytes (Q4_K: d, dmin, 12 scale bytes as in the block; Q6_K: d).
void unpack_row(QType t, const uint8_t* row, int n_units, uint8_t* q, uint16_t* um, uint8_t* sm) {
    if (t == QType::q4_0 || t == QType::q8_0) {
        const int bytes = t == QType::q4_0 ? 18 : 34;
        for (int u = 0; u < n_units; ++u) {
            const uint8_t* b = row + static_cast<size_t>(u) * bytes;
            um[u] = u16_at(b);
            for (int k = 0; k < kUnit; ++k)
                q[u * kUnit + k] = t == QType::q8_0 ? b[2 + k] : (k < 16 ? b[2 + k] & 0xF : b[2 + k - 16] >> 4);
        }
        return;
    }
    for (int s = 0; s < n_units / kUnitsPerSuper; ++s) {
        uint8_t* qs = q + static_cast<size_t>(s) * kUnitsPerSuper * kUnit;
        if (t == QType::q4_k) {
            const uint8_t* b = row + static_cast<size_t>(s) * 144;
            std::memcpy(sm + s * 16, b, 16);
            for (int j = 0; j < kUnitsPerSuper; ++j)
                for (int l = 0; l < kUnit; ++l) qs[j * kUnit + l] = (b[16 + 32 * (j / 2) + l] >> (4 * (j % 2))) & 0xF;
        } else {
            const uint8_t* b = row + static_cast<size_t>(s) * 210;
            std::memcpy(sm + s * 2, b + 208, 2);
            for (int j = 0; j < kUnitsPerSuper; ++j)
                um[s * kUnitsPerSuper + j] = static_cast<uint16_t>(b[192 + 2 * j] | b[192 + 2 * j + 1] << 8);
            for (int e = 0; e < 256; ++e) {
                const int h = e / 128, k = (e % 128) / 32, l = e % 32;
                const uint8_t ql = b[64 * h + 32 * (k % 2) + l];
                const int nibble = (k < 2 ? ql : ql >> 4) & 0xF;
                qs[e] = static_cast<uint8_t>(nibble | ((b[128 + 32 * h + l] >> (2 * k)) & 3) << 4);
            }
        }
    }
}

struct Repacked {
    QType type;
    int rows = 0, n_in = 0;
    size_t qs_row = 0, qh_row = 0, um_row = 0, sm_row = 0;  // bytes per row of each stream
    size_t qs_off = 0, qh_off = 0, um_off = 0, sm_off = 0;  // stream offsets in data
    std::vector<uint8_t> data;
};

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

Repacked repacked_shape(QType t, int rows, int n_in) {
    const LayoutInfo l = layout_of(t);
    const int units = n_in / kUnit;
    Repacked r{t, rows, n_in};
    r.qs_row = static_cast<size_t>(units) * l.qs;
    r.qh_row = static_cast<size_t>(units) * l.qh;
    r.um_row = static_cast<size_t>(units) * l.um;
    r.sm_row = static_cast<size_t>(units / kUnitsPerSuper) * l.super;
    r.qh_off = align256(r.qs_row * rows);
    r.um_off = r.qh_off + align256(r.qh_row * rows);
    r.sm_off = r.um_off + align256(r.um_row * rows);
    r.data.assign(r.sm_off + align256(r.sm_row * rows), 0);
    return r;
}

// GGUF rows (n_in a multiple of 128, and of 256 for K-quants) -> the repacked streams. Runs once per
// matrix at load.
Repacked repack(QType t, const uint8_t* gguf, int rows, int n_in) {
    Repacked r = repacked_shape(t, rows, n_in);
    const int units = n_in / kUnit;
    const size_t row_bytes = loom::gguf::tensor_bytes(tensor_type(t), static_cast<uint64_t>(n_in));
    std::vector<uint8_t> q(static_cast<size_t>(n_in));
    std::vector<uint16_t> um(static_cast<size_t>(units));
    std::vector<uint8_t> sm(static_cast<size_t>(units / kUnitsPerSuper) * 16 + 16);
    for (int row = 0; row < rows; ++row) {
        unpack_row(t, gguf + row * row_bytes, units, q.data(), um.data(), sm.data());
        uint8_t* qs = r.data.data() + r.qs_off + row * r.qs_row;
        uint8_t* qh = r.data.data() + r.qh_off + row * r.qh_row;
        for (int u = 0; u < units; ++u) {
            const uint8_t* uq = q.data() + u * kUnit;
            for (int k = 0; k < kUnit; ++k) {
                if (t == QType::q8_0) qs[pos8(u, k)] = uq[k];
                if (t != QType::q8_0 && k < 16) qs[pos4(u, k)] = (uq[k] & 0xF) | (uq[k + 16] & 0xF) << 4;
                if (t == QType::q6_k) qh[pos6h(u, k)] |= static_cast<uint8_t>((uq[k] >> 4) << shift6h(u, k));
            }
        }
        std::memcpy(r.data.data() + r.um_off + row * r.um_row, um.data(), r.um_row);
        std::memcpy(r.data.data() + r.sm_off + row * r.sm_row, sm.data(), r.sm_row);
    }
    return r;
}

// Raw quant k of unit u of a row, read back from the repacked streams.
int repacked_quant(const Repacked& r, int row, int u, int k) {
    const uint8_t* qs = r.data.data() + r.qs_off + row * r.qs_row;
    if (r.type == QType::q8_0) return qs[pos8(u, k)];
    const int nibble = (qs[pos4(u, k % 16)] >> (k < 16 ? 0 : 4)) & 0xF;
    if (r.type != QType::q6_k) return nibble;
    const uint8_t* qh = r.data.data() + r.qh_off + row * r.qh_row;
    return nibble | ((qh[pos6h(u, k)] >> shift6h(u, k)) & 3) << 4;
}

uint32_t repacked_um(const Repacked& r, int row, int u) {
    if (r.type != QType::q4_k) return u16_at(r.data.data() + r.um_off + row * r.um_row + 2 * u);
    uint32_t s[3];
    std::memcpy(s, r.data.data() + r.sm_off + row * r.sm_row + (u / kUnitsPerSuper) * 16 + 4, 12);
    return k4_um(s[0], s[1], s[2], u % kUnitsPerSuper);
}

uint32_t repacked_sm(const Repacked& r, int row, int u) {
    const uint8_t* p = r.data.data() + r.sm_off + row * r.sm_row + (u / kUnitsPerSuper) * layout_of(r.type).super;
    return r.type == QType::q4_k   ? uint32_t{u16_at(p)} | uint32_t{u16_at(p + 2)} << 16
           : r.type == QType::q6_k ? u16_at(p)
                                   : 0u;
}

// Dequantizes a repacked row with the float operations of gguf::dequantize, for the round-trip check.
void dequantize_repacked(const Repacked& r, int row, float* out) {
    for (int u = 0; u < r.n_in / kUnit; ++u) {
        const uint32_t um = repacked_um(r, row, u), sm = repacked_sm(r, row, u);
        for (int k = 0; k < kUnit; ++k) {
            const int q = repacked_quant(r, row, u, k);
            float v = 0;
            if (r.type == QType::q4_0) v = static_cast<float>(q - 8) * half_bits(static_cast<uint16_t>(um));
            if (r.type == QType::q8_0)
                v = static_cast<float>(static_cast<int8_t>(q)) * half_bits(static_cast<uint16_t>(um));
            if (r.type == QType::q4_k) {
                const float scale = half_bits(static_cast<uint16_t>(sm & 0xFFFFu)) * static_cast<float>(um & 0xFFu);
                const float min = half_bits(static_cast<uint16_t>(sm >> 16)) * static_cast<float>(um >> 8);
                v = scale * static_cast<float>(q) - min;
            }
            if (r.type == QType::q6_k) {
                const int sc = static_cast<int8_t>(k < 16 ? um & 0xFFu : um >> 8);
                v = half_bits(static_cast<uint16_t>(sm)) * static_cast<float>(sc) * static_cast<float>(q - 32);
            }
            out[u * kUnit + k] = v;
        }
    }
}

// x per unit -> int8 (round to nearest even of x / d, d = max|x| / 127) and XMeta; q in natural order.
struct XQuant {
    std::vector<int8_t> q;
    std::vector<XMeta> meta;
};

XQuant quantize_x_cpu(const std::vector<float>& x, int n_vec, int n_in) {
    XQuant out{std::vector<int8_t>(x.size()), std::vector<XMeta>(x.size() / kUnit)};
    for (int v = 0; v < n_vec; ++v)
        for (int u = 0; u < n_in / kUnit; ++u) {
            const size_t base = static_cast<size_t>(v) * n_in + u * kUnit;
            float amax = 0;
            for (int k = 0; k < kUnit; ++k) amax = std::max(amax, std::fabs(x[base + k]));
            const float d = amax / 127.0f;
            int sa = 0, sb = 0;
            for (int k = 0; k < kUnit; ++k) {
                const int q = d > 0 ? std::clamp(static_cast<int>(std::nearbyint(x[base + k] / d)), -127, 127) : 0;
                out.q[base + k] = static_cast<int8_t>(q);
                (k < 16 ? sa : sb) += q;
            }
            out.meta[base / kUnit] = {d, static_cast<int16_t>(sa), static_cast<int16_t>(sb)};
        }
    return out;
}

// The q8 family's result for `row` and vector v, computed on the CPU in the canonical order.
template <QType T>
float emulate_q8(const Repacked& r, int row, const XQuant& xq, int v) {
    float slots[kSlots] = {};
    const int units = r.n_in / kUnit;
    for (int u = 0; u < units; ++u) {
        const int8_t* xu = xq.q.data() + static_cast<size_t>(v) * r.n_in + u * kUnit;
        const uint32_t um = repacked_um(r, row, u);
        int lo = 0, hi = 0;
        for (int k = 0; k < kUnit; ++k) {
            const int q = repacked_quant(r, row, u, k);
            (k < 16 ? lo : hi) += (T == QType::q8_0 ? static_cast<int8_t>(q) : q) * xu[k];
        }
        const int dot =
            T == QType::q6_k ? static_cast<int8_t>(um & 0xFFu) * lo + static_cast<int8_t>(um >> 8) * hi : lo + hi;
        const float term = unit_term<T>(dot, um, repacked_sm(r, row, u), xq.meta[static_cast<size_t>(v) * units + u]);
        slots[u % kSlots] = fadd(slots[u % kSlots], term);
    }
    return tree32(slots);
}

float emulate_q8_any(const Repacked& r, int row, const XQuant& xq, int v) {
    switch (r.type) {
        case QType::q4_0: return emulate_q8<QType::q4_0>(r, row, xq, v);
        case QType::q8_0: return emulate_q8<QType::q8_0>(r, row, xq, v);
        case QType::q4_k: return emulate_q8<QType::q4_k>(r, row, xq, v);
        case QType::q6_k: return emulate_q8<QType::q6_k>(r, row, xq, v);
    }
    return 0;
}

// f64 reference: y[v][row] = Σ values[row][i] x[v][i] over the CPU-dequantized weights.
std::vector<double> reference(const std::vector<float>& values, const std::vector<float>& x, int rows, int n_in,
                              int n_vec) {
    std::vector<double> y(static_cast<size_t>(n_vec) * rows);
    for (int v = 0; v < n_vec; ++v)
        for (int r = 0; r < rows; ++r) {
            double s = 0;
            for (int i = 0; i < n_in; ++i)
                s += static_cast<double>(values[static_cast<size_t>(r) * n_in + i]) *
                     x[static_cast<size_t>(v) * n_in + i];
            y[static_cast<size_t>(v) * rows + r] = s;
        }
    return y;
}

// max |y - ref| / max |ref| over a vector's outputs, the worst vector. y: (n_vec, n_out) with row r
// equal to tile row r % tile_rows of ref (tile_rows, per vector).
double max_rel_err(const std::vector<float>& y, const std::vector<double>& ref, int n_out, int tile_rows, int n_vec) {
    double worst = 0;
    for (int v = 0; v < n_vec; ++v) {
        double scale = 0, err = 0;
        for (int r = 0; r < tile_rows; ++r)
            scale = std::max(scale, std::fabs(ref[static_cast<size_t>(v) * tile_rows + r]));
        for (int r = 0; r < n_out; ++r) {
            const double got = y[static_cast<size_t>(v) * n_out + r];
            const double e = std::fabs(got - ref[static_cast<size_t>(v) * tile_rows + r % tile_rows]);
            err = std::isnan(got) ? INFINITY : std::max(err, e);  // poison left: infinite, and max keeps it
        }
        worst = std::max(worst, err / scale);
    }
    return worst;
}

// ---------------------------------------------------------------------------------------------
// --cpu-check: the CPU logic the GPU results are judged by.

bool check_type_cpu(QType t, int rows, int n_in) {
    const auto w = loom::kcases::random_matrix(tensor_type(t), rows, n_in, 11);
    const auto t0 = std::chrono::steady_clock::now();
    const Repacked r = repack(t, w.bytes.data(), rows, n_in);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    // The streams hold the same bytes as the blocks (no padding for these shapes).
    const size_t streams = r.qs_row * rows + r.qh_row * rows + r.um_row * rows + r.sm_row * rows;
    size_t mismatches = 0;
    std::vector<float> row_values(static_cast<size_t>(n_in));
    for (int row = 0; row < rows; ++row) {
        dequantize_repacked(r, row, row_values.data());
        for (int i = 0; i < n_in; ++i)
            if (std::memcmp(&row_values[i], &w.values[static_cast<size_t>(row) * n_in + i], 4) != 0) ++mismatches;
    }
    const int n_vec = 4;
    const auto x = loom::kcases::random_uniform(static_cast<size_t>(n_vec) * n_in, 12, -1.f, 1.f);
    const XQuant xq = quantize_x_cpu(x, n_vec, n_in);
    const auto ref = reference(w.values, x, rows, n_in, n_vec);
    std::vector<float> emu(static_cast<size_t>(n_vec) * rows);
    for (int v = 0; v < n_vec; ++v)
        for (int row = 0; row < rows; ++row) emu[static_cast<size_t>(v) * rows + row] = emulate_q8_any(r, row, xq, v);
    const double err = max_rel_err(emu, ref, rows, rows, n_vec);
    const bool ok = mismatches == 0 && streams == w.bytes.size() && err < 2e-2;
    std::printf(
        "  %s %dx%d: repack %.1f ms, %zu stream bytes (GGUF %zu), round trip %zu mismatching values; "
        "q8 canonical order vs f64 reference: max rel err %.2e (< 2e-2) -> %s\n",
        qtype_name(t), rows, n_in, ms, streams, w.bytes.size(), mismatches, err, ok ? "ok" : "FAIL");
    return ok;
}

// The slot tree equals a warp butterfly on every lane; the repacked positions are bijections; the x
// quantization's values are within half a step of x.
bool check_orders_cpu() {
    bool ok = true;
    const auto vals = loom::kcases::random_normal(kSlots, 5, 0.f, 1.f);
    float lanes[kSlots], tree[kSlots];
    std::copy(vals.begin(), vals.end(), lanes);
    std::copy(vals.begin(), vals.end(), tree);
    for (int off = kSlots / 2; off > 0; off /= 2) {
        float next[kSlots];
        for (int l = 0; l < kSlots; ++l) next[l] = lanes[l] + lanes[l ^ off];
        std::copy(next, next + kSlots, lanes);
    }
    const float t = tree32(tree);
    for (int l = 0; l < kSlots; ++l) ok = ok && std::memcmp(&lanes[l], &t, 4) == 0;
    std::printf("  tree32 equals the warp butterfly on all 32 lanes: %s\n", ok ? "ok" : "FAIL");
    std::vector<int> seen4(64 * 4), seen8(128 * 4), seen6(32 * 4 * 4);
    for (int u = 0; u < 16; ++u)
        for (int k = 0; k < kUnit; ++k) {
            if (k < 16) ++seen4[pos4(u, k)];
            ++seen8[pos8(u, k)];
            ++seen6[pos6h(u, k) * 4 + shift6h(u, k) / 2];
        }
    const auto all_one = [](const std::vector<int>& s) {
        return std::all_of(s.begin(), s.end(), [](int c) { return c == 1; });
    };
    const bool perm = all_one(seen4) && all_one(seen8) && all_one(seen6);
    std::printf("  pos4 / pos8 / pos6h place every quant once: %s\n", perm ? "ok" : "FAIL");
    const int n_in = 1024;
    const auto x = loom::kcases::random_uniform(n_in, 13, -1.f, 1.f);
    const XQuant xq = quantize_x_cpu(x, 1, n_in);
    double worst = 0;
    for (int i = 0; i < n_in; ++i) {
        const float d = xq.meta[i / kUnit].d;
        worst = std::max(worst, std::fabs(x[i] - xq.q[i] * static_cast<double>(d)) / d);
    }
    std::printf("  quantize_x: max |x - q d| / d = %.3f (<= 0.5): %s\n", worst, worst <= 0.5 + 1e-6 ? "ok" : "FAIL");
    return ok && perm && worst <= 0.5 + 1e-6;
}

// ---------------------------------------------------------------------------------------------
// Device kernels.

struct MatView {
    const uint8_t *qs, *qh, *um, *sm;
    size_t qs_row, qh_row, um_row, sm_row;
    int n_units;
};

struct RowsParams {
    MatView w;
    const float* x;     // f32 family: (n_vec, n_in)
    const uint8_t* xq;  // q8 family: (n_vec, n_in) int8 in pos8 order ...
    const XMeta* xm;    // ... and (n_vec, n_units) scales
    float* y;           // (n_vec, n_out)
    int n_in, n_out, n_vec;
};

// One quad of one row as one lane (tig) of a quad of lanes sees it.
template <QType T>
struct QuadWords {
    uint32_t w[T == QType::q8_0 ? 8 : 4];  // 4-bit: word tig of units 0..3; 8-bit: words tig, tig+4
    uint2 h;                               // Q6_K: top bits of units 0,1 (x) and 2,3 (y)
    uint2 um;                              // the four units' scale words
    uint32_t sm;                           // their super-block's word
};

// A read-only load; on the host (the --cpu-check lane emulation) a plain copy.
template <class V>
__host__ __device__ __forceinline__ V ld(const uint8_t* p) {
#ifdef __CUDA_ARCH__
    return __ldg(reinterpret_cast<const V*>(p));
#else
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
#endif
}
__host__ __device__ __forceinline__ uint4 ldg16(const uint8_t* p) { return ld<uint4>(p); }

__host__ __device__ __forceinline__ int dp4a(uint32_t a, uint32_t b, int c) {
#ifdef __CUDA_ARCH__
    return __dp4a(static_cast<int>(a), static_cast<int>(b), c);
#else
    for (int e = 0; e < 4; ++e) c += static_cast<int8_t>(a >> (8 * e)) * static_cast<int8_t>(b >> (8 * e));
    return c;
#endif
}

template <QType T>
__host__ __device__ __forceinline__ void load_quad(const MatView& m, int row, int gq, int tig, QuadWords<T>& q) {
    const LayoutInfo l = layout_of(T);
    const uint8_t* qs = m.qs + row * m.qs_row + static_cast<size_t>(gq) * 4 * l.qs;
    if constexpr (T == QType::q8_0) {
        const uint4 a = ldg16(qs + 32 * tig), b = ldg16(qs + 32 * tig + 16);
        const uint32_t w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
        for (int i = 0; i < 8; ++i) q.w[i] = w[i];
    } else {
        const uint4 a = ldg16(qs + 16 * tig);
        q.w[0] = a.x, q.w[1] = a.y, q.w[2] = a.z, q.w[3] = a.w;
    }
    if constexpr (T == QType::q6_k) q.h = ld<uint2>(m.qh + row * m.qh_row + static_cast<size_t>(gq) * 32 + 8 * tig);
    const uint8_t* sm = m.sm + row * m.sm_row + static_cast<size_t>(gq / 2) * l.super;
    if constexpr (T == QType::q4_k) {  // the quad is half h of a super-block: sub-blocks 4h .. 4h + 3
        const uint4 s = ld<uint4>(sm);
        const int j = 4 * (gq % 2);
        q.sm = s.x;
        q.um.x = k4_um(s.y, s.z, s.w, j) | k4_um(s.y, s.z, s.w, j + 1) << 16;
        q.um.y = k4_um(s.y, s.z, s.w, j + 2) | k4_um(s.y, s.z, s.w, j + 3) << 16;
    } else {
        q.um = ld<uint2>(m.um + row * m.um_row + static_cast<size_t>(gq) * 8);
    }
    if constexpr (T == QType::q6_k) q.sm = ld<uint16_t>(sm);
}

__host__ __device__ __forceinline__ uint32_t um_of(uint2 um, int i) {
    return ((i < 2 ? um.x : um.y) >> (16 * (i % 2))) & 0xFFFFu;
}

// Unit i's bytes for this lane: lo = elements 4 tig + 0..3, hi = elements 16 + 4 tig + 0..3 (raw quants).
template <QType T>
__host__ __device__ __forceinline__ void unit_bytes(const QuadWords<T>& q, int i, uint32_t& lo, uint32_t& hi) {
    if constexpr (T == QType::q8_0) {
        lo = q.w[2 * i];
        hi = q.w[2 * i + 1];
    } else {
        lo = q.w[i] & 0x0F0F0F0Fu;
        hi = (q.w[i] >> 4) & 0x0F0F0F0Fu;
        if constexpr (T == QType::q6_k) {
            const uint32_t h = i < 2 ? q.h.x : q.h.y;
            const int s = 4 * (i % 2);
            lo |= ((h >> s) << 4) & 0x30303030u;
            hi |= ((h >> (s + 2)) << 4) & 0x30303030u;
        }
    }
}

__device__ __forceinline__ int add_rn(int a, int b) { return a + b; }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }

// Four lanes' partials of units 0..3 -> lane tig holds unit tig's total (fixed exchange order).
template <class V>
__device__ __forceinline__ V quad_reduce(const V (&v)[4], int tig) {
    const bool b1 = tig & 2, b0 = tig & 1;
    const V s0 = b1 ? v[0] : v[2], s1 = b1 ? v[1] : v[3];
    const V k0 = add_rn(b1 ? v[2] : v[0], __shfl_xor_sync(0xffffffffu, s0, 2));
    const V k1 = add_rn(b1 ? v[3] : v[1], __shfl_xor_sync(0xffffffffu, s1, 2));
    return add_rn(b0 ? k1 : k0, __shfl_xor_sync(0xffffffffu, b0 ? k0 : k1, 1));
}

__device__ __forceinline__ int signed_byte(uint32_t w, int e, int offset) {
    return static_cast<int>((w >> (8 * e)) & 0xFFu) - offset;
}

// f32 family: lane's partial of unit i (its 8 elements against f32 x), scales inside where they differ
// per lane's elements; the owner multiplies by f32_unit_scale after quad_reduce.
template <QType T>
__device__ __forceinline__ float f32_partial(const QuadWords<T>& q, int i, float4 xa, float4 xb) {
    uint32_t lo, hi;
    unit_bytes(q, i, lo, hi);
    const float xs[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
    const int off = T == QType::q4_0 ? 8 : T == QType::q6_k ? 32 : 0;
    float pl = 0, ph = 0, px = 0;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        int a = signed_byte(lo, e, off), b = signed_byte(hi, e, off);
        if constexpr (T == QType::q8_0) a = static_cast<int8_t>(a), b = static_cast<int8_t>(b);
        pl = __fmaf_rn(static_cast<float>(a), xs[e], pl);
        ph = __fmaf_rn(static_cast<float>(b), xs[4 + e], ph);
        if constexpr (T == QType::q4_k) px = __fadd_rn(__fadd_rn(px, xs[e]), xs[4 + e]);
    }
    const uint32_t um = um_of(q.um, i);
    if constexpr (T == QType::q6_k)
        return __fadd_rn(__fmul_rn(static_cast<float>(static_cast<int8_t>(um & 0xFFu)), pl),
                         __fmul_rn(static_cast<float>(static_cast<int8_t>(um >> 8)), ph));
    if constexpr (T == QType::q4_k) {
        const float dsc = __fmul_rn(half_bits(static_cast<uint16_t>(q.sm & 0xFFFFu)), static_cast<float>(um & 0xFFu));
        const float dmn = __fmul_rn(half_bits(static_cast<uint16_t>(q.sm >> 16)), static_cast<float>(um >> 8));
        return __fsub_rn(__fmul_rn(dsc, __fadd_rn(pl, ph)), __fmul_rn(dmn, px));
    }
    return __fadd_rn(pl, ph);
}

template <QType T>
__device__ __forceinline__ float f32_unit_scale(const QuadWords<T>& q, int i) {
    if constexpr (T == QType::q4_k) return 1.0f;
    if constexpr (T == QType::q6_k) return half_bits(static_cast<uint16_t>(q.sm));
    return half_bits(static_cast<uint16_t>(um_of(q.um, i)));
}

// q8 family: lane's integer partial of unit i against x words xw (8 words, pos8 order).
template <QType T>
__host__ __device__ __forceinline__ int q8_partial(const QuadWords<T>& q, int i, const uint32_t (&xw)[8]) {
    uint32_t lo, hi;
    unit_bytes(q, i, lo, hi);
    const int sl = dp4a(lo, xw[2 * i], 0);
    const int sh = dp4a(hi, xw[2 * i + 1], 0);
    if constexpr (T == QType::q6_k) {
        const uint32_t um = um_of(q.um, i);
        return static_cast<int8_t>(um & 0xFFu) * sl + static_cast<int8_t>(um >> 8) * sh;
    }
    return sl + sh;
}

__host__ __device__ __forceinline__ void load_x8(const uint8_t* xq, int n_in, int v, int gq, int tig,
                                                 uint32_t (&xw)[8]) {
    const uint8_t* p = xq + static_cast<size_t>(v) * n_in + static_cast<size_t>(gq) * 128 + 32 * tig;
    const uint4 a = ldg16(p), b = ldg16(p + 16);
    xw[0] = a.x, xw[1] = a.y, xw[2] = a.z, xw[3] = a.w, xw[4] = b.x, xw[5] = b.y, xw[6] = b.z, xw[7] = b.w;
}

__device__ __forceinline__ XMeta load_xmeta(const XMeta* xm, int n_units, int v, int unit) {
    const uint2 m = __ldg(reinterpret_cast<const uint2*>(xm + static_cast<size_t>(v) * n_units + unit));
    return {__uint_as_float(m.x), static_cast<int16_t>(m.y & 0xFFFFu), static_cast<int16_t>(m.y >> 16)};
}

// One unit term per lane (the slot = lane) for vector v of one row; lane (quad, tig) of a pass reads
// quad `gq` of the row. Int8: q8 family, else f32 family.
template <QType T, bool Int8>
__device__ __forceinline__ float lane_term(const RowsParams& p, const QuadWords<T>& q, int v, int gq, int tig,
                                           const uint32_t (&xw)[8], XMeta xm) {
    if constexpr (Int8) {
        int parts[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) parts[i] = q8_partial(q, i, xw);
        return unit_term<T>(quad_reduce(parts, tig), um_of(q.um, tig), q.sm, xm);
    } else {
        float parts[4];
        const float* x = p.x + static_cast<size_t>(v) * p.n_in + static_cast<size_t>(gq) * 4 * kUnit + 4 * tig;
#pragma unroll
        for (int i = 0; i < 4; ++i)
            parts[i] = f32_partial(q, i, __ldg(reinterpret_cast<const float4*>(x + i * kUnit)),
                                   __ldg(reinterpret_cast<const float4*>(x + i * kUnit + 16)));
        return __fmul_rn(f32_unit_scale(q, tig), quad_reduce(parts, tig));
    }
}

// RPW rows per warp, WPB warps per block, MaxVec vectors per block (blockIdx.y picks the group), U
// passes of 32 units loaded before they are used. Lane l owns slot l: a pass covers units 32 p .. +31,
// lane (l / 4, l % 4) loads quad 8 p + l / 4, and after quad_reduce lane l holds unit 32 p + l.
template <QType T, bool Int8, int RPW, int WPB, int MaxVec, int U>
__global__ void __launch_bounds__(WPB * 32) rows_kernel(const RowsParams p) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, tig = lane % 4;
    const int row0 = (blockIdx.x * WPB + warp) * RPW;
    const int v0 = blockIdx.y * MaxVec, nv = min(MaxVec, p.n_vec - v0);
    const int n_pass = p.w.n_units / 32;
    float acc[RPW][MaxVec] = {};
    for (int pass = 0; pass < n_pass; pass += U) {
        QuadWords<T> q[U][RPW];
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
            for (int j = 0; j < RPW; ++j)
                load_quad<T>(p.w, min(row0 + j, p.n_out - 1), (pass + u) * 8 + lane / 4, tig, q[u][j]);
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int gq = (pass + u) * 8 + lane / 4;
#pragma unroll
            for (int t = 0; t < MaxVec; ++t) {
                if (t < nv) {
                    uint32_t xw[8] = {};
                    XMeta xm{};
                    if constexpr (Int8) {
                        load_x8(p.xq, p.n_in, v0 + t, gq, tig, xw);
                        xm = load_xmeta(p.xm, p.w.n_units, v0 + t, (pass + u) * 32 + lane);
                    }
#pragma unroll
                    for (int j = 0; j < RPW; ++j)
                        acc[j][t] = __fadd_rn(acc[j][t], lane_term<T, Int8>(p, q[u][j], v0 + t, gq, tig, xw, xm));
                }
            }
        }
    }
#pragma unroll
    for (int j = 0; j < RPW; ++j)
#pragma unroll
        for (int t = 0; t < MaxVec; ++t) {
            float s = acc[j][t];
#pragma unroll
            for (int off = 16; off > 0; off /= 2) s = __fadd_rn(s, __shfl_xor_sync(0xffffffffu, s, off));
            if (lane == t && t < nv && row0 + j < p.n_out) p.y[static_cast<size_t>(v0 + t) * p.n_out + row0 + j] = s;
        }
}

__device__ __forceinline__ void mma_k32(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                        uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(0));
}

__device__ __forceinline__ void mma_k16(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t b0) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%7,%7,%7};"
                 : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
                 : "r"(a0), "r"(a1), "r"(b0), "r"(0));
}

// Integer dot products of unit i for the 16 rows (quads qa: row g, qb: row g + 8) and 8 vectors (x
// words xw of vector g): c[0..1] = row g, vectors 2 tig, 2 tig + 1; c[2..3] = row g + 8.
template <QType T>
__device__ __forceinline__ void mma_unit(int (&c)[4], const QuadWords<T>& qa, const QuadWords<T>& qb, int i,
                                         const uint32_t (&xw)[8]) {
    uint32_t la, ha, lb, hb;
    unit_bytes(qa, i, la, ha);
    unit_bytes(qb, i, lb, hb);
    if constexpr (T == QType::q6_k) {
        int cl[4], ch[4];
        mma_k16(cl, la, lb, xw[2 * i]);
        mma_k16(ch, ha, hb, xw[2 * i + 1]);
        const uint32_t ua = um_of(qa.um, i), ub = um_of(qb.um, i);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint32_t um = k < 2 ? ua : ub;
            c[k] = static_cast<int8_t>(um & 0xFFu) * cl[k] + static_cast<int8_t>(um >> 8) * ch[k];
        }
    } else {
        mma_k32(c, la, lb, ha, hb, xw[2 * i], xw[2 * i + 1]);
    }
}

constexpr int kMmaWarps = 8;  // warp w takes the quads gq ≡ w (mod 8): slots 4w .. 4w + 3

// q8 family on int8 tensor cores: a block computes MT x 16 rows for NT x 8 vectors (all of them: the
// weights are read once); slot partials meet in shared memory and end in tree32.
template <QType T, int MT, int NT>
__global__ void __launch_bounds__(kMmaWarps * 32) mma_kernel(const RowsParams p) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, tig = lane % 4;
    const int row_base = blockIdx.x * 16 * MT;
    const int n_quads = p.w.n_units / 4;
    float acc[MT][NT][4][4] = {};
#pragma unroll 2
    for (int gq = warp; gq < n_quads; gq += kMmaWarps) {
        QuadWords<T> q[MT][2];
#pragma unroll
        for (int m = 0; m < MT; ++m)
#pragma unroll
            for (int h = 0; h < 2; ++h)
                load_quad<T>(p.w, min(row_base + 16 * m + g + 8 * h, p.n_out - 1), gq, tig, q[m][h]);
#pragma unroll
        for (int n = 0; n < NT; ++n) {
            uint32_t xw[8] = {};
            if (8 * n + g < p.n_vec) load_x8(p.xq, p.n_in, 8 * n + g, gq, tig, xw);
            XMeta xm[2][4] = {};
#pragma unroll
            for (int c = 0; c < 2; ++c)
#pragma unroll
                for (int i = 0; i < 4; ++i)
                    if (8 * n + 2 * tig + c < p.n_vec)
                        xm[c][i] = load_xmeta(p.xm, p.w.n_units, 8 * n + 2 * tig + c, 4 * gq + i);
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int m = 0; m < MT; ++m) {
                    int c[4];
                    mma_unit<T>(c, q[m][0], q[m][1], i, xw);
#pragma unroll
                    for (int k = 0; k < 4; ++k) {
                        const QuadWords<T>& qr = q[m][k / 2];
                        acc[m][n][i][k] =
                            __fadd_rn(acc[m][n][i][k], unit_term<T>(c[k], um_of(qr.um, i), qr.sm, xm[k % 2][i]));
                    }
                }
        }
    }
    __shared__ float red[kSlots][16][8];
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int n = 0; n < NT; ++n) {
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int k = 0; k < 4; ++k) red[4 * warp + i][g + 8 * (k / 2)][2 * tig + k % 2] = acc[m][n][i][k];
            __syncthreads();
            if (threadIdx.x < 128) {
                const int r = threadIdx.x / 8, c = threadIdx.x % 8;
                float v[kSlots];
#pragma unroll
                for (int s = 0; s < kSlots; ++s) v[s] = red[s][r][c];
                const int row = row_base + 16 * m + r, vec = 8 * n + c;
                const float sum = tree32(v);
                if (row < p.n_out && vec < p.n_vec) p.y[static_cast<size_t>(vec) * p.n_out + row] = sum;
            }
            __syncthreads();
        }
}

// x -> int8 per unit in pos8 order + XMeta; one warp per unit, lane = element.
__global__ void quantize_x_kernel(const float* x, uint8_t* xq, XMeta* xm, int n_in) {
    const int lane = threadIdx.x % 32, unit = blockIdx.x * 8 + threadIdx.x / 32, v = blockIdx.y;
    const int n_units = n_in / kUnit;
    if (unit >= n_units) return;
    const float xv = x[static_cast<size_t>(v) * n_in + unit * kUnit + lane];
    float amax = fabsf(xv);
    for (int off = 16; off > 0; off /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float d = __fdiv_rn(amax, 127.0f);
    const int q = d > 0 ? max(-127, min(127, __float2int_rn(__fdiv_rn(xv, d)))) : 0;
    xq[static_cast<size_t>(v) * n_in + pos8(unit, lane)] = static_cast<uint8_t>(static_cast<int8_t>(q));
    int sa = lane < 16 ? q : 0, sb = lane < 16 ? 0 : q;
    for (int off = 16; off > 0; off /= 2) {
        sa += __shfl_xor_sync(0xffffffffu, sa, off);
        sb += __shfl_xor_sync(0xffffffffu, sb, off);
    }
    if (lane == 0)
        xm[static_cast<size_t>(v) * n_units + unit] = {d, static_cast<int16_t>(sa), static_cast<int16_t>(sb)};
}

// ---------------------------------------------------------------------------------------------
// --cpu-check, continued: the lane mapping and the whole check.

// The kernels' lane mapping, run on the CPU: the four lanes' dp4a partials of a unit add up to its
// exact integer dot, and the MMA fragments (PTX ISA "Matrix Fragments for mma.m16n8k32": A reg r of
// lane (g, t) = row g + 8 (r % 2), k = 4t + 16 (r / 2); B reg r = column g, k = 4t + 16 r) give it too.
template <QType T>
bool check_lanes_cpu() {
    const int rows = 16, n_in = 1024, units = n_in / kUnit, n_vec = 8;
    const auto w = loom::kcases::random_matrix(tensor_type(T), rows, n_in, 21);
    const Repacked r = repack(T, w.bytes.data(), rows, n_in);
    const auto x = loom::kcases::random_uniform(static_cast<size_t>(n_vec) * n_in, 22, -1.f, 1.f);
    const XQuant xq = quantize_x_cpu(x, n_vec, n_in);
    std::vector<uint8_t> image(x.size());  // quantize_x_kernel's layout
    for (size_t i = 0; i < x.size(); ++i)
        image[(i / n_in) * n_in + pos8(static_cast<int>(i % n_in) / kUnit, static_cast<int>(i % kUnit))] =
            static_cast<uint8_t>(xq.q[i]);
    const uint8_t* d = r.data.data();
    const MatView m{d + r.qs_off, d + r.qh_off, d + r.um_off, d + r.sm_off, r.qs_row,
                    r.qh_row,     r.um_row,     r.sm_row,     units};
    const auto exact = [&](int row, int v, int u, int k_from, int k_to) {
        int dot = 0;
        for (int k = k_from; k < k_to; ++k) {
            const int q = repacked_quant(r, row, u, k);
            dot +=
                (T == QType::q8_0 ? static_cast<int8_t>(q) : q) * xq.q[static_cast<size_t>(v) * n_in + u * kUnit + k];
        }
        return dot;
    };
    const auto combine = [&](int row, int u, int lo, int hi) {
        const uint32_t um = repacked_um(r, row, u);
        return T == QType::q6_k ? static_cast<int8_t>(um & 0xFFu) * lo + static_cast<int8_t>(um >> 8) * hi : lo + hi;
    };
    size_t bad_lanes = 0, bad_mma = 0;
    for (int gq = 0; gq < units / 4; ++gq)
        for (int i = 0; i < 4; ++i) {
            const int u = 4 * gq + i;
            int a[16][32], b[32][8];
            for (int lane = 0; lane < 32; ++lane) {
                const int g = lane / 4, t = lane % 4;
                QuadWords<T> qa{}, qb{};
                load_quad<T>(m, g, gq, t, qa);
                load_quad<T>(m, g + 8, gq, t, qb);
                uint32_t regs[4], xw[8];
                unit_bytes(qa, i, regs[0], regs[2]);
                unit_bytes(qb, i, regs[1], regs[3]);
                load_x8(image.data(), n_in, g, gq, t, xw);
                for (int e = 0; e < 4; ++e) {
                    for (int reg = 0; reg < 4; ++reg)
                        a[g + 8 * (reg % 2)][4 * t + 16 * (reg / 2) + e] = static_cast<int8_t>(regs[reg] >> (8 * e));
                    for (int reg = 0; reg < 2; ++reg)
                        b[4 * t + 16 * reg + e][g] = static_cast<int8_t>(xw[2 * i + reg] >> (8 * e));
                }
            }
            for (int row = 0; row < rows; ++row)
                for (int v = 0; v < n_vec; ++v) {
                    const int want = combine(row, u, exact(row, v, u, 0, 16), exact(row, v, u, 16, 32));
                    int lanes_sum = 0, lo = 0, hi = 0;
                    for (int t = 0; t < 4; ++t) {
                        QuadWords<T> q{};
                        uint32_t xw[8];
                        load_quad<T>(m, row, gq, t, q);
                        load_x8(image.data(), n_in, v, gq, t, xw);
                        lanes_sum += q8_partial(q, i, xw);
                    }
                    for (int k = 0; k < kUnit; ++k) (k < 16 ? lo : hi) += a[row][k] * b[k][v];
                    bad_lanes += lanes_sum != want;
                    bad_mma += combine(row, u, lo, hi) != want;
                }
        }
    const bool ok = bad_lanes == 0 && bad_mma == 0;
    std::printf(
        "  %s lane mapping: %zu dp4a quad sums and %zu MMA fragment dots differ from the exact unit dots -> %s\n",
        qtype_name(T), bad_lanes, bad_mma, ok ? "ok" : "FAIL");
    return ok;
}

int cpu_check() {
    std::printf("matvec_dev --cpu-check\n");
    bool ok = check_orders_cpu();
    for (QType t : {QType::q4_0, QType::q8_0, QType::q4_k, QType::q6_k}) {
        ok = check_type_cpu(t, 48, 4096) && ok;
        ok = check_type_cpu(t, 8, 14336) && ok;
    }
    ok = check_lanes_cpu<QType::q4_0>() && ok;
    ok = check_lanes_cpu<QType::q8_0>() && ok;
    ok = check_lanes_cpu<QType::q4_k>() && ok;
    ok = check_lanes_cpu<QType::q6_k>() && ok;
    std::printf("cpu-check: %s\n", ok ? "all ok" : "FAILED");
    return ok ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// Variants.

enum class Family { base, f32, q8 };

struct LaunchArgs {
    QType type;
    const uint8_t* gguf;  // this copy's GGUF bytes (base)
    RowsParams p;         // this copy's repacked view, x, y
    cudaStream_t stream;
};

struct Variant {
    std::string name;
    Family family;
    int max_vec;  // largest n_vec it takes
    std::function<void(const LaunchArgs&)> launch;
};

template <QType T, bool Int8, int RPW, int WPB, int MaxVec, int U>
void launch_rows_n(const LaunchArgs& a) {
    const dim3 grid((a.p.n_out + RPW * WPB - 1) / (RPW * WPB), (a.p.n_vec + MaxVec - 1) / MaxVec);
    rows_kernel<T, Int8, RPW, WPB, MaxVec, U><<<grid, WPB * 32, 0, a.stream>>>(a.p);
}

template <QType T, bool Int8, int RPW, int WPB, int U>
void launch_rows(const LaunchArgs& a) {
    const int n = a.p.n_vec;
    if (n == 1) return launch_rows_n<T, Int8, RPW, WPB, 1, U>(a);
    if (n == 2) return launch_rows_n<T, Int8, RPW, WPB, 2, U>(a);
    if (n <= 4) return launch_rows_n<T, Int8, RPW, WPB, 4, U>(a);
    launch_rows_n<T, Int8, RPW, WPB, 8, U>(a);
}

template <QType T, int MT>
void launch_mma(const LaunchArgs& a) {
    const dim3 grid((a.p.n_out + 16 * MT - 1) / (16 * MT));
    const int n = a.p.n_vec;
    if (n <= 8) return mma_kernel<T, MT, 1><<<grid, kMmaWarps * 32, 0, a.stream>>>(a.p);
    if (n <= 16) return mma_kernel<T, MT, 2><<<grid, kMmaWarps * 32, 0, a.stream>>>(a.p);
    if constexpr (MT == 1) mma_kernel<T, MT, 4><<<grid, kMmaWarps * 32, 0, a.stream>>>(a.p);
}

template <QType T>
std::vector<Variant> variants_of() {
    const auto base = [](const LaunchArgs& a) {
        loom::kernels::matvec(tensor_type(a.type), a.gguf, a.p.x, a.p.y, a.p.n_in, a.p.n_out, a.p.n_vec, a.stream);
    };
    return {
        {"base", Family::base, kMaxVec, base},
        {"f32 r1w4", Family::f32, kMaxVec, launch_rows<T, false, 1, 4, 1>},
        {"f32 r2w4", Family::f32, kMaxVec, launch_rows<T, false, 2, 4, 1>},
        {"f32 r1w8u2", Family::f32, kMaxVec, launch_rows<T, false, 1, 8, 2>},
        {"f32 r4w2", Family::f32, kMaxVec, launch_rows<T, false, 4, 2, 1>},
        {"dp4a r1w4", Family::q8, kMaxVec, launch_rows<T, true, 1, 4, 1>},
        {"dp4a r2w4", Family::q8, kMaxVec, launch_rows<T, true, 2, 4, 1>},
        {"dp4a r4w4", Family::q8, kMaxVec, launch_rows<T, true, 4, 4, 1>},
        {"dp4a r1w8u2", Family::q8, kMaxVec, launch_rows<T, true, 1, 8, 2>},
        {"dp4a r2w8u2", Family::q8, kMaxVec, launch_rows<T, true, 2, 8, 2>},
        {"mma m1", Family::q8, kMaxVec, launch_mma<T, 1>},
        {"mma m2", Family::q8, 16, launch_mma<T, 2>},
    };
}

std::vector<Variant> variants(QType t) {
    switch (t) {
        case QType::q4_0: return variants_of<QType::q4_0>();
        case QType::q8_0: return variants_of<QType::q8_0>();
        case QType::q4_k: return variants_of<QType::q4_k>();
        case QType::q6_k: return variants_of<QType::q6_k>();
    }
    return {};
}

// ---------------------------------------------------------------------------------------------
// Harness.

struct Options {
    bool cpu_check = false;
    std::vector<QType> types{QType::q4_0, QType::q8_0, QType::q4_k, QType::q6_k};
    std::vector<int> nvecs{1, 2, 4, 8, 16, 32};
    int runs = 21;
    std::string csv;
};

struct Shape {
    const char* name;
    int n_in, n_out;
    int per_layer;  // how many such products a Llama-3-8B layer runs
};
constexpr Shape kShapes[] = {
    {"q/o 4096x4096", 4096, 4096, 2},
    {"k/v 4096x1024", 4096, 1024, 2},
    {"gate+up 4096x28672", 4096, 28672, 1},
    {"down 14336x4096", 14336, 4096, 1},
};
constexpr int kTileRows = 256;

struct Device {
    cudaStream_t stream = nullptr;
    cudaEvent_t start = nullptr, stop = nullptr;
    size_t l2 = 0;
    double copy_gbps = 0;
};

// One (type, shape) on the device: `copies` copies of the GGUF bytes and of the repacked streams.
struct DeviceMatrix {
    uint8_t* gguf = nullptr;
    uint8_t* rep = nullptr;
    size_t gguf_stride = 0, rep_stride = 0;
    int copies = 1;
    ~DeviceMatrix() {
        cudaFree(gguf);
        cudaFree(rep);
    }
};

struct Result {
    double us = NAN, gbps = NAN, err = NAN;
};

struct VariantRow {
    std::string name;
    Family family;
    std::map<int, Result> by_n;
    bool invariant = true, bits_equal = true;
};

double median_launch_us(const Device& dev, const std::function<void(int)>& launch, int copies, int runs) {
    for (int w = 0; w < 3; ++w) launch(w % copies);
    std::vector<float> ms;
    for (int r = 0; r < runs; ++r) {
        LOOM_CUDA_CHECK(cudaEventRecord(dev.start, dev.stream));
        for (int c = 0; c < copies; ++c) launch(c);
        LOOM_CUDA_CHECK(cudaEventRecord(dev.stop, dev.stream));
        LOOM_CUDA_CHECK(cudaEventSynchronize(dev.stop));
        float t = 0;
        LOOM_CUDA_CHECK(cudaEventElapsedTime(&t, dev.start, dev.stop));
        ms.push_back(t / copies);
    }
    LOOM_CUDA_CHECK(cudaGetLastError());
    std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
    return ms[ms.size() / 2] * 1e3;
}

// Everything one (type, shape) needs on the host: GGUF bytes (tile repeated), repacked streams, x,
// its quantization, the f64 reference and the q8 emulation of the tile rows.
struct HostCase {
    QType type;
    Shape shape;
    std::vector<uint8_t> gguf;
    Repacked rep;
    double repack_ms = 0;
    std::vector<float> x;
    XQuant xq;
    std::vector<double> ref;
    std::vector<float> emu;
};

HostCase make_case(QType t, const Shape& s, uint32_t seed) {
    HostCase h{t, s};
    const int tile = std::min(kTileRows, s.n_out);
    const auto w = loom::kcases::random_matrix(tensor_type(t), tile, s.n_in, seed);
    const size_t row_bytes = w.bytes.size() / tile;
    h.gguf.resize(row_bytes * s.n_out);
    for (int r = 0; r < s.n_out; ++r)
        std::memcpy(h.gguf.data() + r * row_bytes, w.bytes.data() + (r % tile) * row_bytes, row_bytes);
    const auto t0 = std::chrono::steady_clock::now();
    h.rep = repack(t, h.gguf.data(), s.n_out, s.n_in);
    h.repack_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    h.x = loom::kcases::random_uniform(static_cast<size_t>(kMaxVec) * s.n_in, seed + 1, -1.f, 1.f);
    h.xq = quantize_x_cpu(h.x, kMaxVec, s.n_in);
    h.ref = reference(w.values, h.x, tile, s.n_in, kMaxVec);
    h.emu.resize(static_cast<size_t>(kMaxVec) * tile);
    for (int v = 0; v < kMaxVec; ++v)
        for (int r = 0; r < tile; ++r) h.emu[static_cast<size_t>(v) * tile + r] = emulate_q8_any(h.rep, r, h.xq, v);
    return h;
}

template <class T>
T* device_alloc(size_t count) {
    T* p = nullptr;
    LOOM_CUDA_CHECK(cudaMalloc(&p, count * sizeof(T)));
    return p;
}

struct DeviceInputs {
    float* x = nullptr;
    uint8_t* xq = nullptr;
    XMeta* xm = nullptr;
    float* y = nullptr;
    ~DeviceInputs() {
        cudaFree(x);
        cudaFree(xq);
        cudaFree(xm);
        cudaFree(y);
    }
};

RowsParams params_for(const HostCase& h, const DeviceMatrix& m, const DeviceInputs& in, int copy, int n_vec) {
    const Repacked& r = h.rep;
    const uint8_t* base = m.rep + copy * m.rep_stride;
    const MatView w{base + r.qs_off, base + r.qh_off, base + r.um_off, base + r.sm_off,     r.qs_row,
                    r.qh_row,        r.um_row,        r.sm_row,        h.shape.n_in / kUnit};
    return {w, in.x, in.xq, in.xm, in.y, h.shape.n_in, h.shape.n_out, n_vec};
}

// Quantizes x on the device, checks it against the CPU's bytes and times it per n_vec.
void run_quantize_x(const Device& dev, const HostCase& h, const DeviceInputs& in, const Options& opt) {
    const int n_in = h.shape.n_in, units = n_in / kUnit;
    const auto launch = [&](int n) {
        quantize_x_kernel<<<dim3((units + 7) / 8, n), 256, 0, dev.stream>>>(in.x, in.xq, in.xm, n_in);
    };
    LOOM_CUDA_CHECK(cudaMemsetAsync(in.xq, 0x7F, static_cast<size_t>(kMaxVec) * n_in, dev.stream));
    launch(kMaxVec);
    std::vector<uint8_t> got(static_cast<size_t>(kMaxVec) * n_in);
    std::vector<XMeta> meta(static_cast<size_t>(kMaxVec) * units);
    LOOM_CUDA_CHECK(cudaMemcpy(got.data(), in.xq, got.size(), cudaMemcpyDeviceToHost));
    LOOM_CUDA_CHECK(cudaMemcpy(meta.data(), in.xm, meta.size() * sizeof(XMeta), cudaMemcpyDeviceToHost));
    size_t bad = 0;
    for (int v = 0; v < kMaxVec; ++v)
        for (int i = 0; i < n_in; ++i)
            if (static_cast<int8_t>(got[static_cast<size_t>(v) * n_in + pos8(i / kUnit, i % kUnit)]) !=
                h.xq.q[static_cast<size_t>(v) * n_in + i])
                ++bad;
    if (std::memcmp(meta.data(), h.xq.meta.data(), meta.size() * sizeof(XMeta)) != 0) ++bad;
    std::printf("    quantize_x (n_in %d): %s the CPU's bytes; us per n_vec:", n_in, bad ? "DIFFERS FROM" : "equals");
    for (int n : opt.nvecs)
        std::printf(" %d:%.1f", n,
                    median_launch_us(
                        dev, [&](int) { launch(n); }, 1, opt.runs));
    std::printf("\n");
}

// Validates (poisoned output, f64 reference, batch invariance, family bits) and times one variant.
VariantRow run_variant(const Device& dev, const HostCase& h, const DeviceMatrix& m, const DeviceInputs& in,
                       const Variant& var, const Options& opt, std::vector<float>& f32_first) {
    const int n_out = h.shape.n_out, tile = std::min(kTileRows, n_out);
    const double weight_bytes = static_cast<double>(h.gguf.size());
    VariantRow row{var.name, var.family};
    std::map<int, std::vector<float>> outs;
    for (int n : opt.nvecs) {
        if (n > var.max_vec) continue;
        const auto launch = [&](int copy) {
            var.launch({h.type, m.gguf + copy * m.gguf_stride, params_for(h, m, in, copy, n), dev.stream});
        };
        LOOM_CUDA_CHECK(cudaMemsetAsync(in.y, 0xFF, static_cast<size_t>(kMaxVec) * n_out * 4, dev.stream));
        launch(0);
        auto& y = outs[n];
        y.resize(static_cast<size_t>(n) * n_out);
        LOOM_CUDA_CHECK(cudaMemcpyAsync(y.data(), in.y, y.size() * 4, cudaMemcpyDeviceToHost, dev.stream));
        LOOM_CUDA_CHECK(cudaStreamSynchronize(dev.stream));
        Result res;
        res.err = max_rel_err(y, h.ref, n_out, tile, n);
        res.us = median_launch_us(dev, launch, m.copies, opt.runs);
        res.gbps = weight_bytes / (res.us * 1e-6) / 1e9;
        row.by_n[n] = res;
    }
    const auto& widest = outs.rbegin()->second;
    for (const auto& [n, y] : outs) {
        row.invariant = row.invariant && std::memcmp(y.data(), widest.data(), y.size() * 4) == 0;
        for (size_t i = 0; i < y.size() && var.family != Family::base; ++i) {
            const size_t v = i / n_out, r = i % n_out;
            const float want = var.family == Family::q8 ? h.emu[v * tile + r % tile]
                               : f32_first.empty()      ? y[i]
                                                        : f32_first[i];
            if (std::memcmp(&y[i], &want, 4) != 0) row.bits_equal = false;
        }
    }
    if (var.family == Family::f32 && f32_first.empty()) f32_first = widest;
    return row;
}

void print_row(const VariantRow& r, const Options& opt, double copy_gbps, std::FILE* csv, const HostCase& h) {
    double err = 0;
    std::printf("  %-12s", r.name.c_str());
    for (int n : opt.nvecs) {
        const auto it = r.by_n.find(n);
        if (it == r.by_n.end()) {
            std::printf(" | %7s %5s %4s", "-", "-", "-");
            continue;
        }
        const Result& x = it->second;
        err = std::max(err, x.err);
        std::printf(" | %7.1f %5.0f %3.0f%%", x.us, x.gbps, 100 * x.gbps / copy_gbps);
        if (csv)
            std::fprintf(csv, "%s,%s,%s,%d,%.3f,%.1f,%.4f,%.3e,%d,%d\n", qtype_name(h.type), h.shape.name,
                         r.name.c_str(), n, x.us, x.gbps, x.gbps / copy_gbps, x.err, r.invariant, r.bits_equal);
    }
    const char* bits = r.family == Family::base ? "-"
                       : r.bits_equal           ? (r.family == Family::q8 ? "=emu" : "=f32")
                                                : "NO";
    std::printf(" | %8.1e %-3s %s\n", err, r.invariant ? "yes" : "NO", bits);
}

using Timings = std::map<std::string, std::map<int, double>>;  // variant -> n_vec -> µs per layer

void run_case(const Device& dev, QType t, const Shape& s, const Options& opt, std::FILE* csv, Timings& layer,
              std::map<std::string, Family>& families) {
    const HostCase h = make_case(t, s, 100 + static_cast<uint32_t>(t) * 10 + static_cast<uint32_t>(s.n_out % 97));
    DeviceMatrix m;
    m.gguf_stride = align256(h.gguf.size());
    m.rep_stride = h.rep.data.size();
    m.copies = static_cast<int>(std::clamp<size_t>((4 * dev.l2 + m.gguf_stride - 1) / m.gguf_stride, 1, 96));
    m.gguf = device_alloc<uint8_t>(m.gguf_stride * m.copies);
    m.rep = device_alloc<uint8_t>(m.rep_stride * m.copies);
    for (int c = 0; c < m.copies; ++c) {
        LOOM_CUDA_CHECK(cudaMemcpy(m.gguf + c * m.gguf_stride, h.gguf.data(), h.gguf.size(), cudaMemcpyHostToDevice));
        LOOM_CUDA_CHECK(
            cudaMemcpy(m.rep + c * m.rep_stride, h.rep.data.data(), h.rep.data.size(), cudaMemcpyHostToDevice));
    }
    DeviceInputs in;
    in.x = device_alloc<float>(h.x.size());
    in.xq = device_alloc<uint8_t>(h.x.size());
    in.xm = device_alloc<XMeta>(h.xq.meta.size());
    in.y = device_alloc<float>(static_cast<size_t>(kMaxVec) * s.n_out);
    LOOM_CUDA_CHECK(cudaMemcpy(in.x, h.x.data(), h.x.size() * 4, cudaMemcpyHostToDevice));
    std::printf("\n  %s %s: %.1f MB of weights, %d copies; repack (CPU, once at load) %.0f ms = %.0f MB/s\n",
                qtype_name(t), s.name, h.gguf.size() / 1e6, m.copies, h.repack_ms, h.gguf.size() / 1e3 / h.repack_ms);
    run_quantize_x(dev, h, in, opt);
    std::printf("  %-12s", "variant");
    for (int n : opt.nvecs) std::printf(" | n=%-2d us  GB/s  %%cp", n);
    std::printf(" | max err  inv bits\n");
    std::vector<float> f32_first;
    for (const auto& var : variants(t)) {
        const VariantRow row = run_variant(dev, h, m, in, var, opt, f32_first);
        print_row(row, opt, dev.copy_gbps, csv, h);
        families[var.name] = var.family;
        for (const auto& [n, r] : row.by_n) layer[var.name][n] += s.per_layer * r.us;
    }
    std::fflush(stdout);
}

void print_summary(QType t, const Timings& layer, const std::map<std::string, Family>& families, const Options& opt,
                   double copy_gbps) {
    double layer_bytes = 0;
    for (const auto& s : kShapes)
        layer_bytes +=
            s.per_layer * static_cast<double>(loom::gguf::tensor_bytes(tensor_type(t), uint64_t(s.n_in) * s.n_out));
    std::printf(
        "\n%s best per n_vec (one Llama-3-8B layer's products: 2 q/o + 2 k/v + gate+up + down = %.1f MB; "
        "floor at copy bandwidth %.1f us):\n",
        qtype_name(t), layer_bytes / 1e6, layer_bytes / copy_gbps / 1e3);
    for (int n : opt.nvecs) {
        std::map<Family, std::pair<std::string, double>> best;
        for (const auto& [name, by_n] : layer) {
            const auto it = by_n.find(n);
            if (it == by_n.end()) continue;
            auto& b = best[families.at(name)];
            if (b.first.empty() || it->second < b.second) b = {name, it->second};
        }
        std::printf("  n=%-2d", n);
        for (const auto& [fam, b] : best)
            std::printf(" | %s %-11s %8.1f us/layer %3.0f%% of copy",
                        fam == Family::base  ? "base"
                        : fam == Family::f32 ? "f32 "
                                             : "q8  ",
                        b.first.c_str(), b.second, 100 * layer_bytes / (b.second * 1e-6) / 1e9 / copy_gbps);
        std::printf("\n");
    }
}

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size()) {
        const size_t comma = s.find(',', start);
        out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const bool has_value = i + 1 < argc;
        if (a == "--cpu-check") {
            o.cpu_check = true;
        } else if (a == "--types" && has_value) {
            o.types.clear();
            for (const auto& n : split(argv[++i])) {
                const std::map<std::string, QType> names{
                    {"q4_0", QType::q4_0}, {"q8_0", QType::q8_0}, {"q4_k", QType::q4_k}, {"q6_k", QType::q6_k}};
                if (!names.count(n))
                    throw std::invalid_argument("--types: unknown type '" + n + "' (q4_0,q8_0,q4_k,q6_k)");
                o.types.push_back(names.at(n));
            }
        } else if (a == "--nvec" && has_value) {
            o.nvecs.clear();
            for (const auto& n : split(argv[++i])) o.nvecs.push_back(std::stoi(n));
            std::sort(o.nvecs.begin(), o.nvecs.end());
            if (o.nvecs.empty() || o.nvecs.front() < 1 || o.nvecs.back() > kMaxVec)
                throw std::invalid_argument("--nvec: values in 1..32");
        } else if (a == "--runs" && has_value) {
            o.runs = std::max(1, std::stoi(argv[++i]));
        } else if (a == "--csv" && has_value) {
            o.csv = argv[++i];
        } else {
            throw std::invalid_argument(
                "unknown argument '" + a +
                "'; usage: matvec_dev [--cpu-check] [--types q4_0,...] [--nvec 1,8] [--runs 21] [--csv FILE]");
        }
    }
    return o;
}

int run_gpu(const Options& opt) {
    const auto cuda = loom::kernels::query_cuda(false);
    if (cuda.devices.empty()) {
        std::printf("matvec_dev: no CUDA device (%s); nothing timed (try --cpu-check)\n", cuda.error.c_str());
        return 0;
    }
    const auto& info = cuda.devices.front();
    Device dev;
    LOOM_CUDA_CHECK(cudaSetDevice(info.index));
    int l2 = 0;
    LOOM_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, info.index));
    dev.l2 = static_cast<size_t>(l2);
    LOOM_CUDA_CHECK(cudaStreamCreateWithFlags(&dev.stream, cudaStreamNonBlocking));
    LOOM_CUDA_CHECK(cudaEventCreate(&dev.start));
    LOOM_CUDA_CHECK(cudaEventCreate(&dev.stop));
    dev.copy_gbps = loom::kernels::measure_copy_bandwidth_gbps(info.index);
    std::printf(
        "matvec_dev: %s (sm_%d%d), L2 %.0f MiB; device-to-device copy of 1 GiB: %.1f GB/s (2 x size / time, "
        "median of 25)\n",
        info.name.c_str(), info.cc_major, info.cc_minor, dev.l2 / 1048576.0, dev.copy_gbps);
    std::printf(
        "columns per n_vec: us per launch (median of %d runs, each cycling all copies), GB/s of weight bytes, "
        "%% of copy; max err = max |y - f64 ref| / max |ref| over n_vec; inv: vector v bit-identical for every "
        "n_vec; bits: =emu equals the CPU emulation of the q8 order, =f32 equals the first f32 variant\n",
        opt.runs);
    std::FILE* csv = opt.csv.empty() ? nullptr : std::fopen(opt.csv.c_str(), "w");
    if (csv) std::fprintf(csv, "type,shape,variant,n_vec,us,GBps,frac_copy,max_rel_err,invariant,bits_equal\n");
    std::map<QType, std::pair<Timings, std::map<std::string, Family>>> all;
    for (QType t : opt.types) {
        std::printf("\n==== %s ====\n", qtype_name(t));
        for (const auto& s : kShapes) run_case(dev, t, s, opt, csv, all[t].first, all[t].second);
    }
    std::printf("\n==== summary ====\n");
    for (QType t : opt.types) print_summary(t, all[t].first, all[t].second, opt, dev.copy_gbps);
    if (csv) std::fclose(csv);
    cudaEventDestroy(dev.start);
    cudaEventDestroy(dev.stop);
    cudaStreamDestroy(dev.stream);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Options opt = parse(argc, argv);
        return opt.cpu_check ? cpu_check() : run_gpu(opt);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "matvec_dev: %s\n", e.what());
        return 1;
    }
}
