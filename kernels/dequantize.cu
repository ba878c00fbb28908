// Dequantization of GGML weight matrices to fp16 (and f32 -> fp16 conversion), for the cuBLAS products.
#include "kernels/dequantize.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "gguf/tensor_type.h"
#include "kernels/cuda_check.h"
#include "kernels/launch.cuh"
#include "kernels/format_dispatch.cuh"

namespace loom::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = 1 << 20;  // grid-stride loops cover the rest

__device__ __forceinline__ uint32_t pack_halves(float lo, float hi) {
    return uint32_t{__half_as_ushort(__float2half_rn(lo))} | uint32_t{__half_as_ushort(__float2half_rn(hi))} << 16;
}

// The matrix is one run of blocks: rows hold whole blocks, and the fp16 output rows are exactly
// the blocks' elements back to back. Thread unit u decodes part `u % kLanes` of block `u / kLanes`
// with the shared decoders and stores its groups of 4 as 8-byte writes.
template <class Format>
__global__ void __launch_bounds__(kThreads)
    dequantize_blocks_kernel(const uint8_t* __restrict__ W, uint16_t* __restrict__ out, int64_t n_units) {
    wait_for_previous_kernel();
    for (int64_t u = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; u < n_units;
         u += int64_t{gridDim.x} * blockDim.x) {
        const int64_t block = u / Format::kLanes;
        const int sub = static_cast<int>(u % Format::kLanes);
        float v[Format::kValues];
        Format::decode(W + block * Format::kBytes, sub, v);
        uint16_t* dst = out + block * Format::kElems;
#pragma unroll
        for (int g = 0; g < Format::kValues / 4; ++g) {
            const uint2 packed{pack_halves(v[4 * g], v[4 * g + 1]), pack_halves(v[4 * g + 2], v[4 * g + 3])};
            *reinterpret_cast<uint2*>(dst + Format::offset(sub, g)) = packed;
        }
    }
}

// n floats -> n halves: four per step (16-byte loads, 8-byte stores), the last n % 4 one each.
__global__ void __launch_bounds__(kThreads)
    f32_to_f16_kernel(const float* __restrict__ in, uint16_t* __restrict__ out, int64_t n) {
    wait_for_previous_kernel();
    const int64_t n4 = n / 4;
    const int64_t first = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
    const int64_t stride = int64_t{gridDim.x} * blockDim.x;
    for (int64_t i = first; i < n4; i += stride) {
        const float4 f = __ldg(reinterpret_cast<const float4*>(in) + i);
        reinterpret_cast<uint2*>(out)[i] = uint2{pack_halves(f.x, f.y), pack_halves(f.z, f.w)};
    }
    if (first < n - 4 * n4) out[4 * n4 + first] = __half_as_ushort(__float2half_rn(in[4 * n4 + first]));
}

unsigned grid_for(int64_t work_items) {
    return static_cast<unsigned>(std::clamp<int64_t>((work_items + kThreads - 1) / kThreads, 1, kMaxGrid));
}

template <class Format>
void launch_blocks(const void* W, uint16_t* out, int64_t n_elems, Stream stream) {
    const int64_t n_units = n_elems / Format::kElems * Format::kLanes;
    launch_kernel("dequantize_blocks_kernel", dequantize_blocks_kernel<Format>,
                  {grid_for(n_units), kThreads, 0, stream}, static_cast<const uint8_t*>(W), out, n_units);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool dequantize_f16_supports(gguf::TensorType type) { return has_block_format(type); }

void dequantize_to_f16(gguf::TensorType type, const void* W, uint16_t* out, int n_in, int64_t n_rows, Stream stream) {
    const std::string type_name(gguf::tensor_type_name(type));
    if (!dequantize_f16_supports(type))
        throw std::invalid_argument("dequantize_to_f16: no kernel for weight type " + type_name);
    const auto block = static_cast<int>(gguf::tensor_type_info(type).block_elems);
    if (n_in <= 0 || n_in % block != 0)
        throw std::invalid_argument("dequantize_to_f16: n_in " + std::to_string(n_in) +
                                    " must be a positive multiple of the " + type_name + " block size " +
                                    std::to_string(block));
    if (n_rows < 0) throw std::invalid_argument("dequantize_to_f16: n_rows " + std::to_string(n_rows) + " < 0");
    if (!aligned16(W) || !aligned16(out))
        throw std::invalid_argument("dequantize_to_f16: W and out must be 16-byte aligned");
    const int64_t n_elems = n_rows * n_in;
    const auto in_begin = reinterpret_cast<uintptr_t>(W);
    const auto in_end = in_begin + gguf::tensor_bytes(type, static_cast<uint64_t>(n_elems));
    const auto out_begin = reinterpret_cast<uintptr_t>(out);
    const auto out_end = out_begin + static_cast<uint64_t>(n_elems) * sizeof(uint16_t);
    if (n_elems > 0 && in_begin < out_end && out_begin < in_end)
        throw std::invalid_argument("dequantize_to_f16: W and out overlap");
    if (n_elems == 0) return;

    using gguf::TensorType;
    if (type == TensorType::F32) {  // any length: four at a time, then the tail
        launch_kernel("f32_to_f16_kernel", f32_to_f16_kernel, {grid_for(n_elems / 4 + 1), kThreads, 0, stream},
                      static_cast<const float*>(W), out, n_elems);
        return;
    }
    if (type == TensorType::F16) {  // already fp16: the bits carry over unchanged
        LOOM_CUDA_CHECK(
            cudaMemcpyAsync(out, W, static_cast<size_t>(n_elems) * sizeof(uint16_t), cudaMemcpyDeviceToDevice, stream));
        return;
    }
    visit_block_format(type, [&](auto tag) {
        using Format = typename decltype(tag)::Format;
        if (n_elems % Format::kElems != 0)  // BF16 decodes 8 at a time
            throw std::invalid_argument("dequantize_to_f16: " + type_name + " needs a multiple of " +
                                        std::to_string(Format::kElems) + " elements, not " + std::to_string(n_elems));
        launch_blocks<Format>(W, out, n_elems, stream);
    });
}

}  // namespace loom::kernels
