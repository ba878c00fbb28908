// Quantized matrix-vector kernels: one warp per row of W, block formats decoded in registers;
// plain, normed (RMSNorm scale applied to the sums) and residual (R += W x, next norm's inputs).
#include "kernels/matvec.h"

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/format_dispatch.cuh"
#include "kernels/launch.cuh"
#include "kernels/reduce.cuh"
#include "kernels/swiglu.cuh"

namespace loom::kernels {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kThreads = kWarpsPerBlock * kWarpSize;
// A residual product's square sums are its blocks' sums: one partial per block of rows.
static_assert(kWarpsPerBlock == kNormRowsPerPartial && kWarpsPerBlock == 2 * kSwigluPairRows);

enum class Mode { plain, normed, normed_swiglu, residual };

struct Params {
    const uint8_t* W;
    const float* X;
    float* Y;  // residual: R, read and written; normed_swiglu: (n_vec, n_out / 2)
    int n_in, n_out, n_vec;
    const float* S_in = nullptr;  // normed: square sums of the vectors X was made from ...
    int n_partials_in = 0;        // ... norm_partial_count(n_in) per vector
    float eps = 0;
    const float* w = nullptr;  // residual: the next norm's weight (n_out) ...
    float* RW = nullptr;       // ... R ⊙ w ...
    float* S_out = nullptr;    // ... and R's square sums, gridDim.x per vector
};

// Vectors per block: blockIdx.y picks a group of them, so a batch of up to kMaxMatvecVectors is one
// launch whose blocks of a row range share the weights through L2.
constexpr int kVectorsPerBlock = 8;

// Asks L2 for a row's weight bytes before the kernel waits on the previous one: weights are never
// written, and under programmatic launch the fetch overlaps the previous kernel's tail.
__device__ __forceinline__ void prefetch_to_l2(const uint8_t* p, int bytes, int lane) {
    for (int off = lane * 32; off < bytes; off += 32 * kWarpSize)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(p + off));
}

// What a block does around its dot products: reads the mode's per-vector inputs (issued right after
// the wait, so they overlap the weights' arrival), then reduces and stores. Pointers are offset to
// the block's vector group; lane t owns vector t of it for the loads and stores.
template <int MaxVec, Mode M>
struct Epilogue {
    const Params& p;
    int v0, n_vec, row;
    bool active;
    // normed: the first kEarly partial sums of each vector for this lane (more are read after the
    // dot products; either way a lane adds its partials in index order, so the result does not
    // depend on MaxVec).
    static constexpr int kEarly = MaxVec >= 8 ? 1 : 8 / MaxVec;
    float early[MaxVec][kEarly];
    float r_old = 0, w_row = 0;  // residual: lane t's R element and the norm weight of the row

    __device__ __forceinline__ Epilogue(const Params& params, int row_, bool active_)
        : p(params), v0(blockIdx.y * kVectorsPerBlock), row(row_), active(active_) {
        n_vec = min(kVectorsPerBlock, p.n_vec - v0);
        const int lane = threadIdx.x % kWarpSize;
        if constexpr (M == Mode::normed ||
                      M == Mode::normed_swiglu) {  // each vector's partial sums spread over the lanes
            const float* s = p.S_in + static_cast<size_t>(v0) * p.n_partials_in;
#pragma unroll
            for (int t = 0; t < MaxVec; ++t)
#pragma unroll
                for (int e = 0; e < kEarly; ++e) {
                    const int i = lane + e * kWarpSize;
                    early[t][e] = t < n_vec && i < p.n_partials_in
                                      ? __ldg(s + static_cast<size_t>(t) * p.n_partials_in + i)
                                      : 0.f;
                }
        }
        if constexpr (M == Mode::residual) {
            if (active && lane < n_vec) {
                r_old = p.Y[static_cast<size_t>(v0 + lane) * p.n_out + row];
                w_row = __ldg(p.w + row);
            }
        }
    }

    // normed: 1 / sqrt(mean square + eps) of each vector, to every lane. The remaining partials of
    // all vectors are loaded in one loop, so their latencies overlap.
    __device__ __forceinline__ void norm_scales(float (&scale)[MaxVec]) const {
        const int lane = threadIdx.x % kWarpSize;
#pragma unroll
        for (int t = 0; t < MaxVec; ++t) {
            scale[t] = 0;
#pragma unroll
            for (int e = 0; e < kEarly; ++e) scale[t] += early[t][e];
        }
        const float* s = p.S_in + static_cast<size_t>(v0) * p.n_partials_in;
        for (int i = lane + kEarly * kWarpSize; i < p.n_partials_in; i += kWarpSize) {
#pragma unroll
            for (int t = 0; t < MaxVec; ++t)
                if (t < n_vec) scale[t] += __ldg(s + static_cast<size_t>(t) * p.n_partials_in + i);
        }
#pragma unroll
        for (int t = 0; t < MaxVec; ++t)
            scale[t] = 1.0f / sqrtf(warp_sum(scale[t]) / static_cast<float>(p.n_in) + p.eps);
    }

