// Embedding lookup kernels: one thread block per token, dequantizing its table row.
#include "kernels/embedding.h"

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/launch.cuh"
#include "kernels/format_dispatch.cuh"

namespace loom::kernels {
namespace {

constexpr int kThreads = 128;

// The NaN row of an out-of-range id; returns whether the id was out of range.
__device__ bool write_nan_row_if_invalid(int32_t id, int64_t n_vocab, float* out, int n_embd) {
    if (id >= 0 && id < n_vocab) return false;
    for (int i = threadIdx.x; i < n_embd; i += blockDim.x) out[i] = NAN;
    return true;
}

// Rows of whole blocks (quantized, or plain types in 16-byte groups): thread u takes unit
// (block u / kLanes, sub u % kLanes) and stores its groups of 4 values as float4.
template <class Format>
__global__ void __launch_bounds__(kThreads)
    embedding_blocks_kernel(const uint8_t* __restrict__ table, int64_t n_vocab, int n_embd,
                            const int32_t* __restrict__ ids, float* __restrict__ out) {
    wait_for_previous_kernel();
    const int32_t id = ids[blockIdx.x];
    float* out_row = out + static_cast<size_t>(blockIdx.x) * n_embd;
    if (write_nan_row_if_invalid(id, n_vocab, out_row, n_embd)) return;
    const int n_blocks = n_embd / Format::kElems;
    const uint8_t* row = table + static_cast<size_t>(id) * n_blocks * Format::kBytes;
    for (int u = threadIdx.x; u < n_blocks * Format::kLanes; u += blockDim.x) {
        const int b = u / Format::kLanes, sub = u % Format::kLanes;
        float v[Format::kValues];
        Format::decode(row + static_cast<size_t>(b) * Format::kBytes, sub, v);
        float* out_block = out_row + static_cast<size_t>(b) * Format::kElems;
#pragma unroll
        for (int g = 0; g < Format::kValues / 4; ++g)
            *reinterpret_cast<float4*>(out_block + Format::offset(sub, g)) =
                make_float4(v[4 * g], v[4 * g + 1], v[4 * g + 2], v[4 * g + 3]);
    }
}

// Plain-type (F32, F16, BF16) rows of any width: one element per thread and step.
template <class Format>
__global__ void __launch_bounds__(kThreads)
    embedding_plain_any_kernel(const uint8_t* __restrict__ table, int64_t n_vocab, int n_embd,
                               const int32_t* __restrict__ ids, float* __restrict__ out) {
    wait_for_previous_kernel();
    const int32_t id = ids[blockIdx.x];
    float* out_row = out + static_cast<size_t>(blockIdx.x) * n_embd;
    if (write_nan_row_if_invalid(id, n_vocab, out_row, n_embd)) return;
    const uint8_t* row = table + static_cast<size_t>(id) * n_embd * Format::kElemBytes;
    for (int i = threadIdx.x; i < n_embd; i += blockDim.x) out_row[i] = Format::scalar(row, i);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool embedding_supports(gguf::TensorType type) { return has_block_format(type); }

void embedding_lookup(gguf::TensorType type, const void* table, int64_t n_vocab, int n_embd, const int32_t* ids,
                      int n_tokens, float* out, Stream stream) {
    const std::string type_name(gguf::tensor_type_name(type));
    if (!embedding_supports(type))
        throw std::invalid_argument("embedding_lookup: no kernel for table type " + type_name);
    const auto block = static_cast<int>(gguf::tensor_type_info(type).block_elems);
    if (n_embd <= 0 || n_embd % block != 0 || n_tokens < 0 || n_vocab < 0)
        throw std::invalid_argument("embedding_lookup: n_embd " + std::to_string(n_embd) +
                                    " must be a positive multiple of the " + type_name + " block size " +
                                    std::to_string(block) + "; n_tokens " + std::to_string(n_tokens) + ", n_vocab " +
                                    std::to_string(n_vocab));
    if (!aligned16(table) || !aligned16(out))
        throw std::invalid_argument("embedding_lookup: table and out must be 16-byte aligned");
    if (n_tokens == 0) return;

    const auto* rows = static_cast<const uint8_t*>(table);
    visit_block_format(type, [&](auto tag) {
        using Format = typename decltype(tag)::Format;
        if constexpr (Format::kPlain) {
            // Rows not a multiple of 16 bytes lose the alignment the float4 path needs.
            if (n_embd % Format::kElems != 0) {
                launch_kernel("embedding_plain_any_kernel", embedding_plain_any_kernel<Format>,
                              {n_tokens, kThreads, 0, stream}, rows, n_vocab, n_embd, ids, out);
                return;
            }
        }
        launch_kernel("embedding_blocks_kernel", embedding_blocks_kernel<Format>, {n_tokens, kThreads, 0, stream}, rows,
                      n_vocab, n_embd, ids, out);
    });
}

}  // namespace loom::kernels
