// The CUDA backend's buffer tables: each workspace and KV-cache buffer's size, and their places in an arena.
#include "engine/cuda/buffer_table.h"

#include <stdexcept>

#include "kernels/attention.h"
#include "kernels/matvec.h"
#include "kernels/q8_matmul.h"

namespace loom::engine::cuda {

namespace {

uint64_t round_up(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

BufferSpec f32(const char* name, int64_t count) { return {name, Elem::f32, count}; }
BufferSpec bytes(const char* name, uint64_t count) { return {name, Elem::byte, static_cast<int64_t>(count)}; }

}  // namespace

uint64_t elem_bytes(Elem e) {
    switch (e) {
        case Elem::i32:
        case Elem::u32:
        case Elem::f32: return 4;
        case Elem::byte: break;
    }
    return 1;
}

ArenaLayout lay_out(std::span<const BufferSpec> buffers, uint64_t alignment) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        throw std::invalid_argument("arena alignment must be a power of two, not " + std::to_string(alignment));
    ArenaLayout layout;
    for (const BufferSpec& b : buffers) {
        if (b.count < 0)
            throw std::invalid_argument("buffer " + b.name + ": negative count " + std::to_string(b.count));
        const uint64_t start = round_up(layout.used, alignment);
        layout.offsets.push_back(start);
        layout.used = start + b.extent();
    }
    layout.reserved = round_up(layout.used, alignment);
    return layout;
}

WorkspaceTable workspace_table(const ModelConfig& c, const WorkspaceShape& s) {
    const int64_t M = s.max_tokens, D = s.decode_rows;
    const int64_t d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim(), ff = c.n_ff;
    WorkspaceTable t;
    t[index(Ws::step)] = {"step", Elem::i32, s.step_ints};
    t[index(Ws::inv_freq)] = f32("inv_freq", c.head_dim / 2);
    t[index(Ws::x)] = f32("x", M * d);
    t[index(Ws::h)] = f32("h", M * d);
    t[index(Ws::o)] = f32("o", M * d);
    t[index(Ws::hg)] = f32("hg", M * d);
    t[index(Ws::qkv)] = f32("qkv", M * (qd + 2 * kvd));
    t[index(Ws::att)] = f32("att", M * qd);
    t[index(Ws::gate_up)] = f32("gate_up", M * 2 * ff);
    t[index(Ws::act)] = f32("act", M * ff);
    t[index(Ws::logits)] = f32("logits", int64_t{s.logits_rows} * c.n_vocab);
    t[index(Ws::attn_ws)] = f32("attn_ws", s.attn_ws_floats);
    t[index(Ws::xw)] = f32("xw", D * d);
    t[index(Ws::norm_sums)] = f32("norm_sums", D * kernels::norm_partial_count(c.n_embd));
    t[index(Ws::attn_counters)] = {"attn_counters", Elem::u32,
                                   kernels::decode_attention_counters(s.decode_rows, c.n_head)};
    t[index(Ws::q8_x)] = bytes("q8_x", kernels::q8_xq_bytes(static_cast<int>(M), s.q8_width));
    t[index(Ws::q8_meta)] =
        bytes("q8_meta", kernels::q8_xmeta_count(static_cast<int>(M), s.q8_width) * sizeof(kernels::q8::XMeta));
    t[index(Ws::gemm)] = bytes("gemm", s.gemm_bytes);
    t[index(Ws::cublas)] = bytes("cublas", s.cublas_bytes);
    t[index(Ws::sampler)] = bytes("sampler", s.sampler_bytes);
    return t;
}

KvTable kv_table(const kernels::KvCacheLayout& layout, int max_seqs, int table_stride) {
    return {BufferSpec{"kv_cache", Elem::byte, layout.arena_bytes()},
            BufferSpec{"block_tables", Elem::i32, int64_t{max_seqs} * table_stride}};
}

KvCost kv_cost(kernels::KvCacheLayout layout, int max_seqs, int table_stride, uint64_t alignment) {
    layout.n_blocks = 1;
    const KvTable one_block = kv_table(layout, max_seqs, table_stride);
    return {one_block[static_cast<std::size_t>(Kv::cache)].bytes(),
            one_block[static_cast<std::size_t>(Kv::block_tables)].bytes(), kernels::kKvBlockTokens, alignment};
}

}  // namespace loom::engine::cuda
