// The q8 family's launch functions: precondition checks, then one configuration of each kernel of
// kernels/q8_kernels.cuh per weight type; and the residual epilogue fused with the normed x quantization.
#include "kernels/q8_matmul.h"

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/matvec.h"
#include "kernels/q8_kernels.cuh"

namespace loom::kernels {

namespace {

using gguf::TensorType;

// The library's configurations: 4 warps per block for dp4a, 16 rows per block for MMA; any choice gives the
// same bits. Rows per warp from matvec_dev's sweeps (H100, 8B layer at n_vec 1, two runs): 2 for Q4_0 and
// Q8_0 (69.0 / 105.8 us against 72.9 / 107.8 with 1), 1 for the K-quants (Q4_K: 95.9 against 113.3 with 2).
constexpr int kRowsWarps = 4, kRowsUnroll = 1, kMmaRowTiles = 1;
constexpr int kF32RowsPerWarp = 2;  // the f32 family (the output projection): placeholder until its H100 sweep
template <TensorType T>
constexpr int kRowsPerWarp = T == TensorType::Q4_0 || T == TensorType::Q8_0 ? 2 : 1;

void check_aligned(const char* fn, const char* what, const void* p, uintptr_t alignment) {
    if (reinterpret_cast<uintptr_t>(p) % alignment != 0)
        throw std::invalid_argument(std::string(fn) + ": " + what + " is not " + std::to_string(alignment) +
                                    "-byte aligned");
}

// width_name: what the caller calls x's width (n_in; n_ff for q8_quantize_swiglu).
void check_x(const char* fn, int n_vec, int n_in, const int8_t* xq, const q8::XMeta* xmeta,
             const char* width_name = "n_in") {
    if (n_vec < 1 || n_vec > kQ8MaxVectors)
        throw std::invalid_argument(std::string(fn) + ": n_vec " + std::to_string(n_vec) + " outside 1.." +
                                    std::to_string(kQ8MaxVectors));
    if (n_in <= 0 || n_in % 128 != 0)
        throw std::invalid_argument(std::string(fn) + ": " + width_name + " " + std::to_string(n_in) +
                                    " is not a positive multiple of 128");
    check_aligned(fn, "xq", xq, 16);
    check_aligned(fn, "xmeta", xmeta, 8);
}

template <q8::XSource Src>
void quantize(const char* fn, const float* X, const float* S, float eps, int8_t* xq, q8::XMeta* xmeta, int n_vec,
              int n_in, Stream stream) {
    const bool swiglu = Src == q8::XSource::swiglu;
    check_x(fn, n_vec, n_in, xq, xmeta, swiglu ? "n_ff" : "n_in");
    check_aligned(fn, swiglu ? "gate_up" : "X", X, 4);
    if (Src == q8::XSource::normed) check_aligned(fn, "S", S, 4);
    const int units_per_block = q8::kQuantizeWarps, n_units = n_in / q8::kUnit;
    const dim3 grid(n_vec, (n_units + units_per_block - 1) / units_per_block);
    launch_kernel("q8 quantize_kernel", q8::quantize_kernel<Src>,
                  LaunchShape{grid, dim3(q8::kQuantizeWarps * 32), 0, stream}, X, S, eps, norm_partial_count(n_in),
                  reinterpret_cast<uint8_t*>(xq), xmeta, n_in);
}

template <TensorType T>
void product(const q8::ProductParams& p, bool mma, cudaStream_t stream) {
    if (mma) return q8::launch_mma<T, kMmaRowTiles>(p, stream);
    q8::launch_rows<T, kRowsPerWarp<T>, kRowsWarps, kRowsUnroll>(p, stream);
}

constexpr int kResidualWarps = 32;  // warps per block of residual_quantize_kernel, one vector per block

// residual_norm_inputs then quantize_kernel<normed> for one vector per block (blockIdx.x), n elements:
// (1) thread t takes partials t, t + 1024, ... (4 elements each, one 16-byte load of R, Y and w): R += Y,
// R ⊙ w into shared memory and the partial's square sum, with norm_inputs_kernel's operations; (2) warp 0
// sums the partials into slots and the scale as quantize_kernel<normed> does; (3) warp w quantizes units
// 4 w .. 4 w + 3, 4 (w + 32) .. by quantize_units4 (a vector's units in one block are many per warp, so
// four at once: 3 shuffle rounds instead of 4 x 5 in turn). So R, xq and xm equal the two kernels' bit for
// bit (RW and S stay in shared memory). Dynamic shared memory: n + n / kNormRowsPerPartial floats.
static_assert(kNormRowsPerPartial == 4, "residual_quantize_kernel loads a partial's elements as one float4");
__global__ void __launch_bounds__(kResidualWarps * 32)
    residual_quantize_kernel(float* R, const float* __restrict__ Y, const float* __restrict__ w, float eps, uint8_t* xq,
                             q8::XMeta* xm, int n) {
    wait_for_previous_kernel();
    extern __shared__ float4 rw_s[];  // R ⊙ w (n / 4 float4), then the partials' square sums
    __shared__ float shared_scale;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, v = blockIdx.x;
    const int n_partials = n / kNormRowsPerPartial, n_units = n / q8::kUnit;
    float* s_s = reinterpret_cast<float*>(rw_s + n_partials);
    float4* Rv = reinterpret_cast<float4*>(R + static_cast<size_t>(v) * n);
    const float4* Yv = reinterpret_cast<const float4*>(Y + static_cast<size_t>(v) * n);
    const float4* w4 = reinterpret_cast<const float4*>(w);
    for (int p = threadIdx.x; p < n_partials; p += kResidualWarps * 32) {
        const float4 a = Rv[p], y = Yv[p], g = w4[p];
        const float4 r = {__fadd_rn(a.x, y.x), __fadd_rn(a.y, y.y), __fadd_rn(a.z, y.z), __fadd_rn(a.w, y.w)};
        Rv[p] = r;
        rw_s[p] = {__fmul_rn(r.x, g.x), __fmul_rn(r.y, g.y), __fmul_rn(r.z, g.z), __fmul_rn(r.w, g.w)};
        float s = __fadd_rn(0.0f, __fmul_rn(r.x, r.x));
        s = __fadd_rn(s, __fmul_rn(r.y, r.y));
        s = __fadd_rn(s, __fmul_rn(r.z, r.z));
        s_s[p] = __fadd_rn(s, __fmul_rn(r.w, r.w));
    }
    __syncthreads();
    if (warp == 0) {
        float slot = 0.0f;
        for (int i = lane; i < n_partials; i += 32) slot = __fadd_rn(slot, s_s[i]);
        float slots[q8::kSlots];
#pragma unroll
        for (int s = 0; s < q8::kSlots; ++s) slots[s] = __shfl_sync(0xffffffffu, slot, s);
        if (lane == 0) shared_scale = q8::norm_scale_from_slots(slots, n, eps);
    }
    __syncthreads();
    const float scale = shared_scale;
    for (int unit0 = 4 * warp; unit0 < n_units; unit0 += 4 * kResidualWarps) {
        const float4 rw = rw_s[unit0 * q8::kUnit / 4 + lane];  // unit unit0 + lane / 8, elements 4 (lane % 8) ..
        const float4 x = {__fmul_rn(rw.x, scale), __fmul_rn(rw.y, scale), __fmul_rn(rw.z, scale),
                          __fmul_rn(rw.w, scale)};
        q8::quantize_units4(x, lane, unit0, xq + static_cast<size_t>(v) * n, xm + static_cast<size_t>(v) * n_units);
    }
}

bool overlaps(const void* a, uint64_t a_bytes, const void* b, uint64_t b_bytes) {
    const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
    return x < y + b_bytes && y < x + a_bytes;
}

}  // namespace

void q8_quantize_x(const float* X, int8_t* xq, q8::XMeta* xmeta, int n_vec, int n_in, Stream stream) {
    quantize<q8::XSource::plain>("q8_quantize_x", X, nullptr, 0.0f, xq, xmeta, n_vec, n_in, stream);
}

void q8_quantize_x_normed(const float* XW, const float* S, float eps, int8_t* xq, q8::XMeta* xmeta, int n_vec, int n_in,
                          Stream stream) {
    quantize<q8::XSource::normed>("q8_quantize_x_normed", XW, S, eps, xq, xmeta, n_vec, n_in, stream);
}

void q8_quantize_swiglu(const float* gate_up, int8_t* xq, q8::XMeta* xmeta, int n_vec, int n_ff, Stream stream) {
    quantize<q8::XSource::swiglu>("q8_quantize_swiglu", gate_up, nullptr, 0.0f, xq, xmeta, n_vec, n_ff, stream);
}

void q8_residual_quantize_normed(float* R, const float* Y, const float* w, float eps, int8_t* xq, q8::XMeta* xmeta,
                                 int n_vec, int n, Stream stream) {
    constexpr const char* fn = "q8_residual_quantize_normed";
    check_x(fn, n_vec, n, xq, xmeta, "n");
    if (n > kQ8ResidualMaxN)
        throw std::invalid_argument(std::string(fn) + ": n " + std::to_string(n) + " is above " +
                                    std::to_string(kQ8ResidualMaxN));
    check_aligned(fn, "R", R, 16);  // rows are n floats apart, n a multiple of 128: each row 16-byte aligned
    check_aligned(fn, "Y", Y, 16);
    check_aligned(fn, "w", w, 16);
    const uint64_t r_bytes = static_cast<uint64_t>(n_vec) * n * 4;
    if (overlaps(R, r_bytes, Y, r_bytes) || overlaps(R, r_bytes, w, uint64_t{4} * n) ||
        overlaps(R, r_bytes, xq, q8_xq_bytes(n_vec, n)) ||
        overlaps(R, r_bytes, xmeta, q8_xmeta_count(n_vec, n) * sizeof(q8::XMeta)))
        throw std::invalid_argument(std::string(fn) + ": R overlaps Y, w, xq or xmeta");
    const size_t shared = sizeof(float) * (static_cast<size_t>(n) + n / kNormRowsPerPartial);
    launch_kernel("q8 residual_quantize_kernel", residual_quantize_kernel,
                  LaunchShape{dim3(n_vec), dim3(kResidualWarps * 32), shared, stream}, R, Y, w, eps,
                  reinterpret_cast<uint8_t*>(xq), xmeta, n);
}

void q8_product(const Q8Matrix& W, const int8_t* xq, const q8::XMeta* xmeta, float* Y, int n_vec, Q8Kernel kernel,
                Stream stream) {
    const Q8Layout& l = W.layout;
    const Q8Layout expect = q8_layout(l.type, l.rows, l.n_in);  // validates type, rows and n_in
    if (expect.bytes != l.bytes || expect.sm_off != l.sm_off)
        throw std::invalid_argument("q8_product: the layout's offsets are not q8_layout's");
    check_x("q8_product", n_vec, l.n_in, xq, xmeta);
    check_aligned("q8_product", "W.data", W.data, 256);
    check_aligned("q8_product", "Y", Y, 4);
    const uint64_t y_bytes = static_cast<uint64_t>(n_vec) * l.rows * 4;
    if (overlaps(Y, y_bytes, xq, q8_xq_bytes(n_vec, l.n_in)) ||
        overlaps(Y, y_bytes, xmeta, q8_xmeta_count(n_vec, l.n_in) * sizeof(q8::XMeta)) ||
        overlaps(Y, y_bytes, W.data, l.bytes))
        throw std::invalid_argument("q8_product: Y overlaps W, xq or xmeta");
    const auto* d = static_cast<const uint8_t*>(W.data);
    const q8::MatView view{d + l.qs_off, d + l.qh_off, d + l.um_off, d + l.sm_off,      l.qs_row,
                           l.qh_row,     l.um_row,     l.sm_row,     l.n_in / q8::kUnit};
    const q8::ProductParams p{view, reinterpret_cast<const uint8_t*>(xq), xmeta, Y, l.n_in, l.rows, n_vec};
    const bool mma = kernel == Q8Kernel::mma || (kernel == Q8Kernel::automatic && n_vec > kQ8Dp4aMaxVectors);
    switch (l.type) {
        case TensorType::Q4_0: return product<TensorType::Q4_0>(p, mma, stream);
        case TensorType::Q4_1: return product<TensorType::Q4_1>(p, mma, stream);
        case TensorType::Q5_0: return product<TensorType::Q5_0>(p, mma, stream);
        case TensorType::Q8_0: return product<TensorType::Q8_0>(p, mma, stream);
        case TensorType::Q4_K: return product<TensorType::Q4_K>(p, mma, stream);
        case TensorType::Q5_K: return product<TensorType::Q5_K>(p, mma, stream);
        case TensorType::Q6_K: return product<TensorType::Q6_K>(p, mma, stream);
        default: throw std::invalid_argument("q8_product: type not in the q8 family");
    }
}

void q8_product_f32(const Q8Matrix& W, const float* X, float* Y, int n_vec, Stream stream) {
    const Q8Layout& l = W.layout;
    if (!q8_f32_supports(l.type))
        throw std::invalid_argument("q8_product_f32: type " + std::string(gguf::tensor_type_name(l.type)) +
                                    " is not in the f32 family");
    const Q8Layout expect = q8_layout(l.type, l.rows, l.n_in);
    if (expect.bytes != l.bytes || expect.sm_off != l.sm_off)
        throw std::invalid_argument("q8_product_f32: the layout's offsets are not q8_layout's");
    if (n_vec < 1 || n_vec > kQ8MaxVectors)
        throw std::invalid_argument("q8_product_f32: n_vec " + std::to_string(n_vec) + " outside 1.." +
                                    std::to_string(kQ8MaxVectors));
    check_aligned("q8_product_f32", "W.data", W.data, 256);
    check_aligned("q8_product_f32", "X", X, 16);
    check_aligned("q8_product_f32", "Y", Y, 4);
    const uint64_t y_bytes = static_cast<uint64_t>(n_vec) * l.rows * 4;
    if (overlaps(Y, y_bytes, X, static_cast<uint64_t>(n_vec) * l.n_in * 4) || overlaps(Y, y_bytes, W.data, l.bytes))
        throw std::invalid_argument("q8_product_f32: Y overlaps W or X");
    const auto* d = static_cast<const uint8_t*>(W.data);
    const q8::MatView view{d + l.qs_off, d + l.qh_off, d + l.um_off, d + l.sm_off,      l.qs_row,
                           l.qh_row,     l.um_row,     l.sm_row,     l.n_in / q8::kUnit};
    const q8::F32Params p{view, X, Y, l.n_in, l.rows, n_vec};
    switch (l.type) {
        case TensorType::Q4_0: return q8::launch_f32<TensorType::Q4_0, kF32RowsPerWarp, kRowsWarps, 1>(p, stream);
        case TensorType::Q8_0: return q8::launch_f32<TensorType::Q8_0, kF32RowsPerWarp, kRowsWarps, 1>(p, stream);
        case TensorType::Q4_K: return q8::launch_f32<TensorType::Q4_K, kF32RowsPerWarp, kRowsWarps, 1>(p, stream);
        default: return q8::launch_f32<TensorType::Q6_K, kF32RowsPerWarp, kRowsWarps, 1>(p, stream);
    }
}

}  // namespace loom::kernels
