// The CUDA backend's device buffers declared once: name, element type and count of each workspace
// and KV-cache buffer, and where a list of buffers lies in its arena. Host-only (no CUDA), so the
// VRAM plan's byte counts and the binding of pointers come from the same table and are testable.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/memory_budget.h"
#include "engine/model_config.h"
#include "kernels/kv_cache.h"

namespace loom::engine::cuda {

enum class Elem { byte, i32, u32, f32 };

uint64_t elem_bytes(Elem e);

// One buffer of an arena.
struct BufferSpec {
    std::string name;
    Elem elem = Elem::byte;
    int64_t count = 0;  // elements

    uint64_t bytes() const { return static_cast<uint64_t>(count) * elem_bytes(elem); }
    // What the arena hands out: at least one byte, so every buffer has an address of its own.
    uint64_t extent() const { return bytes() > 0 ? bytes() : 1; }
};

// Buffers placed one after another in an arena, each start rounded up to `alignment`, as
// kernels::VramAllocator places them when asked in list order.
struct ArenaLayout {
    std::vector<uint64_t> offsets;  // each buffer's first byte, from the arena's start
    uint64_t used = 0;              // the end of the last buffer
    uint64_t reserved = 0;          // the arena to reserve: used rounded up to the alignment
};

// Throws std::invalid_argument for a negative count or an alignment that is not a power of two.
ArenaLayout lay_out(std::span<const BufferSpec> buffers, uint64_t alignment);

// The workspace buffers, in the order they are allocated. Indexes into WorkspaceTable.
enum class Ws {
    step,           // i32: the staged step's arrays (the backend's StepLayout)
    inv_freq,       // f32: RoPE frequencies, head_dim / 2
    x,              // f32: hidden states, (max_tokens, n_embd)
    h,              // f32: normed hidden states, (max_tokens, n_embd)
    o,              // f32: a product's output, (max_tokens, n_embd)
    hg,             // f32: gathered rows, (max_tokens, n_embd)
    qkv,            // f32: (max_tokens, q_dim + 2 kv_dim)
    att,            // f32: attention output, (max_tokens, q_dim)
    gate_up,        // f32: (max_tokens, 2 n_ff)
    act,            // f32: SwiGLU output, (max_tokens, n_ff)
    logits,         // f32: (logits_rows, n_vocab)
    attn_ws,        // f32: decode attention's split partials
    xw,             // f32: decode rows' fused norm inputs, (decode_rows, n_embd)
    norm_sums,      // f32: their square sums, (decode_rows, norm_partial_count(n_embd))
    attn_counters,  // u32: decode attention's split arrivals
    q8_x,           // bytes: rows quantized for the q8 products, (max_tokens, widest input) int8
    q8_meta,        // bytes: their per-32 scales, (max_tokens, widest input / 32) q8::XMeta
    gemm,           // bytes: the GEMM's fp16 operands; at load, the file-format staging of repacked matrices
    cublas,         // bytes: cuBLAS's workspace
    sampler,        // bytes: the CudaSampler's device buffers
};
inline constexpr std::size_t kWorkspaceBuffers = static_cast<std::size_t>(Ws::sampler) + 1;
using WorkspaceTable = std::array<BufferSpec, kWorkspaceBuffers>;
constexpr std::size_t index(Ws w) { return static_cast<std::size_t>(w); }

// What the workspace's sizes depend on besides the model: the batch limits, and the scratch the
// kernels and the sampler report through their own sizing functions (CUDA code, so passed in).
struct WorkspaceShape {
    int max_tokens = 0;  // rows per pass
    int max_seqs = 0;
    int decode_rows = 0;  // decode rows a pass may hold: max_seqs, or max_tokens in batch-invariant mode
    int logits_rows = 0;
    int64_t step_ints = 0;       // the staged step's int32 count
    int64_t attn_ws_floats = 0;  // kernels::decode_attention_workspace_floats
    uint64_t gemm_bytes = 0;     // the largest kernels::gemm_workspace_bytes of the layers' matrices
    uint64_t cublas_bytes = 0;   // kernels::GemmContext::cublas_workspace_bytes()
    uint64_t sampler_bytes = 0;  // CudaSampler::device_bytes
    int q8_width = 0;            // the widest input of a q8-repacked matrix (0: none)
};

WorkspaceTable workspace_table(const ModelConfig& c, const WorkspaceShape& shape);

// The KV-cache arena's buffers, in allocation order.
enum class Kv { cache, block_tables };
using KvTable = std::array<BufferSpec, 2>;

// layout: the cache (bytes of layout.type); block tables: max_seqs rows of table_stride int32.
KvTable kv_table(const kernels::KvCacheLayout& layout, int max_seqs, int table_stride);

// The KV cache's cost per block and fixed part, from kv_table, for kv_blocks_within (layout's
// n_blocks is ignored).
KvCost kv_cost(kernels::KvCacheLayout layout, int max_seqs, int table_stride, uint64_t alignment);

}  // namespace loom::engine::cuda
