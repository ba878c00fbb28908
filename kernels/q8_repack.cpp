// The q8 family's host side: repack of GGUF rows into the q8 streams, and the CPU reference of the q8
// kernels. Compiled with -ffp-contract=off (kernels/CMakeLists.txt): its float ops must round like the device's.
#include "kernels/q8_repack.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "gguf/half.h"
#include "gguf/quant_blocks.h"
#include "kernels/matvec.h"

namespace loom::kernels {

namespace {

using gguf::TensorType;
using q8::kUnit;
using q8::kUnitsPerSuper;

uint16_t u16_at(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}

uint64_t align256(uint64_t n) { return (n + 255) / 256 * 256; }

uint32_t u32_at(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// One row of 32-element blocks (Q4_0, Q4_1, Q5_0, Q8_0) -> raw quants (32 per unit: unsigned 4/5-bit or
// int8 bits) and unit scale words (fp16 d; Q4_1: d | m << 16).
void unpack_legacy(TensorType t, const uint8_t* row, int n_units, uint8_t* q, uint32_t* um) {
    const size_t bytes = gguf::tensor_bytes(t, kUnit);
    for (int u = 0; u < n_units; ++u) {
        const uint8_t* b = row + u * bytes;
        uint8_t* uq = q + u * kUnit;
        um[u] = t == TensorType::Q4_1 ? u32_at(b) : u16_at(b);
        if (t == TensorType::Q8_0) {
            std::memcpy(uq, b + 2, kUnit);
            continue;
        }
        const uint8_t* qs = b + (t == TensorType::Q4_0 ? 2 : t == TensorType::Q4_1 ? 4 : 6);
        const uint32_t high = t == TensorType::Q5_0 ? u32_at(b + 2) : 0;
        for (int k = 0; k < kUnit; ++k)
            uq[k] = static_cast<uint8_t>(((k < 16 ? qs[k] : qs[k - 16] >> 4) & 0xF) | ((high >> k) & 1) << 4);
    }
}

// One row of K-quant super-blocks -> raw quants (unsigned 4/5/6-bit), unit scale words (Q6_K: int8 scales
// of elements 0..15 | 16..31 << 8; none for Q4_K/Q5_K, whose scales stay packed) and the super-block
// bytes (Q4_K/Q5_K: d, dmin, 12 scale bytes as in the block; Q6_K: d).
void unpack_k(TensorType t, const uint8_t* row, int n_units, uint8_t* q, uint32_t* um, uint8_t* sm) {
    const size_t bytes = gguf::tensor_bytes(t, gguf::kQK_K);
    for (int s = 0; s < n_units / kUnitsPerSuper; ++s) {
        const uint8_t* b = row + s * bytes;
        uint8_t* qs = q + static_cast<size_t>(s) * kUnitsPerSuper * kUnit;
        if (t == TensorType::Q4_K || t == TensorType::Q5_K) {
            std::memcpy(sm + s * 16, b, 16);
            const uint8_t* low = b + (t == TensorType::Q4_K ? 16 : 48);
            for (int j = 0; j < kUnitsPerSuper; ++j)
                for (int l = 0; l < kUnit; ++l) {
                    const int bit5 = t == TensorType::Q5_K ? (b[16 + l] >> j) & 1 : 0;
                    qs[j * kUnit + l] =
                        static_cast<uint8_t>(((low[32 * (j / 2) + l] >> (4 * (j % 2))) & 0xF) | bit5 << 4);
                }
        } else {
            std::memcpy(sm + s * 2, b + 208, 2);
            for (int j = 0; j < kUnitsPerSuper; ++j) um[s * kUnitsPerSuper + j] = u16_at(b + 192 + 2 * j);
            for (int e = 0; e < 256; ++e) {
                const int h = e / 128, k = (e % 128) / 32, l = e % 32;
                const uint8_t ql = b[64 * h + 32 * (k % 2) + l];
                const int nibble = (k < 2 ? ql : ql >> 4) & 0xF;
                qs[e] = static_cast<uint8_t>(nibble | ((b[128 + 32 * h + l] >> (2 * k)) & 3) << 4);
            }
        }
    }
}

void check_x_shape(const char* what, int n_vec, int n_in, const char* width_name = "n_in") {
    if (n_vec < 1) throw std::invalid_argument(std::string(what) + ": n_vec " + std::to_string(n_vec) + " < 1");
    if (n_in <= 0 || n_in % 128 != 0)
        throw std::invalid_argument(std::string(what) + ": " + width_name + " " + std::to_string(n_in) +
                                    " is not a positive multiple of 128");
}

// One unit of x (natural order) -> q and its XMeta, as the device's quantize kernel computes them.
q8::XMeta quantize_unit(const float* x, int8_t* q) {
    float amax = 0;
    for (int k = 0; k < kUnit; ++k) amax = std::max(amax, std::fabs(x[k]));
    const float d = amax / 127.0f;
    int sa = 0, sb = 0;
    for (int k = 0; k < kUnit; ++k) {
        const int v = d > 0 ? std::clamp(static_cast<int>(std::nearbyint(x[k] / d)), -127, 127) : 0;
        q[k] = static_cast<int8_t>(v);
        (k < 16 ? sa : sb) += v;
    }
    return {d, static_cast<int16_t>(sa), static_cast<int16_t>(sb)};
}

template <TensorType T>
float product_one(const Q8Layout& l, const uint8_t* w, const Q8X& x, int row, int v) {
    float slots[q8::kSlots] = {};
    const int units = l.n_in / kUnit;
    for (int u = 0; u < units; ++u) {
        const int8_t* xu = x.q.data() + static_cast<size_t>(v) * l.n_in + static_cast<size_t>(u) * kUnit;
        const uint32_t um = q8::unit_word(l, w, row, u);
        int lo = 0, hi = 0;
        for (int k = 0; k < kUnit; ++k) {
            const int q = q8::raw_quant(l, w, row, u, k);
            (k < 16 ? lo : hi) += (T == TensorType::Q8_0 ? static_cast<int8_t>(q) : q) * xu[k];
        }
        const int dot =
            T == TensorType::Q6_K ? static_cast<int8_t>(um & 0xFFu) * lo + static_cast<int8_t>(um >> 8) * hi : lo + hi;
        const q8::XMeta m = x.meta[static_cast<size_t>(v) * units + u];
        slots[u % q8::kSlots] =
            q8::fadd(slots[u % q8::kSlots], q8::unit_term<T>(dot, um, q8::super_word(l, w, row, u), m));
    }
    return q8::tree32(slots);
}

template <TensorType T>
std::vector<float> product_all(const Q8Layout& l, const uint8_t* w, const Q8X& x) {
    std::vector<float> y(static_cast<size_t>(x.n_vec) * l.rows);
    for (int v = 0; v < x.n_vec; ++v)
        for (int r = 0; r < l.rows; ++r) y[static_cast<size_t>(v) * l.rows + r] = product_one<T>(l, w, x, r, v);
    return y;
}

template <TensorType T>
void dequantize_row(const Q8Layout& l, const uint8_t* w, int row, float* out) {
    for (int u = 0; u < l.n_in / kUnit; ++u) {
        const uint32_t um = q8::unit_word(l, w, row, u), sm = q8::super_word(l, w, row, u);
        for (int k = 0; k < kUnit; ++k)
            out[u * kUnit + k] = q8::weight_value<T>(q8::raw_quant(l, w, row, u, k), k, um, sm);
    }
}

}  // namespace

bool q8_supports(TensorType type) {
    switch (type) {
        case TensorType::Q4_0:
        case TensorType::Q4_1:
        case TensorType::Q5_0:
        case TensorType::Q8_0:
        case TensorType::Q4_K:
        case TensorType::Q5_K:
        case TensorType::Q6_K: return true;
        default: return false;
    }
}

Q8Layout q8_layout(TensorType type, int rows, int n_in) {
    if (!q8_supports(type))
        throw std::invalid_argument("q8_layout: type " + std::string(gguf::tensor_type_name(type)) +
                                    " is not in the q8 family (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K)");
    if (rows < 1) throw std::invalid_argument("q8_layout: rows " + std::to_string(rows) + " < 1");
    const int multiple = q8::is_k_quant(type) ? 256 : 128;
    if (n_in <= 0 || n_in % multiple != 0)
        throw std::invalid_argument("q8_layout: n_in " + std::to_string(n_in) + " is not a positive multiple of " +
                                    std::to_string(multiple) + " (" + std::string(gguf::tensor_type_name(type)) + ")");
    const q8::StreamBytes b = q8::stream_bytes(type);
    const uint64_t units = static_cast<uint64_t>(n_in / kUnit), n = static_cast<uint64_t>(rows);
    Q8Layout l{type, rows, n_in};
    l.qs_row = units * b.qs;
    l.qh_row = units * b.qh;
    l.um_row = units * b.um;
    l.sm_row = units / kUnitsPerSuper * b.super;
    l.qh_off = align256(l.qs_row * n);
    l.um_off = l.qh_off + align256(l.qh_row * n);
    l.sm_off = l.um_off + align256(l.um_row * n);
    l.bytes = l.sm_off + align256(l.sm_row * n);
    return l;
}

std::vector<uint8_t> q8_repack(TensorType t, const void* gguf_rows, int rows, int n_in) {
    const Q8Layout l = q8_layout(t, rows, n_in);
    std::vector<uint8_t> out(l.bytes, 0);
    const int units = n_in / kUnit, um_bytes = q8::stream_bytes(t).um;
    const uint64_t row_bytes = gguf::tensor_bytes(t, static_cast<uint64_t>(n_in));
    std::vector<uint8_t> q(static_cast<size_t>(n_in));
    std::vector<uint32_t> um(static_cast<size_t>(units));
    std::vector<uint8_t> sm(static_cast<size_t>(units / kUnitsPerSuper) * 16 + 16);
    for (int row = 0; row < rows; ++row) {
        const uint8_t* src = static_cast<const uint8_t*>(gguf_rows) + row * row_bytes;
        if (q8::is_k_quant(t))
            unpack_k(t, src, units, q.data(), um.data(), sm.data());
        else
            unpack_legacy(t, src, units, q.data(), um.data());
        uint8_t* qs = out.data() + l.qs_off + row * l.qs_row;
        uint8_t* qh = out.data() + l.qh_off + row * l.qh_row;
        uint8_t* ums = out.data() + l.um_off + row * l.um_row;
        for (int u = 0; u < units; ++u) {
            const uint8_t* uq = q.data() + u * kUnit;
            for (int k = 0; k < kUnit; ++k) {
                if (t == TensorType::Q8_0) qs[q8::pos8(u, k)] = uq[k];
                if (t != TensorType::Q8_0 && k < 16) qs[q8::pos4(u, k)] = (uq[k] & 0xF) | (uq[k + 16] & 0xF) << 4;
                if (t == TensorType::Q6_K)
                    qh[q8::pos6h(u, k)] |= static_cast<uint8_t>((uq[k] >> 4) << q8::shift6h(u, k));
                if (q8::has_bit5(t))
                    qh[q8::pos5h(u, k)] |= static_cast<uint8_t>(((uq[k] >> 4) & 1) << q8::shift5h(u, k));
            }
            std::memcpy(ums + u * um_bytes, &um[u], um_bytes);  // little-endian: the word's low bytes
        }
        std::memcpy(out.data() + l.sm_off + row * l.sm_row, sm.data(), l.sm_row);
    }
    return out;
}

Q8X q8_quantize_x_ref(const float* X, int n_vec, int n_in) {
    check_x_shape("q8_quantize_x_ref", n_vec, n_in);
    const size_t n = static_cast<size_t>(n_vec) * n_in;
    Q8X out{n_vec, n_in, std::vector<int8_t>(n), std::vector<q8::XMeta>(n / kUnit)};
    for (size_t u = 0; u < n / kUnit; ++u) out.meta[u] = quantize_unit(X + u * kUnit, out.q.data() + u * kUnit);
    return out;
}

Q8X q8_quantize_x_normed_ref(const float* XW, const float* S, float eps, int n_vec, int n_in) {
    check_x_shape("q8_quantize_x_normed_ref", n_vec, n_in);
    const int n_partials = norm_partial_count(n_in);
    std::vector<float> x(static_cast<size_t>(n_vec) * n_in);
    for (int v = 0; v < n_vec; ++v) {
        float slots[q8::kSlots] = {};
        for (int i = 0; i < n_partials; ++i)
            slots[i % q8::kSlots] = q8::fadd(slots[i % q8::kSlots], S[static_cast<size_t>(v) * n_partials + i]);
        const float s = q8::norm_scale_from_slots(slots, n_in, eps);
        for (int i = 0; i < n_in; ++i) {
            const size_t e = static_cast<size_t>(v) * n_in + i;
            x[e] = q8::fmul(XW[e], s);
        }
    }
    return q8_quantize_x_ref(x.data(), n_vec, n_in);
}

Q8X q8_quantize_swiglu_ref(const float* gate_up, int n_vec, int n_ff) {
    check_x_shape("q8_quantize_swiglu_ref", n_vec, n_ff, "n_ff");
    std::vector<float> x(static_cast<size_t>(n_vec) * n_ff);
    for (int v = 0; v < n_vec; ++v) {
        const float* row = gate_up + static_cast<size_t>(v) * 2 * n_ff;
        for (int i = 0; i < n_ff; ++i) {
            const int g_at = i / kSwigluPairRows * 2 * kSwigluPairRows + i % kSwigluPairRows;
            const float g = row[g_at];
            x[static_cast<size_t>(v) * n_ff + i] = g / (1.0f + std::exp(-g)) * row[g_at + kSwigluPairRows];
        }
    }
    return q8_quantize_x_ref(x.data(), n_vec, n_ff);
}

std::vector<int8_t> q8_device_order(const Q8X& x) {
    std::vector<int8_t> out(x.q.size());
    for (size_t i = 0; i < x.q.size(); ++i) {
        const size_t v = i / x.n_in, e = i % x.n_in;
        out[v * x.n_in + q8::pos8(static_cast<int>(e) / kUnit, static_cast<int>(e) % kUnit)] = x.q[i];
    }
    return out;
}

std::vector<float> q8_product_ref(const Q8Layout& l, const uint8_t* w, const Q8X& x) {
    if (x.n_in != l.n_in)
        throw std::invalid_argument("q8_product_ref: x has n_in " + std::to_string(x.n_in) + ", the matrix " +
                                    std::to_string(l.n_in));
    switch (l.type) {
        case TensorType::Q4_0: return product_all<TensorType::Q4_0>(l, w, x);
        case TensorType::Q4_1: return product_all<TensorType::Q4_1>(l, w, x);
        case TensorType::Q5_0: return product_all<TensorType::Q5_0>(l, w, x);
        case TensorType::Q8_0: return product_all<TensorType::Q8_0>(l, w, x);
        case TensorType::Q4_K: return product_all<TensorType::Q4_K>(l, w, x);
        case TensorType::Q5_K: return product_all<TensorType::Q5_K>(l, w, x);
        case TensorType::Q6_K: return product_all<TensorType::Q6_K>(l, w, x);
        default: throw std::invalid_argument("q8_product_ref: type not in the q8 family");
    }
}

void q8_dequantize_row(const Q8Layout& l, const uint8_t* w, int row, float* out) {
    switch (l.type) {
        case TensorType::Q4_0: return dequantize_row<TensorType::Q4_0>(l, w, row, out);
        case TensorType::Q4_1: return dequantize_row<TensorType::Q4_1>(l, w, row, out);
        case TensorType::Q5_0: return dequantize_row<TensorType::Q5_0>(l, w, row, out);
        case TensorType::Q8_0: return dequantize_row<TensorType::Q8_0>(l, w, row, out);
        case TensorType::Q4_K: return dequantize_row<TensorType::Q4_K>(l, w, row, out);
        case TensorType::Q5_K: return dequantize_row<TensorType::Q5_K>(l, w, row, out);
        case TensorType::Q6_K: return dequantize_row<TensorType::Q6_K>(l, w, row, out);
        default: throw std::invalid_argument("q8_dequantize_row: type not in the q8 family");
    }
}

std::vector<uint16_t> q8_dequantize_f16_ref(const Q8Layout& l, const uint8_t* w) {
    std::vector<uint16_t> out(static_cast<size_t>(l.rows) * l.n_in);
    std::vector<float> row(static_cast<size_t>(l.n_in));
    for (int r = 0; r < l.rows; ++r) {
        q8_dequantize_row(l, w, r, row.data());
        for (int i = 0; i < l.n_in; ++i) out[static_cast<size_t>(r) * l.n_in + i] = gguf::float_to_half(row[i]);
    }
    return out;
}

namespace q8 {

int raw_quant(const Q8Layout& l, const uint8_t* w, int row, int u, int k) {
    const uint8_t* qs = w + l.qs_off + row * l.qs_row;
    if (l.type == TensorType::Q8_0) return qs[pos8(u, k)];
    const int nibble = (qs[pos4(u, k % 16)] >> (k < 16 ? 0 : 4)) & 0xF;
    const uint8_t* qh = w + l.qh_off + row * l.qh_row;
    if (l.type == TensorType::Q6_K) return nibble | ((qh[pos6h(u, k)] >> shift6h(u, k)) & 3) << 4;
    if (has_bit5(l.type)) return nibble | ((qh[pos5h(u, k)] >> shift5h(u, k)) & 1) << 4;
    return nibble;
}

uint32_t unit_word(const Q8Layout& l, const uint8_t* w, int row, int u) {
    const uint8_t* um = w + l.um_off + row * l.um_row;
    if (l.type == TensorType::Q4_1) return u32_at(um + 4 * u);
    if (!has_packed_scales(l.type)) return u16_at(um + 2 * u);
    uint32_t s[3];
    std::memcpy(s, w + l.sm_off + row * l.sm_row + (u / kUnitsPerSuper) * 16 + 4, 12);
    return k4_um(s[0], s[1], s[2], u % kUnitsPerSuper);
}

uint32_t super_word(const Q8Layout& l, const uint8_t* w, int row, int u) {
    const uint8_t* p = w + l.sm_off + row * l.sm_row + (u / kUnitsPerSuper) * stream_bytes(l.type).super;
    return has_packed_scales(l.type)    ? uint32_t{u16_at(p)} | uint32_t{u16_at(p + 2)} << 16
           : l.type == TensorType::Q6_K ? u16_at(p)
                                        : 0u;
}

}  // namespace q8

}  // namespace loom::kernels
