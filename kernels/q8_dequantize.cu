// The q8 family's fp16 dequantization on the device: a repacked matrix (kernels/q8_repack.h) -> (rows, n_in)
// fp16, each value q8_dequantize_row's rounded to nearest even, for the cuBLAS products of prefill parts.
#include <cuda_fp16.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/launch.cuh"
#include "kernels/q8_kernels.cuh"
#include "kernels/q8_matmul.h"

namespace loom::kernels {

namespace {

using gguf::TensorType;
using q8::kUnit;
using q8::kUnitsPerQuad;

constexpr int kThreads = 256;

struct DequantizeParams {
    q8::MatView w;
    uint16_t* out;
    int rows, n_in;
};

// Four weights of one unit (raw quants in the bytes of `quants`, elements k0 .. k0 + 3) as fp16 at dst.
template <TensorType T>
__device__ __forceinline__ void store_four(uint16_t* dst, uint32_t quants, int k0, uint32_t um, uint32_t sm) {
    uint32_t h[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        const float v = q8::weight_value<T>(static_cast<int>((quants >> (8 * e)) & 0xFFu), k0 + e, um, sm);
        h[e] = __half_as_ushort(__float2half_rn(v));
    }
    __stwb(reinterpret_cast<uint2*>(dst), make_uint2(h[0] | h[1] << 16, h[2] | h[3] << 16));  // one 8-byte store
}

// One thread per (row, quad, lane tig): the lane loads its 16-byte pieces of the streams with load_quad,
// as the product kernels do, so a warp reads 8 quads' bytes contiguously, and writes elements 4 tig .. +3
// and 16 + 4 tig .. +3 of the quad's four units as 8-byte pieces (a quad of lanes fills 32 contiguous
// bytes per store). Every thread has the same small fixed piece, so the grid covers the matrix in one
// pass (rows * n_in / 32 threads: 1.8M for 14336 x 4096, far below the grid limit) and needs no loop.
template <TensorType T>
__global__ void __launch_bounds__(kThreads) dequantize_kernel(const DequantizeParams p) {
    wait_for_previous_kernel();
    const int n_quads = p.w.n_units / kUnitsPerQuad;
    const int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x;
    if (i >= int64_t{p.rows} * n_quads * 4) return;
    const int tig = static_cast<int>(i % 4);
    const int row = static_cast<int>(i / 4 / n_quads), gq = static_cast<int>(i / 4 % n_quads);
    q8::QuadWords<T> q;
    q8::load_quad<T>(p.w, row, gq, tig, q);
    uint16_t* dst = p.out + int64_t{row} * p.n_in + gq * kUnitsPerQuad * kUnit + 4 * tig;
#pragma unroll
    for (int u = 0; u < kUnitsPerQuad; ++u) {
        uint32_t lo, hi;
        q8::unit_bytes(q, u, lo, hi);
        const uint32_t um = q8::unit_um(q, u);
        store_four<T>(dst + u * kUnit, lo, 4 * tig, um, q.sm);
        store_four<T>(dst + u * kUnit + 16, hi, 16 + 4 * tig, um, q.sm);
    }
}

void check_aligned16(const char* what, const void* p) {
    const auto rest = reinterpret_cast<uintptr_t>(p) % 16;
    if (rest != 0)
        throw std::invalid_argument(std::string("q8_dequantize_f16: ") + what +
                                    " is not 16-byte aligned (address % 16 = " + std::to_string(rest) + ")");
}

bool same_layout(const Q8Layout& a, const Q8Layout& b) {
    return a.qs_row == b.qs_row && a.qh_row == b.qh_row && a.um_row == b.um_row && a.sm_row == b.sm_row &&
           a.qs_off == b.qs_off && a.qh_off == b.qh_off && a.um_off == b.um_off && a.sm_off == b.sm_off &&
           a.bytes == b.bytes;
}

}  // namespace

void q8_dequantize_f16(const Q8Matrix& W, uint16_t* out, Stream stream) {
    const Q8Layout& l = W.layout;
    if (!same_layout(l, q8_layout(l.type, l.rows, l.n_in)))  // q8_layout validates type, rows and n_in
        throw std::invalid_argument("q8_dequantize_f16: the layout's offsets are not q8_layout's");
    check_aligned16("W.data", W.data);
    check_aligned16("out", out);
    const uint64_t out_bytes = static_cast<uint64_t>(l.rows) * l.n_in * sizeof(uint16_t);
    const auto o = reinterpret_cast<uintptr_t>(out), w = reinterpret_cast<uintptr_t>(W.data);
    if (o < w + l.bytes && w < o + out_bytes)
        throw std::invalid_argument("q8_dequantize_f16: out (" + std::to_string(out_bytes) +
                                    " bytes) overlaps W.data (" + std::to_string(l.bytes) + " bytes)");
    const auto* d = static_cast<const uint8_t*>(W.data);
    const DequantizeParams p{{d + l.qs_off, d + l.qh_off, d + l.um_off, d + l.sm_off, l.qs_row, l.qh_row, l.um_row,
                              l.sm_row, l.n_in / kUnit},
                             out,
                             l.rows,
                             l.n_in};
    const int64_t threads = int64_t{l.rows} * (l.n_in / kUnit);  // 4 lanes per quad of 4 units: one per unit
    const LaunchShape shape{dim3(static_cast<unsigned>((threads + kThreads - 1) / kThreads)), dim3(kThreads), 0,
                            stream};
    switch (l.type) {
        case TensorType::Q4_0:
            return launch_kernel("q8 dequantize_kernel", dequantize_kernel<TensorType::Q4_0>, shape, p);
        case TensorType::Q4_1:
            return launch_kernel("q8 dequantize_kernel", dequantize_kernel<TensorType::Q4_1>, shape, p);
        case TensorType::Q5_0:
            return launch_kernel("q8 dequantize_kernel", dequantize_kernel<TensorType::Q5_0>, shape, p);
        case TensorType::Q8_0:
            return launch_kernel("q8 dequantize_kernel", dequantize_kernel<TensorType::Q8_0>, shape, p);
        case TensorType::Q4_K:
            return launch_kernel("q8 dequantize_kernel", dequantize_kernel<TensorType::Q4_K>, shape, p);
        case TensorType::Q5_K:
            return launch_kernel("q8 dequantize_kernel", dequantize_kernel<TensorType::Q5_K>, shape, p);
        case TensorType::Q6_K:
            return launch_kernel("q8 dequantize_kernel", dequantize_kernel<TensorType::Q6_K>, shape, p);
        default: throw std::invalid_argument("q8_dequantize_f16: type not in the q8 family");
    }
}

}  // namespace loom::kernels