    // Every thread of the block calls it (residual mode holds a barrier).
    __device__ __forceinline__ void finish(const float (&acc)[MaxVec]) {
        const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
        float scale[MaxVec];
        if constexpr (M == Mode::normed || M == Mode::normed_swiglu) norm_scales(scale);
        float mine = 0;  // lane t: vector t's dot product
#pragma unroll
        for (int t = 0; t < MaxVec; ++t) {
            if (t < n_vec) {
                float sum = warp_sum(acc[t]);
                if constexpr (M == Mode::normed || M == Mode::normed_swiglu) sum *= scale[t];
                if (lane == t) mine = sum;
            }
        }
        const size_t i = static_cast<size_t>(v0 + lane) * p.n_out + row;
        if constexpr (M == Mode::residual) {
            __shared__ float squares[kVectorsPerBlock][kWarpsPerBlock];
            float square = 0;
            if (active && lane < n_vec) {
                const float r = r_old + mine;
                p.Y[i] = r;
                p.RW[i] = r * w_row;
                square = r * r;
            }
            if (lane < n_vec) squares[lane][warp] = square;
            __syncthreads();
            const int t = threadIdx.x;
            if (t < n_vec) {
                float s = 0;
                for (int w = 0; w < kWarpsPerBlock; ++w) s += squares[t][w];
                p.S_out[static_cast<size_t>(v0 + t) * gridDim.x + blockIdx.x] = s;
            }
        } else if constexpr (M == Mode::normed_swiglu) {
            // Warps 0, 1: gate rows 2j, 2j+1; warps 2, 3: up rows 2j, 2j+1 (n_out % 4 == 0: all active).
            __shared__ float rows[kVectorsPerBlock][kWarpsPerBlock];
            if (lane < n_vec) rows[lane][warp] = mine;
            __syncthreads();
            const int t = threadIdx.x / kSwigluPairRows, k = threadIdx.x % kSwigluPairRows;
            if (t < n_vec) {
                const float g = rows[t][k], u = rows[t][kSwigluPairRows + k];
                p.Y[static_cast<size_t>(v0 + t) * (p.n_out / 2) + blockIdx.x * kSwigluPairRows + k] =
                    swiglu_value(g, u);
            }
        } else {
            if (active && lane < n_vec) p.Y[i] = mine;
        }
    }
};

// One warp per output row. The row's blocks are split into units of (block, sub); lane u of a
// pass takes unit u, so a pass covers 32 / kLanes consecutive blocks and its loads are contiguous.
// Decoded weights stay in registers and meet the block's vectors (MaxVec unrolled slots; slots
// beyond the group's count are skipped warp-uniformly).
template <class Format, int MaxVec, Mode M>
__global__ void __launch_bounds__(kThreads) matvec_kernel(const Params p) {
    const int lane = threadIdx.x % kWarpSize;
    const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / kWarpSize;
    const bool active = row < p.n_out;  // warp-uniform
    constexpr int kBlocksPerPass = kWarpSize / Format::kLanes;
    const int n_blocks = active ? p.n_in / Format::kElems : 0;
    const uint8_t* w_row = p.W + static_cast<size_t>(row) * n_blocks * Format::kBytes;
    prefetch_to_l2(w_row, n_blocks * Format::kBytes, lane);
    wait_for_previous_kernel();
    Epilogue<MaxVec, M> epilogue(p, row, active);
    const int sub = lane % Format::kLanes;
    const float* X = p.X + static_cast<size_t>(epilogue.v0) * p.n_in;

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
            if (t < epilogue.n_vec) {  // an `if`, not a `break`: lets the x loads be hoisted (no spills)
                const float* x = x_block + static_cast<size_t>(t) * p.n_in;
#pragma unroll
                for (int g = 0; g < Format::kValues / 4; ++g) {
                    const float4 xv = __ldg(reinterpret_cast<const float4*>(x + Format::offset(sub, g)));
                    acc[t] += w[4 * g] * xv.x + w[4 * g + 1] * xv.y + w[4 * g + 2] * xv.z + w[4 * g + 3] * xv.w;
                }
            }
        }
    }
    epilogue.finish(acc);
}

