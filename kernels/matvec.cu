// Quantized matrix-vector kernels: one warp per row of W, block formats decoded in registers.
#include "kernels/matvec.h"

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/launch.cuh"
#include "kernels/format_dispatch.cuh"
#include "kernels/reduce.cuh"

namespace loom::kernels {
namespace {

constexpr int kWarpsPerBlock = 4;

// One warp per output row. The row's blocks are split into units of (block, sub); lane u of a
// pass takes unit u, so a pass covers 32 / kLanes consecutive blocks and its loads are contiguous.
// Decoded weights stay in registers and meet all n_vec activation vectors (MaxVec unrolled slots;
// slots >= n_vec are skipped warp-uniformly).
template <class Format, int MaxVec>
__global__ void __launch_bounds__(kWarpsPerBlock* kWarpSize)
    matvec_kernel(const uint8_t* __restrict__ W, const float* __restrict__ X, float* __restrict__ Y, int n_in,
                  int n_out, int n_vec) {
    wait_for_previous_kernel();
    const int lane = threadIdx.x % kWarpSize;
    const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / kWarpSize;
    if (row >= n_out) return;  // whole warps leave together; no block barriers follow

    constexpr int kBlocksPerPass = kWarpSize / Format::kLanes;
    const int n_blocks = n_in / Format::kElems;
    const uint8_t* w_row = W + static_cast<size_t>(row) * n_blocks * Format::kBytes;
    const int sub = lane % Format::kLanes;

    float acc[MaxVec] = {};
    // Unrolled so the weight loads of several passes are in flight together: short rows (576
    // inputs: 3 passes) are otherwise a chain of dependent global-memory latencies.
    constexpr int kUnroll = Format::kValues <= 8 ? 4 : 2;
#pragma unroll kUnroll
    for (int b = lane / Format::kLanes; b < n_blocks; b += kBlocksPerPass) {
        float w[Format::kValues];
        Format::decode(w_row + static_cast<size_t>(b) * Format::kBytes, sub, w);
        const float* x_block = X + static_cast<size_t>(b) * Format::kElems;
#pragma unroll
        for (int t = 0; t < MaxVec; ++t) {
            if (t < n_vec) {  // an `if`, not a `break`: lets the x loads be hoisted (no spills)
                const float* x = x_block + static_cast<size_t>(t) * n_in;
#pragma unroll
                for (int g = 0; g < Format::kValues / 4; ++g) {
                    const float4 xv = __ldg(reinterpret_cast<const float4*>(x + Format::offset(sub, g)));
                    acc[t] += w[4 * g] * xv.x + w[4 * g + 1] * xv.y + w[4 * g + 2] * xv.z + w[4 * g + 3] * xv.w;
                }
            }
        }
    }
#pragma unroll
    for (int t = 0; t < MaxVec; ++t) {
        if (t >= n_vec) break;
        const float sum = warp_sum(acc[t]);
        if (lane == 0) Y[static_cast<size_t>(t) * n_out + row] = sum;
    }
}

// Plain-type (F32, F16, BF16) rows of any length or alignment: one element per lane and step.
template <class Format, int MaxVec>
__global__ void __launch_bounds__(kWarpsPerBlock* kWarpSize)
    matvec_plain_any_kernel(const uint8_t* __restrict__ W, const float* __restrict__ X, float* __restrict__ Y,
                            int n_in, int n_out, int n_vec) {
    wait_for_previous_kernel();
    const int lane = threadIdx.x % kWarpSize;
    const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / kWarpSize;
    if (row >= n_out) return;
    const uint8_t* w_row = W + static_cast<size_t>(row) * n_in * Format::kElemBytes;
    float acc[MaxVec] = {};
    for (int i = lane; i < n_in; i += kWarpSize) {
        const float w = Format::scalar(w_row, i);
#pragma unroll
        for (int t = 0; t < MaxVec; ++t) {
            if (t >= n_vec) break;
            acc[t] += w * __ldg(X + static_cast<size_t>(t) * n_in + i);
        }
    }
#pragma unroll
    for (int t = 0; t < MaxVec; ++t) {
        if (t >= n_vec) break;
        const float sum = warp_sum(acc[t]);
        if (lane == 0) Y[static_cast<size_t>(t) * n_out + row] = sum;
    }
}

struct Args {
    const void* W;
    const float* X;
    float* Y;
    int n_in, n_out, n_vec;
    Stream stream;
    dim3 grid() const { return dim3(static_cast<unsigned>((n_out + kWarpsPerBlock - 1) / kWarpsPerBlock)); }
};

// AnyLength: the plain-type kernel for rows that do not split into 16-byte blocks.
template <class Format, int MaxVec, bool AnyLength>
void launch(const Args& a) {
    const auto* W = static_cast<const uint8_t*>(a.W);
    if constexpr (AnyLength) {
        launch_kernel("matvec_plain_any_kernel", matvec_plain_any_kernel<Format, MaxVec>, {a.grid(), kWarpsPerBlock *
                      kWarpSize, 0, a.stream}, W, a.X, a.Y, a.n_in, a.n_out, a.n_vec);
    } else {
        launch_kernel("matvec_kernel", matvec_kernel<Format, MaxVec>, {a.grid(), kWarpsPerBlock * kWarpSize, 0,
                      a.stream}, W, a.X, a.Y, a.n_in, a.n_out, a.n_vec);
    }
}

// The smallest unrolled vector count (1, 2, 4, 8) that holds n_vec.
template <class Format, bool AnyLength>
void launch_vectors(const Args& a) {
    if (a.n_vec == 1) launch<Format, 1, AnyLength>(a);
    else if (a.n_vec == 2) launch<Format, 2, AnyLength>(a);
    else if (a.n_vec <= 4) launch<Format, 4, AnyLength>(a);
    else launch<Format, 8, AnyLength>(a);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool matvec_supports(gguf::TensorType type) { return has_block_format(type); }

void matvec(gguf::TensorType type, const void* W, const float* X, float* Y, int n_in, int n_out, int n_vec,
            Stream stream) {
    const std::string type_name(gguf::tensor_type_name(type));
    if (!matvec_supports(type)) throw std::invalid_argument("matvec: no kernel for weight type " + type_name);
    if (n_vec < 1 || n_vec > kMaxMatvecVectors)
        throw std::invalid_argument("matvec: n_vec " + std::to_string(n_vec) + " is outside 1.." +
                                    std::to_string(kMaxMatvecVectors));
    const auto block = static_cast<int>(gguf::tensor_type_info(type).block_elems);
    if (n_in <= 0 || n_out < 0 || n_in % block != 0)
        throw std::invalid_argument("matvec: n_in " + std::to_string(n_in) + " must be a positive multiple of the " +
                                    type_name + " block size " + std::to_string(block) + " (n_out " +
                                    std::to_string(n_out) + ")");
    if (!aligned16(W) || !aligned16(X)) throw std::invalid_argument("matvec: W and X must be 16-byte aligned");
    if (n_out == 0) return;

    const Args a{W, X, Y, n_in, n_out, n_vec, stream};
    visit_block_format(type, [&](auto tag) {
        using Format = typename decltype(tag)::Format;
        if constexpr (Format::kPlain) {
            if (n_in % Format::kElems != 0) {
                launch_vectors<Format, true>(a);
                return;
            }
        }
        launch_vectors<Format, false>(a);
    });
}

}  // namespace loom::kernels
