// RoPE kernel: one thread block per token; cos/sin per pair computed once, shared by all heads.
#include "kernels/rope.h"

#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/launch.cuh"
#include "kernels/rope.cuh"

namespace loom::kernels {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    rope_kernel(float* q, float* k, int n_head, int n_head_kv, int head_dim, int64_t q_row_stride, int64_t k_row_stride,
                const int32_t* __restrict__ positions, const float* __restrict__ inv_freq, bool neox) {
    wait_for_previous_kernel();
    extern __shared__ float2 cos_sin[];  // head_dim / 2 entries
    const int token = blockIdx.x;
    rope_angles(cos_sin, head_dim / 2, positions[token], inv_freq);
    __syncthreads();
    rope_rotate_token(q + token * q_row_stride, k + token * k_row_stride, n_head, n_head_kv, head_dim, cos_sin, neox);
}

}  // namespace

void rope(float* q, float* k, int n_tokens, int n_head, int n_head_kv, int head_dim, int64_t q_row_stride,
          int64_t k_row_stride, const int32_t* positions, const float* inv_freq, RopeStyle style, Stream stream) {
    if (n_tokens < 0 || n_head < 0 || n_head_kv < 0 || head_dim <= 0 || head_dim % 2 != 0 ||
        q_row_stride < static_cast<int64_t>(n_head) * head_dim ||
        (n_head_kv > 0 && (k == nullptr || k_row_stride < static_cast<int64_t>(n_head_kv) * head_dim)))
        throw std::invalid_argument("rope: bad shape (n_tokens " + std::to_string(n_tokens) + ", n_head " +
                                    std::to_string(n_head) + ", n_head_kv " + std::to_string(n_head_kv) +
                                    ", head_dim " + std::to_string(head_dim) + ", strides " +
                                    std::to_string(q_row_stride) + "/" + std::to_string(k_row_stride) + ")");
    if (n_tokens == 0 || n_head + n_head_kv == 0) return;
    const size_t shared_bytes = static_cast<size_t>(head_dim / 2) * sizeof(float2);
    launch_kernel("rope_kernel", rope_kernel, {n_tokens, kThreads, shared_bytes, stream}, q, k, n_head, n_head_kv,
                  head_dim, q_row_stride, k_row_stride, positions, inv_freq, style == RopeStyle::NeoX);
}

}  // namespace loom::kernels