// Plain-type (F32, F16, BF16) rows of any length or alignment: one element per lane and step.
template <class Format, int MaxVec, Mode M>
__global__ void __launch_bounds__(kThreads) matvec_plain_any_kernel(const Params p) {
    wait_for_previous_kernel();
    const int lane = threadIdx.x % kWarpSize;
    const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / kWarpSize;
    const bool active = row < p.n_out;
    Epilogue<MaxVec, M> epilogue(p, row, active);
    const int n_in = active ? p.n_in : 0;
    const uint8_t* w_row = p.W + static_cast<size_t>(row) * n_in * Format::kElemBytes;
    const float* X = p.X + static_cast<size_t>(epilogue.v0) * p.n_in;
    float acc[MaxVec] = {};
    for (int i = lane; i < n_in; i += kWarpSize) {
        const float w = Format::scalar(w_row, i);
#pragma unroll
        for (int t = 0; t < MaxVec; ++t) {
            if (t >= epilogue.n_vec) break;
            acc[t] += w * __ldg(X + static_cast<size_t>(t) * p.n_in + i);
        }
    }
    epilogue.finish(acc);
}

// AnyLength: the plain-type kernel for rows that do not split into 16-byte blocks.
template <class Format, int MaxVec, Mode M, bool AnyLength>
void launch(const Params& p, Stream stream) {
    const dim3 grid(static_cast<unsigned>((p.n_out + kWarpsPerBlock - 1) / kWarpsPerBlock),
                    static_cast<unsigned>((p.n_vec + kVectorsPerBlock - 1) / kVectorsPerBlock));
    const LaunchShape shape{grid, kThreads, 0, stream};
    if constexpr (AnyLength)
        launch_kernel("matvec_plain_any_kernel", matvec_plain_any_kernel<Format, MaxVec, M>, shape, p);
    else
        launch_kernel("matvec_kernel", matvec_kernel<Format, MaxVec, M>, shape, p);
}

// The smallest unrolled vector count (1, 2, 4, 8) that holds a block's group of vectors.
template <class Format, Mode M, bool AnyLength>
void launch_vectors(const Params& p, Stream stream) {
    if (p.n_vec == 1)
        launch<Format, 1, M, AnyLength>(p, stream);
    else if (p.n_vec == 2)
        launch<Format, 2, M, AnyLength>(p, stream);
    else if (p.n_vec <= 4)
        launch<Format, 4, M, AnyLength>(p, stream);
    else
        launch<Format, kVectorsPerBlock, M, AnyLength>(p, stream);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <Mode M>
void run(gguf::TensorType type, const Params& p, Stream stream) {
    const std::string type_name(gguf::tensor_type_name(type));
    if (!matvec_supports(type)) throw std::invalid_argument("matvec: no kernel for weight type " + type_name);
    if (p.n_vec < 1 || p.n_vec > kMaxMatvecVectors)
        throw std::invalid_argument("matvec: n_vec " + std::to_string(p.n_vec) + " is outside 1.." +
                                    std::to_string(kMaxMatvecVectors));
    const auto block = static_cast<int>(gguf::tensor_type_info(type).block_elems);
    if (p.n_in <= 0 || p.n_out < 0 || p.n_in % block != 0)
        throw std::invalid_argument("matvec: n_in " + std::to_string(p.n_in) + " must be a positive multiple of the " +
                                    type_name + " block size " + std::to_string(block) + " (n_out " +
                                    std::to_string(p.n_out) + ")");
    if (!aligned16(p.W) || !aligned16(p.X)) throw std::invalid_argument("matvec: W and X must be 16-byte aligned");
    if (p.n_out == 0) return;

    visit_block_format(type, [&](auto tag) {
        using Format = typename decltype(tag)::Format;
        if constexpr (Format::kPlain) {
            if (p.n_in % Format::kElems != 0) {
                launch_vectors<Format, M, true>(p, stream);
                return;
            }
        }
        launch_vectors<Format, M, false>(p, stream);
    });
}

// RW = R ⊙ w and R's square sums, in the order matvec_residual's blocks add them (AddY: after R += Y, the
// residual add of a product that wrote plain Y). Explicitly rounded ops: no FMA contraction, so the bits
// are matvec_residual's, whose squares meet in shared memory. One thread per partial owns its elements,
// so R_out == R is updated in place without a race (R_out: null unless AddY).
static_assert(kVectorsPerBlock <= kWarpSize);
template <bool AddY>
__global__ void __launch_bounds__(256)
    norm_inputs_kernel(const float* R, const float* __restrict__ Y, float* R_out, const float* __restrict__ w,
                       float* __restrict__ RW, float* __restrict__ S, int n_vec, int n, int n_partials) {
    wait_for_previous_kernel();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_vec * n_partials) return;
    const int t = i / n_partials, part = i % n_partials;
    float s = 0;
    for (int k = 0; k < kNormRowsPerPartial; ++k) {
        const int j = part * kNormRowsPerPartial + k;
        float square = 0;
        if (j < n) {
            const size_t e = static_cast<size_t>(t) * n + j;
            float r = R[e];
            if constexpr (AddY) {
                r = __fadd_rn(r, Y[e]);
                R_out[e] = r;
            }
            RW[e] = __fmul_rn(r, w[j]);
            square = __fmul_rn(r, r);
        }
        s = __fadd_rn(s, square);
    }
    S[i] = s;
}

