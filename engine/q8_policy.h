// Which products the CUDA backend takes through the q8 int8 products (kernels/q8_matmul.h), in one place:
// the CUDA backend follows it, and the CPU backend's q8 emulation (a test option) reads it, so they cannot drift.
#pragma once

#include "gguf/tensor_type.h"
#include "kernels/q8_layout.h"
#include "kernels/q8_repack.h"

namespace loom::engine {

// Prefill parts up to this many rows go through matvec (one read of W for all of them), their rows
// quantized for the q8 products like decode rows; longer ones through the fp16 GEMM, x not quantized.
inline constexpr int kMaxPartMatvecRows = 8;

// Whether a layer matrix (never the logits' output projection) of `type` with rows of n_in is kept
// repacked for the q8 products: a q8 family type, n_in a multiple of 128 (of 256 for K-quants).
inline bool q8_eligible(gguf::TensorType type, int n_in) {
    const int multiple = kernels::q8::is_k_quant(type) ? 256 : 128;
    return kernels::q8_supports(type) && n_in > 0 && n_in % multiple == 0;
}

}  // namespace loom::engine
