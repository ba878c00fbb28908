// The CUDA backend's buffer tables (host-only): the plan's arena bytes are the tables' sums, and
// every buffer lies inside its arena, aligned, overlapping no other.
#include <cstdint>
#include <span>
#include <stdexcept>
#include <vector>

#include "catch.hpp"
#include "engine/cuda/buffer_table.h"
#include "engine/memory_budget.h"

using namespace loom;
using engine::cuda::BufferSpec;
using engine::cuda::Elem;
using engine::cuda::Ws;

namespace {

constexpr uint64_t kAlign = 256;

uint64_t round_up(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

engine::ModelConfig model(int d, int n_layer, int n_head, int n_head_kv, int head_dim, int ff, int vocab) {
    engine::ModelConfig c;
    c.n_embd = d;
    c.n_layer = n_layer;
    c.n_head = n_head;
    c.n_head_kv = n_head_kv;
    c.head_dim = head_dim;
    c.n_ff = ff;
    c.n_vocab = vocab;
    return c;
}

struct Case {
    const char* name;
    engine::ModelConfig cfg;
    engine::cuda::WorkspaceShape shape;
};

// stories260K-, SmolLM2-135M- and Llama-3-8B-sized models at small and large limits; kernel-reported
// scratch (attention splits, GEMM, cuBLAS, sampler) as plausible counts, some zero.
std::vector<Case> cases() {
    return {
        {"stories260K, 1 token", model(64, 5, 8, 4, 8, 172, 512), {1, 1, 1, 64, 40, 0, 23040, 32 << 20, 9000}},
        {"stories260K, 8 tokens", model(64, 5, 8, 4, 8, 172, 512), {8, 4, 4, 64, 77, 0, 23040, 32 << 20, 9000}},
        {"SmolLM2, 512 tokens",
         model(576, 30, 9, 3, 64, 1536, 49152),
         {512, 16, 16, 64, 1700, 9 * 16 * 66, 5 << 20, 32 << 20, 1 << 22}},
        {"Llama-3-8B, 2048 tokens",
         model(4096, 32, 32, 8, 128, 14336, 128256),
         {2048, 64, 64, 64, 6500, 64 * 32 * 32 * 130, uint64_t{130} << 20, 32 << 20, uint64_t{40} << 20, 14336}},
    };
}

// Every buffer starts aligned after the previous one's end and ends inside the reserved arena.
void check_placement(std::span<const BufferSpec> buffers, const engine::cuda::ArenaLayout& layout) {
    REQUIRE(layout.offsets.size() == buffers.size());
    uint64_t end = 0;
    for (size_t i = 0; i < buffers.size(); ++i) {
        INFO(buffers[i].name);
        CHECK(layout.offsets[i] % kAlign == 0);
        CHECK(layout.offsets[i] >= end);
        end = layout.offsets[i] + buffers[i].extent();
        CHECK(end <= layout.reserved);
    }
    CHECK(layout.used == end);
}

}  // namespace

TEST_CASE("the workspace plan is the sum of the workspace table, every buffer inside it", "[engine][cuda_tables]") {
    for (const Case& k : cases()) {
        INFO(k.name);
        const engine::cuda::WorkspaceTable t = engine::cuda::workspace_table(k.cfg, k.shape);
        uint64_t sum = 0;
        for (const BufferSpec& b : t) sum += round_up(b.extent());
        const engine::cuda::ArenaLayout layout = engine::cuda::lay_out(t, kAlign);
        CHECK(layout.reserved == sum);
        check_placement(t, layout);
    }
}

TEST_CASE("the workspace table holds what the forward pass indexes", "[engine][cuda_tables]") {
    const Case k = cases()[2];
    const engine::cuda::WorkspaceTable t = engine::cuda::workspace_table(k.cfg, k.shape);
    const auto bytes = [&](Ws b) { return t[engine::cuda::index(b)].bytes(); };
    const uint64_t M = 512, f = sizeof(float);
    CHECK(bytes(Ws::step) == 1700 * sizeof(int32_t));
    CHECK(bytes(Ws::inv_freq) == 32 * f);
    for (const Ws b : {Ws::x, Ws::h, Ws::o, Ws::hg}) CHECK(bytes(b) == M * 576 * f);
    CHECK(bytes(Ws::qkv) == M * (576 + 2 * 192) * f);  // q rows then K and V (fused or stacked)
    CHECK(bytes(Ws::att) == M * 576 * f);
    CHECK(bytes(Ws::gate_up) == M * 2 * 1536 * f);  // one buffer: pair layout, or gate then up
    CHECK(bytes(Ws::act) == M * 1536 * f);
    CHECK(bytes(Ws::logits) == 64 * 49152 * f);
    CHECK(bytes(Ws::xw) == 16 * 576 * f);
    CHECK(bytes(Ws::norm_sums) == 16 * 144 * f);  // norm_partial_count(576) = 144
    CHECK(bytes(Ws::attn_counters) == 16 * 9 * sizeof(unsigned));
    CHECK(bytes(Ws::q8_x) == 0);  // SmolLM2's shape here repacks nothing
    CHECK(bytes(Ws::q8_meta) == 0);
    CHECK(bytes(Ws::gemm) == k.shape.gemm_bytes);
    CHECK(bytes(Ws::cublas) == k.shape.cublas_bytes);
    CHECK(bytes(Ws::sampler) == k.shape.sampler_bytes);
    CHECK(t[engine::cuda::index(Ws::attn_counters)].elem == Elem::u32);
    CHECK(t[engine::cuda::index(Ws::step)].elem == Elem::i32);
}

TEST_CASE("batch-invariant mode sizes the decode rows' buffers for every token of a pass", "[engine][cuda_tables]") {
    Case k = cases()[2];
    k.shape.decode_rows = k.shape.max_tokens;  // every token a decode row
    const engine::cuda::WorkspaceTable t = engine::cuda::workspace_table(k.cfg, k.shape);
    const auto bytes = [&](Ws b) { return t[engine::cuda::index(b)].bytes(); };
    CHECK(bytes(Ws::xw) == uint64_t{512} * 576 * sizeof(float));
    CHECK(bytes(Ws::norm_sums) == uint64_t{512} * 144 * sizeof(float));
    CHECK(bytes(Ws::attn_counters) == uint64_t{512} * 9 * sizeof(unsigned));
    CHECK(bytes(Ws::x) == uint64_t{512} * 576 * sizeof(float));  // the pass's rows are as many as before
}

TEST_CASE("the q8 buffers hold max_tokens rows of the widest repacked input", "[engine][cuda_tables]") {
    const Case k = cases()[3];
    const engine::cuda::WorkspaceTable t = engine::cuda::workspace_table(k.cfg, k.shape);
    CHECK(t[engine::cuda::index(Ws::q8_x)].bytes() == uint64_t{2048} * 14336);                // int8 per element
    CHECK(t[engine::cuda::index(Ws::q8_meta)].bytes() == uint64_t{2048} * (14336 / 32) * 8);  // XMeta per 32
}

TEST_CASE("the KV plan's block cost is the KV table's, at any block count", "[engine][cuda_tables]") {
    for (const kernels::KvType type : {kernels::KvType::f16, kernels::KvType::f32}) {
        const kernels::KvCacheLayout shape{30, 0, 3, 64, type};
        const int max_seqs = 7, table_stride = 129;  // block tables of an odd size: the fixed part pads
        const engine::KvCost cost = engine::cuda::kv_cost(shape, max_seqs, table_stride, kAlign);
        CHECK(cost.fixed_bytes == uint64_t{max_seqs} * table_stride * sizeof(int32_t));
        for (const int blocks : {1, 3, 1000, 12345}) {
            INFO("blocks " << blocks << ", " << kernels::kv_type_name(type));
            kernels::KvCacheLayout layout = shape;
            layout.n_blocks = blocks;
            const engine::cuda::KvTable t = engine::cuda::kv_table(layout, max_seqs, table_stride);
            const engine::cuda::ArenaLayout arena = engine::cuda::lay_out(t, kAlign);
            CHECK(arena.reserved == engine::kv_bytes(cost, blocks));
            CHECK(t[0].bytes() == static_cast<uint64_t>(layout.arena_bytes()));
            check_placement(t, arena);
        }
    }
}

TEST_CASE("lay_out gives empty buffers an address of their own and refuses bad input", "[engine][cuda_tables]") {
    const std::vector<BufferSpec> buffers{{"a", Elem::f32, 0}, {"b", Elem::byte, 300}, {"c", Elem::i32, 0}};
    const engine::cuda::ArenaLayout layout = engine::cuda::lay_out(buffers, kAlign);
    CHECK(layout.offsets == std::vector<uint64_t>{0, 256, 768});
    CHECK(layout.used == 769);
    CHECK(layout.reserved == 1024);
    CHECK_THROWS_AS(engine::cuda::lay_out(buffers, 96), std::invalid_argument);
    const std::vector<BufferSpec> negative{{"n", Elem::f32, -1}};
    CHECK_THROWS_WITH(engine::cuda::lay_out(negative, kAlign), loom::test::contains("buffer n: negative count -1"));
}