template <bool AddY>
void launch_norm_inputs(const char* fn, const float* R, const float* Y, float* R_out, const float* w, float* RW,
                        float* S, int n_vec, int n, Stream stream) {
    if (n_vec < 0 || n <= 0)
        throw std::invalid_argument(std::string(fn) + ": n_vec " + std::to_string(n_vec) + ", n " + std::to_string(n));
    const int n_partials = norm_partial_count(n);
    const int total = n_vec * n_partials;
    if (total == 0) return;
    launch_kernel("norm_inputs_kernel", norm_inputs_kernel<AddY>,
                  {dim3(static_cast<unsigned>((total + 255) / 256)), 256, 0, stream}, R, Y, R_out, w, RW, S, n_vec, n,
                  n_partials);
}

}  // namespace

bool matvec_supports(gguf::TensorType type) { return has_block_format(type); }

void matvec(gguf::TensorType type, const void* W, const float* X, float* Y, int n_in, int n_out, int n_vec,
            Stream stream) {
    run<Mode::plain>(type, Params{static_cast<const uint8_t*>(W), X, Y, n_in, n_out, n_vec}, stream);
}

void matvec_normed(gguf::TensorType type, const void* W, const float* XW, const float* S, float eps, float* Y, int n_in,
                   int n_out, int n_vec, Stream stream) {
    Params p{static_cast<const uint8_t*>(W), XW, Y, n_in, n_out, n_vec};
    p.S_in = S;
    p.n_partials_in = norm_partial_count(n_in);
    p.eps = eps;
    run<Mode::normed>(type, p, stream);
}

void matvec_normed_swiglu(gguf::TensorType type, const void* W, const float* XW, const float* S, float eps, float* Y,
                          int n_in, int n_out, int n_vec, Stream stream) {
    if (n_out % (2 * kSwigluPairRows) != 0)
        throw std::invalid_argument("matvec_normed_swiglu: n_out " + std::to_string(n_out) + " is not a multiple of 4");
    Params p{static_cast<const uint8_t*>(W), XW, Y, n_in, n_out, n_vec};
    p.S_in = S;
    p.n_partials_in = norm_partial_count(n_in);
    p.eps = eps;
    run<Mode::normed_swiglu>(type, p, stream);
}

void matvec_residual(gguf::TensorType type, const void* W, const float* X, float* R, const float* w, float* RW,
                     float* S, int n_in, int n_out, int n_vec, Stream stream) {
    Params p{static_cast<const uint8_t*>(W), X, R, n_in, n_out, n_vec};
    p.w = w;
    p.RW = RW;
    p.S_out = S;
    run<Mode::residual>(type, p, stream);
}

void norm_inputs(const float* R, const float* w, float* RW, float* S, int n_vec, int n, Stream stream) {
    launch_norm_inputs<false>("norm_inputs", R, nullptr, nullptr, w, RW, S, n_vec, n, stream);
}

void residual_norm_inputs(float* R, const float* Y, const float* w, float* RW, float* S, int n_vec, int n,
                          Stream stream) {
    // R is read and written in place: an output or Y sharing its memory would read R after it changed.
    const auto overlaps_r = [&](const void* p, int64_t count) {
        const auto r = reinterpret_cast<uintptr_t>(R), q = reinterpret_cast<uintptr_t>(p);
        const auto r_bytes = static_cast<uintptr_t>(int64_t{n_vec} * n * 4),
                   q_bytes = static_cast<uintptr_t>(count * 4);
        return r < q + q_bytes && q < r + r_bytes;
    };
    if (n_vec > 0 && n > 0 &&
        (overlaps_r(Y, int64_t{n_vec} * n) || overlaps_r(RW, int64_t{n_vec} * n) ||
         overlaps_r(S, int64_t{n_vec} * norm_partial_count(n))))
        throw std::invalid_argument("residual_norm_inputs: Y, RW or S overlaps R");
    launch_norm_inputs<true>("residual_norm_inputs", R, Y, R, w, RW, S, n_vec, n, stream);
}

}  // namespace loom::kernels
