// The q8 family's repack on the device: GGUF rows already in device memory -> the streams of q8_layout,
// the bytes q8_repack writes on the host (which runs at 140-375 MB/s, 12-30 s for an 8B model).
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "gguf/quant_blocks.h"
#include "kernels/cuda_check.h"
#include "kernels/launch.cuh"
#include "kernels/q8_matmul.h"

namespace loom::kernels {

namespace {

using gguf::TensorType;
using q8::kUnit;
using q8::kUnitsPerQuad;
using q8::kUnitsPerSuper;

constexpr int kThreads = 128;

// Bytes of one GGUF block of T (32 elements; K-quants: a 256-element super-block).
template <TensorType T>
__host__ __device__ constexpr size_t block_bytes() {
    switch (T) {
        case TensorType::Q4_0: return sizeof(gguf::BlockQ4_0);
        case TensorType::Q4_1: return sizeof(gguf::BlockQ4_1);
        case TensorType::Q5_0: return sizeof(gguf::BlockQ5_0);
        case TensorType::Q8_0: return sizeof(gguf::BlockQ8_0);
        case TensorType::Q4_K: return sizeof(gguf::BlockQ4_K);
        case TensorType::Q5_K: return sizeof(gguf::BlockQ5_K);
        default: return sizeof(gguf::BlockQ6_K);
    }
}

__device__ __forceinline__ uint32_t u16_at(const uint8_t* p) { return p[0] | uint32_t{p[1]} << 8; }
__device__ __forceinline__ uint32_t u32_at(const uint8_t* p) { return u16_at(p) | u16_at(p + 2) << 16; }

// Unit u of a GGUF row -> its 32 raw quants (unsigned 4/5/6-bit, or Q8_0's int8 bits) and its unit scale
// word (fp16 d; Q4_1: d | m << 16; Q6_K: the int8 scales of elements 0..15 | 16..31 << 8; Q4_K/Q5_K: none,
// their scales stay packed in the super-block bytes).
template <TensorType T>
__device__ __forceinline__ uint32_t unpack_unit(const uint8_t* row, int u, uint8_t (&q)[kUnit]) {
    if constexpr (!q8::is_k_quant(T)) {
        const uint8_t* b = row + static_cast<size_t>(u) * block_bytes<T>();
        if constexpr (T == TensorType::Q8_0) {
            for (int k = 0; k < kUnit; ++k) q[k] = b[2 + k];
            return u16_at(b);
        }
        const uint8_t* qs = b + (T == TensorType::Q4_0 ? 2 : T == TensorType::Q4_1 ? 4 : 6);
        const uint32_t high = T == TensorType::Q5_0 ? u32_at(b + 2) : 0;
        for (int k = 0; k < kUnit; ++k)
            q[k] = static_cast<uint8_t>(((k < 16 ? qs[k] : qs[k - 16] >> 4) & 0xF) | ((high >> k) & 1) << 4);
        return T == TensorType::Q4_1 ? u32_at(b) : u16_at(b);
    } else {
        const int j = u % kUnitsPerSuper;
        const uint8_t* b = row + static_cast<size_t>(u / kUnitsPerSuper) * block_bytes<T>();
        if constexpr (T == TensorType::Q6_K) {
            const int h = j / 4, k = j % 4;  // elements 32 j ..: half h of the super-block, quarter k
            for (int l = 0; l < kUnit; ++l) {
                const uint8_t ql = b[64 * h + 32 * (k % 2) + l];
                q[l] =
                    static_cast<uint8_t>(((k < 2 ? ql : ql >> 4) & 0xF) | ((b[128 + 32 * h + l] >> (2 * k)) & 3) << 4);
            }
            return u16_at(b + 192 + 2 * j);
        } else {
            const uint8_t* low = b + (T == TensorType::Q4_K ? 16 : 48);
            for (int l = 0; l < kUnit; ++l) {
                const int bit5 = T == TensorType::Q5_K ? (b[16 + l] >> j) & 1 : 0;
                q[l] = static_cast<uint8_t>(((low[32 * (j / 2) + l] >> (4 * (j % 2))) & 0xF) | bit5 << 4);
            }
            return 0;
        }
    }
}

// Copies n bytes (a multiple of 4, 4-byte aligned on both sides) as words.
__device__ __forceinline__ void store_words(uint8_t* dst, const uint8_t* src, int n) {
    for (int i = 0; i < n; i += 4) *reinterpret_cast<uint32_t*>(dst + i) = *reinterpret_cast<const uint32_t*>(src + i);
}

struct RepackParams {
    const uint8_t* in;
    uint8_t* out;
    uint64_t in_row, qs_off, qh_off, um_off, sm_off, qs_row, qh_row, um_row, sm_row;
    int row0, rows, n_units;  // rows row0 .. row0 + rows - 1 of the layout, their GGUF bytes from `in`
};

// One thread per (row, quad of 4 units): a quad's bytes of each stream are contiguous and no other
// quad's units share them, so every output byte is written once, by one thread, without atomics.
template <TensorType T>
__global__ void __launch_bounds__(kThreads) repack_kernel(RepackParams p) {
    wait_for_previous_kernel();
    constexpr q8::StreamBytes sb = q8::stream_bytes(T);
    const int n_quads = p.n_units / kUnitsPerQuad;
    const int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x;
    if (i >= int64_t{p.rows} * n_quads) return;
    const int row = static_cast<int>(i / n_quads), quad = static_cast<int>(i % n_quads);
    const uint8_t* in = p.in + row * p.in_row;
    alignas(16) uint8_t qs[kUnitsPerQuad * sb.qs];
    alignas(16) uint8_t qh[kUnitsPerQuad * (sb.qh > 0 ? sb.qh : 1)] = {};
    alignas(16) uint8_t um[kUnitsPerQuad * (sb.um > 0 ? sb.um : 1)];
    for (int uq = 0; uq < kUnitsPerQuad; ++uq) {
        const int u = quad * kUnitsPerQuad + uq;  // pos* minus the quad's base is pos*(uq, k)
        uint8_t raw[kUnit];
        const uint32_t word = unpack_unit<T>(in, u, raw);
        for (int b = 0; b < sb.um; ++b) um[uq * sb.um + b] = static_cast<uint8_t>(word >> (8 * b));
        for (int k = 0; k < kUnit; ++k) {
            if constexpr (T == TensorType::Q8_0) qs[q8::pos8(uq, k)] = raw[k];
            if constexpr (T != TensorType::Q8_0)
                if (k < 16) qs[q8::pos4(uq, k)] = static_cast<uint8_t>((raw[k] & 0xF) | (raw[k + 16] & 0xF) << 4);
            if constexpr (T == TensorType::Q6_K)
                qh[q8::pos6h(uq, k)] |= static_cast<uint8_t>((raw[k] >> 4) << q8::shift6h(uq, k));
            if constexpr (q8::has_bit5(T))
                qh[q8::pos5h(uq, k)] |= static_cast<uint8_t>(((raw[k] >> 4) & 1) << q8::shift5h(uq, k));
        }
    }
    const uint64_t out_row = static_cast<uint64_t>(p.row0) + row;
    store_words(p.out + p.qs_off + out_row * p.qs_row + quad * sizeof(qs), qs, sizeof(qs));
    if constexpr (sb.qh > 0) store_words(p.out + p.qh_off + out_row * p.qh_row + quad * sizeof(qh), qh, sizeof(qh));
    if constexpr (sb.um > 0) store_words(p.out + p.um_off + out_row * p.um_row + quad * sizeof(um), um, sizeof(um));
    if constexpr (sb.super > 0) {
        constexpr int kQuadsPerSuper = kUnitsPerSuper / kUnitsPerQuad;
        if (quad % kQuadsPerSuper != 0) return;  // the super-block's first quad copies its scale bytes
        const int s = quad / kQuadsPerSuper;
        const uint8_t* b = in + static_cast<size_t>(s) * block_bytes<T>();
        uint8_t* dst = p.out + p.sm_off + out_row * p.sm_row + s * sb.super;
        for (int k = 0; k < sb.super; ++k) dst[k] = b[T == TensorType::Q6_K ? 208 + k : k];
    }
}

// The padding after each stream (up to the next 256-byte boundary) is zero, as in q8_repack's buffer.
void zero_padding(const Q8Layout& l, uint8_t* out, cudaStream_t stream) {
    const uint64_t end[] = {l.qs_off + l.qs_row * l.rows, l.qh_off + l.qh_row * l.rows, l.um_off + l.um_row * l.rows,
                            l.sm_off + l.sm_row * l.rows};
    const uint64_t next[] = {l.qh_off, l.um_off, l.sm_off, l.bytes};
    for (int s = 0; s < 4; ++s)
        if (next[s] > end[s]) LOOM_CUDA_CHECK(cudaMemsetAsync(out + end[s], 0, next[s] - end[s], stream));
}

bool overlaps(const void* a, uint64_t a_bytes, const void* b, uint64_t b_bytes) {
    const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
    return x < y + b_bytes && y < x + a_bytes;
}

}  // namespace

void q8_repack_device_rows(gguf::TensorType type, const void* gguf_rows, int row0, int n_rows, int rows, int n_in,
                           void* out, Stream stream) {
    const Q8Layout l = q8_layout(type, rows, n_in);  // validates type, rows and n_in
    if (row0 < 0 || n_rows < 1 || row0 > rows - n_rows)
        throw std::invalid_argument("q8_repack_device: rows " + std::to_string(row0) + " .. +" +
                                    std::to_string(n_rows) + " outside the matrix's " + std::to_string(rows));
    if (reinterpret_cast<uintptr_t>(out) % 256 != 0)
        throw std::invalid_argument("q8_repack_device: out is not 256-byte aligned");
    const uint64_t in_row = gguf::tensor_bytes(type, static_cast<uint64_t>(n_in));
    if (overlaps(out, l.bytes, gguf_rows, in_row * n_rows))
        throw std::invalid_argument("q8_repack_device: out (" + std::to_string(l.bytes) +
                                    " bytes) overlaps the GGUF rows (" + std::to_string(in_row * n_rows) + " bytes)");
    auto* o = static_cast<uint8_t*>(out);
    zero_padding(l, o, stream);
    const RepackParams p{static_cast<const uint8_t*>(gguf_rows),
                         o,
                         in_row,
                         l.qs_off,
                         l.qh_off,
                         l.um_off,
                         l.sm_off,
                         l.qs_row,
                         l.qh_row,
                         l.um_row,
                         l.sm_row,
                         row0,
                         n_rows,
                         n_in / kUnit};
    const int64_t threads = int64_t{n_rows} * (p.n_units / kUnitsPerQuad);
    const LaunchShape shape{dim3(static_cast<unsigned>((threads + kThreads - 1) / kThreads)), dim3(kThreads), 0,
                            stream};
    switch (type) {
        case TensorType::Q4_0: return launch_kernel("q8 repack_kernel", repack_kernel<TensorType::Q4_0>, shape, p);
        case TensorType::Q4_1: return launch_kernel("q8 repack_kernel", repack_kernel<TensorType::Q4_1>, shape, p);
        case TensorType::Q5_0: return launch_kernel("q8 repack_kernel", repack_kernel<TensorType::Q5_0>, shape, p);
        case TensorType::Q8_0: return launch_kernel("q8 repack_kernel", repack_kernel<TensorType::Q8_0>, shape, p);
        case TensorType::Q4_K: return launch_kernel("q8 repack_kernel", repack_kernel<TensorType::Q4_K>, shape, p);
        case TensorType::Q5_K: return launch_kernel("q8 repack_kernel", repack_kernel<TensorType::Q5_K>, shape, p);
        case TensorType::Q6_K: return launch_kernel("q8 repack_kernel", repack_kernel<TensorType::Q6_K>, shape, p);
        default: throw std::invalid_argument("q8_repack_device: type not in the q8 family");
    }
}

void q8_repack_device(gguf::TensorType type, const void* gguf_rows, int rows, int n_in, void* out, Stream stream) {
    q8_repack_device_rows(type, gguf_rows, 0, rows, rows, n_in, out, stream);
}

}  // namespace loom::kernels
