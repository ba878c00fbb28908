// The q8 family's host side: GGUF rows repacked at load into the coalesced streams the q8 kernels read
// (kernels/q8_matmul.h), and the CPU reference those kernels equal bit for bit (x quantization, plain and
// RMS-normed, and the product in the canonical order; x of SwiGLU within a stated bound). Plain C++: built
// with or without CUDA.
#pragma once

#include <cstdint>
#include <vector>

#include "gguf/tensor_type.h"
#include "kernels/q8_layout.h"

namespace loom::kernels {

// Weight types of the q8 family: Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K.
bool q8_supports(gguf::TensorType type);

// Where a repacked (rows, n_in) matrix keeps its streams in one buffer of `bytes`: per-row bytes of the
// quants (qs), the bits above 4 (qh), the unit scales (um) and the super-block scales (sm), each stream
// starting 256-byte aligned. The streams hold exactly the GGUF blocks' bytes, rearranged.
struct Q8Layout {
    gguf::TensorType type = gguf::TensorType::Q4_0;
    int rows = 0, n_in = 0;
    uint64_t qs_row = 0, qh_row = 0, um_row = 0, sm_row = 0;
    uint64_t qs_off = 0, qh_off = 0, um_off = 0, sm_off = 0;
    uint64_t bytes = 0;
};

// Preconditions (std::invalid_argument naming the value otherwise): q8_supports(type), rows >= 1, n_in a
// positive multiple of 128 (of 256 for K-quants).
Q8Layout q8_layout(gguf::TensorType type, int rows, int n_in);

// GGUF rows (rows x tensor_bytes(type, n_in) bytes) -> the q8_layout(type, rows, n_in).bytes to upload.
std::vector<uint8_t> q8_repack(gguf::TensorType type, const void* gguf_rows, int rows, int n_in);

// x quantized per unit: q[v * n_in + i] = round-to-nearest-even(x / d) in natural element order, d =
// max |x| / 127 of the unit, and meta[v * n_in / 32 + unit].
struct Q8X {
    int n_vec = 0, n_in = 0;
    std::vector<int8_t> q;
    std::vector<q8::XMeta> meta;
};

// X (n_vec, n_in) -> its quantization (n_in a positive multiple of 128, n_vec >= 1).
Q8X q8_quantize_x_ref(const float* X, int n_vec, int n_in);

// The same of X = XW * s per vector, s = 1 / sqrt(Σ S / n_in + eps) from the square-sum partials S
// (n_vec, norm_partial_count(n_in)) of kernels/matvec.h, summed in q8::norm_scale_from_slots' order.
Q8X q8_quantize_x_normed_ref(const float* XW, const float* S, float eps, int n_vec, int n_in);

// The same of x = silu(gate) * up = gate / (1 + exp(-gate)) * up from gate_up (n_vec, 2 n_ff), rows in the
// pair layout of kernels/matvec.h (kSwigluPairRows gate values, as many up values, in turn); n_ff as n_in
// above. std::exp, not CUDA's expf (within 2 ulp): x may differ from the device's by an ulp or two, so the
// device's q8_quantize_swiglu matches this within one quantization step, not bit for bit (tests state it).
Q8X q8_quantize_swiglu_ref(const float* gate_up, int n_vec, int n_ff);

// The bytes q8_quantize_x leaves on the device for x: each vector's units in q8::pos8 order.
std::vector<int8_t> q8_device_order(const Q8X& x);

// Y (x.n_vec, rows) = W x in the canonical q8 order: per unit the exact integer dot product and
// q8::unit_term, terms added into slot (unit mod 32) in increasing unit order, then q8::tree32.
std::vector<float> q8_product_ref(const Q8Layout& layout, const uint8_t* repacked, const Q8X& x);

// Row `row` of a repacked matrix dequantized with the float operations of gguf::dequantize.
void q8_dequantize_row(const Q8Layout& layout, const uint8_t* repacked, int row, float* out);

// The whole matrix as (rows, n_in) fp16 bits: q8_dequantize_row's values rounded to nearest even
// (gguf::float_to_half), the reference of q8_dequantize_f16.
std::vector<uint16_t> q8_dequantize_f16_ref(const Q8Layout& layout, const uint8_t* repacked);

namespace q8 {

// Raw quant k of unit u of a row (unsigned 4/5/6-bit, or Q8_0's int8 bits), its unit scale word (fp16 d;
// Q4_1: d | m << 16; Q4_K/Q5_K: sc | m << 8; Q6_K: its two int8 scales) and its super-block word
// (Q4_K/Q5_K: d | dmin << 16; Q6_K: d), read back from the streams.
int raw_quant(const Q8Layout& layout, const uint8_t* repacked, int row, int u, int k);
uint32_t unit_word(const Q8Layout& layout, const uint8_t* repacked, int row, int u);
uint32_t super_word(const Q8Layout& layout, const uint8_t* repacked, int row, int u);

}  // namespace q8

}  // namespace loom::kernels
