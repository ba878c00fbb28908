// One switch from gguf::TensorType to the device decoder of kernels/quant_formats.cuh, shared by
// every kernel that reads weights in a GGML format (CUDA translation units only).
#pragma once

#include "gguf/tensor_type.h"
#include "kernels/quant_formats.cuh"

namespace loom::kernels {

// Names a decoder of quant_formats.cuh without constructing one.
template <class F>
struct FormatTag {
    using Format = F;
};

// Calls fn(FormatTag<Decoder>{}) for a type with a device decoder and returns true; returns false
// (fn not called) otherwise. Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K,
// Q6_K. Plain types (F32, F16, BF16) hand over their 16-byte decoder, whose kPlain flag tells the
// caller to take its own path for rows that are not a multiple of Format::kElems long.
//   visit_block_format(type, [&](auto tag) { using Format = typename decltype(tag)::Format; ... });
template <class Fn>
bool visit_block_format(gguf::TensorType type, Fn&& fn) {
    using gguf::TensorType;
    switch (type) {
        case TensorType::F32: fn(FormatTag<quant::F32x4>{}); return true;
        case TensorType::F16: fn(FormatTag<quant::F16x8>{}); return true;
        case TensorType::BF16: fn(FormatTag<quant::BF16x8>{}); return true;
        case TensorType::Q4_0: fn(FormatTag<quant::Q4_0>{}); return true;
        case TensorType::Q4_1: fn(FormatTag<quant::Q4_1>{}); return true;
        case TensorType::Q5_0: fn(FormatTag<quant::Q5_0>{}); return true;
        case TensorType::Q5_1: fn(FormatTag<quant::Q5_1>{}); return true;
        case TensorType::Q8_0: fn(FormatTag<quant::Q8_0>{}); return true;
        case TensorType::Q4_K: fn(FormatTag<quant::Q4_K>{}); return true;
        case TensorType::Q5_K: fn(FormatTag<quant::Q5_K>{}); return true;
        case TensorType::Q6_K: fn(FormatTag<quant::Q6_K>{}); return true;
        default: return false;
    }
}

// Whether visit_block_format knows `type`.
inline bool has_block_format(gguf::TensorType type) {
    return visit_block_format(type, [](auto) {});
}

}  // namespace loom::kernels
