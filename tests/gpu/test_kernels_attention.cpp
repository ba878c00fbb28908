// Paged KV cache write, decode and prefill attention on the GPU against engine::cpu::attention.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "catch.hpp"
#include "engine/cpu/cpu_ops.h"
#include "gguf/half.h"
#include "kernel_cases/attention_cases.h"
#include "kernel_test_support.h"
#include "kernels/attention.h"
#include "kernels/q8_repack.h"
#include "kernels/q8_matmul.h"
#include "kernels/kv_cache.h"

using namespace loom;
using test::DeviceBuffer;

namespace {

using kcases::Heads;
using kcases::heads_name;
using kcases::kAttentionMaxNmse;
using kcases::kLlama;
using kcases::kSmol;
using kcases::kTiny;
constexpr int kLayer = 1;  // of 2: layer 0 must stay untouched, which checks the layer offsets

// Sequences of the given lengths in one paged cache (kcases::paged_inputs: fused [q | k | v] rows,
// shuffled block tables with spare blocks); the k and v parts are stored with kv_cache_write, and
// the arena is checked bit-exact against the host fp16 conversion (or the f32 values), untouched
// elements still poisoned.
struct PagedCase : kcases::PagedInputs {
    Heads heads;
    kernels::KvType type;
    std::vector<int> lens;
    kernels::KvCacheLayout layout;
    std::unique_ptr<DeviceBuffer<uint16_t>> arena;  // 16-bit words: one per f16 value, two per f32
    std::unique_ptr<DeviceBuffer<int32_t>> d_tables;

    PagedCase(const Heads& h, std::vector<int> seq_lens, uint32_t seed, test::TestStream& stream,
              kernels::KvType kv_type = kernels::KvType::f16)
        : kcases::PagedInputs(kcases::paged_inputs(h, seq_lens, seed, kv_type)),
          heads(h),
          type(kv_type),
          lens(std::move(seq_lens)),
          layout{2, n_blocks, h.n_head_kv, h.head_dim, kv_type} {
        arena = std::make_unique<DeviceBuffer<uint16_t>>(static_cast<size_t>(layout.arena_bytes() / 2));
        d_tables = std::make_unique<DeviceBuffer<int32_t>>(tables);
        arena->poison();
        DeviceBuffer<float> d_all(all_rows);
        DeviceBuffer<int32_t> d_pos(positions), d_seq(token_seq);
        kernels::kv_cache_write(d_all.get() + q_dim, d_all.get() + q_dim + kv_dim, static_cast<int>(positions.size()),
                                F, F, d_pos.get(), d_seq.get(), d_tables->get(), table_stride, layer(), stream.get());
        check_arena();
    }
    kernels::KvLayer layer() const { return kernels::kv_layer(arena->get(), layout, kLayer); }

    // Stores value x at element `at` of an arena image of 16-bit words.
    void put(std::vector<uint16_t>& words, int64_t at, float x) const {
        if (type == kernels::KvType::f32)
            std::memcpy(&words[static_cast<size_t>(2 * at)], &x, sizeof(float));
        else
            words[static_cast<size_t>(at)] = gguf::float_to_half(x);
    }

    void check_arena() const {
        std::vector<uint16_t> expect(static_cast<size_t>(layout.arena_bytes() / 2), 0xFFFF);
        const int64_t B = kernels::kKvBlockTokens, hd = heads.head_dim;
        for (size_t s = 0; s < lens.size(); ++s)
            for (int p = 0; p < lens[s]; ++p)
                for (int e = 0; e < kv_dim; ++e) {
                    const int block = tables[s * table_stride + p / B];
                    const int64_t at =
                        ((static_cast<int64_t>(block) * heads.n_head_kv + e / hd) * B + p % B) * hd + e % hd;
                    const float* row = rows[s].data() + static_cast<size_t>(p) * F;
                    put(expect, layout.k_offset(kLayer) + at, row[q_dim + e]);
                    put(expect, layout.v_offset(kLayer) + at, row[q_dim + kv_dim + e]);
                }
        const auto got = arena->download();
        size_t mismatches = 0;
        for (size_t i = 0; i < got.size(); ++i) mismatches += got[i] == expect[i] ? 0 : 1;
        std::printf("[exact] kv_cache_write %s %zu seqs, %zu mismatches\n", heads_name(heads, type).c_str(),
                    lens.size(), mismatches);
        CHECK(mismatches == 0);
        CHECK(arena->guard_intact());
    }
};

void check_decode(const kcases::DecodeCase& dc) {
    const Heads& h = dc.heads;
    const std::vector<int>& lens = dc.lens;
    const kernels::KvType type = dc.type;
    INFO(dc.name() << " " << heads_name(h, type));
    test::TestStream stream;
    PagedCase c(h, lens, dc.seed, stream, type);
    const int n_seq = static_cast<int>(lens.size());
    // Query row r belongs to sequence slot[r] (reversed, so the seq_slots indirection is exercised),
    // and the grid is sized for one split more than the longest sequence needs, as a CUDA graph
    // sized for the whole context would be.
    const int max_len = *std::max_element(lens.begin(), lens.end()) + kernels::kDecodeSplitTokens;
    std::vector<int32_t> slot(static_cast<size_t>(n_seq)), row_lens(static_cast<size_t>(n_seq));
    std::vector<float> q(static_cast<size_t>(n_seq) * c.F);
    for (int r = 0; r < n_seq; ++r) {
        const int s = n_seq - 1 - r;
        slot[r] = s;
        row_lens[r] = lens[s];
        std::copy_n(c.rows[s].data() + static_cast<size_t>(lens[s] - 1) * c.F, c.F,
                    q.data() + static_cast<size_t>(r) * c.F);
    }
    DeviceBuffer<float> d_q(q);
    DeviceBuffer<int32_t> d_lens(row_lens);
    DeviceBuffer<int32_t> d_slots(slot);
    const int64_t ws = kernels::decode_attention_workspace_floats(n_seq, h.n_head, h.head_dim, max_len);
    DeviceBuffer<float> d_ws(static_cast<size_t>(std::max<int64_t>(ws, 1)));
    d_ws.poison();  // the guard check below needs a poisoned tail
    DeviceBuffer<uint32_t> d_counters(
        std::vector<uint32_t>(static_cast<size_t>(kernels::decode_attention_counters(n_seq, h.n_head)), 0u));
    DeviceBuffer<float> d_out(static_cast<size_t>(n_seq) * c.q_dim);
    d_out.poison();
    kernels::decode_attention(d_q.get(), c.F, d_out.get(), c.q_dim, n_seq, h.n_head, d_lens.get(), max_len,
                              d_slots.get(), c.d_tables->get(), c.table_stride, c.layer(),
                              ws > 0 ? d_ws.get() : nullptr, d_counters.get(), stream.get());
    const auto out = d_out.download();
    CHECK(test::count_unwritten(out) == 0);
    CHECK(d_out.guard_intact());
    // The split counters are left at zero, so the same call again gives the same bits.
    for (const uint32_t counter : d_counters.download()) CHECK(counter == 0);
    d_out.poison();
    kernels::decode_attention(d_q.get(), c.F, d_out.get(), c.q_dim, n_seq, h.n_head, d_lens.get(), max_len,
                              d_slots.get(), c.d_tables->get(), c.table_stride, c.layer(),
                              ws > 0 ? d_ws.get() : nullptr, d_counters.get(), stream.get());
    CHECK(std::memcmp(d_out.download().data(), out.data(), out.size() * sizeof(float)) == 0);
    CHECK(d_ws.guard_intact());
    for (int r = 0; r < n_seq; ++r) {
        const int s = slot[r];
        const auto ref = kcases::attention_reference(h, q.data() + static_cast<size_t>(r) * c.F, c.kref[s].data(),
                                                     c.vref[s].data(), 1, lens[s] - 1);
        const std::vector<float> got(out.begin() + static_cast<ptrdiff_t>(r) * c.q_dim,
                                     out.begin() + static_cast<ptrdiff_t>(r + 1) * c.q_dim);
        const double err = test::nmse(got, ref);
        test::report_nmse(
            "decode_attention",
            heads_name(h, type) + " len=" + std::to_string(lens[s]) + " of " + std::to_string(n_seq) + " seqs", err);
        CHECK(err <= kAttentionMaxNmse);
    }
}

void check_prefill(const kcases::PrefillCase& pc) {
    const Heads& h = pc.heads;
    const int T = pc.T, pos0 = pc.pos0;
    const std::string what = pc.name();
    INFO(what);
    test::TestStream stream;
    PagedCase c(h, {pos0 + T}, pc.seed, stream, pc.type);
    // Queries: the fused rows of the T new tokens, passed with row stride F.
    const std::vector<float> rows(c.rows[0].begin() + static_cast<ptrdiff_t>(pos0) * c.F, c.rows[0].end());
    DeviceBuffer<float> d_q(rows);
    DeviceBuffer<float> d_out(static_cast<size_t>(T) * c.q_dim);
    d_out.poison();
    kernels::prefill_attention(d_q.get(), c.F, d_out.get(), c.q_dim, T, pos0, h.n_head, c.d_tables->get(), c.layer(),
                               stream.get());
    const auto out = d_out.download();
    CHECK(test::count_unwritten(out) == 0);
    CHECK(d_out.guard_intact());
    std::vector<float> q(static_cast<size_t>(T) * c.q_dim);
    for (int t = 0; t < T; ++t)
        std::copy_n(rows.data() + static_cast<size_t>(t) * c.F, c.q_dim, q.data() + static_cast<size_t>(t) * c.q_dim);
    const auto ref = kcases::attention_reference(h, q.data(), c.kref[0].data(), c.vref[0].data(), T, pos0);
    const double err = test::nmse(out, ref);
    test::report_nmse("prefill_attention", what, err);
    CHECK(err <= kAttentionMaxNmse);
}

}  // namespace

TEST_CASE("kv_cache_write stores exact fp16 rows through block tables", "[gpu][attention]") {
    test::TestStream stream;
    for (const auto& c : kcases::kv_write_test_cases(kernels::KvType::f16))
        const PagedCase checked(c.heads, c.lens, c.seed, stream, c.type);  // its constructor checks the arena
}

// Two sequences at different positions in shuffled blocks, one fused [q | k | v] row per token:
// rope then kv_cache_write on one copy, rope_kv_cache_write on another; rows and arenas must agree
// bit for bit (both separate kernels are checked against the CPU elsewhere).
TEST_CASE("rope_kv_cache_write equals rope then kv_cache_write, bit for bit", "[gpu][attention][rope]") {
    test::TestStream stream;
    uint32_t seed = 960;
    for (const Heads& h : {kSmol, kLlama, kTiny, Heads{"hd80", 8, 2, 80}, Heads{"hd256", 8, 4, 256}})
        for (const auto style : {kernels::RopeStyle::Normal, kernels::RopeStyle::NeoX}) {
            INFO(h.name << (style == kernels::RopeStyle::NeoX ? " neox" : " normal"));
            const int q_dim = h.n_head * h.head_dim, kv_dim = h.n_head_kv * h.head_dim, F = q_dim + 2 * kv_dim;
            const std::vector<int> starts = {1000, 0}, lens = {20, 17};
            std::vector<int32_t> positions, token_seq;
            for (int s = 0; s < 2; ++s)
                for (int p = 0; p < lens[s]; ++p) {
                    positions.push_back(starts[s] + p);
                    token_seq.push_back(s);
                }
            const int n = static_cast<int>(positions.size());
            const int table_stride = (starts[0] + lens[0]) / kernels::kKvBlockTokens + 1;
            const kernels::KvCacheLayout layout{1, 2 * table_stride, h.n_head_kv, h.head_dim};
            std::vector<int32_t> perm(static_cast<size_t>(layout.n_blocks));
            std::iota(perm.begin(), perm.end(), 0);
            std::mt19937 rng(seed);
            std::shuffle(perm.begin(), perm.end(), rng);
            const std::vector<int32_t>& tables = perm;  // row s: blocks perm[s * table_stride ...]
            const auto rows = test::random_uniform(static_cast<size_t>(n) * F, seed++, -2.f, 2.f);
            const auto inv_freq = engine::cpu::rope_inv_freq(h.head_dim, 10000.f, {});

            DeviceBuffer<float> d_separate(rows), d_fused(rows), d_freq(inv_freq);
            DeviceBuffer<int32_t> d_pos(positions), d_seq(token_seq), d_tables(tables);
            DeviceBuffer<uint16_t> arena_separate(static_cast<size_t>(layout.arena_elems()));
            DeviceBuffer<uint16_t> arena_fused(static_cast<size_t>(layout.arena_elems()));
            arena_separate.poison();
            arena_fused.poison();
            const auto layer_of = [&](DeviceBuffer<uint16_t>& a) { return kernels::kv_layer(a.get(), layout, 0); };
            float* s = d_separate.get();
            kernels::rope(s, s + q_dim, n, h.n_head, h.n_head_kv, h.head_dim, F, F, d_pos.get(), d_freq.get(), style,
                          stream.get());
            kernels::kv_cache_write(s + q_dim, s + q_dim + kv_dim, n, F, F, d_pos.get(), d_seq.get(), d_tables.get(),
                                    table_stride, layer_of(arena_separate), stream.get());
            float* f = d_fused.get();
            kernels::rope_kv_cache_write(f, f + q_dim, f + q_dim + kv_dim, n, h.n_head, F, F, F, d_pos.get(),
                                         d_seq.get(), d_freq.get(), style, d_tables.get(), table_stride,
                                         layer_of(arena_fused), stream.get());
            const auto rows_separate = d_separate.download(), rows_fused = d_fused.download();
            const auto cache_separate = arena_separate.download(), cache_fused = arena_fused.download();
            size_t row_mismatches = 0, cache_mismatches = 0, written = 0;
            for (size_t i = 0; i < rows_fused.size(); ++i)
                row_mismatches += std::memcmp(&rows_fused[i], &rows_separate[i], sizeof(float)) != 0;
            for (size_t i = 0; i < cache_fused.size(); ++i) {
                cache_mismatches += cache_fused[i] != cache_separate[i];
                written += cache_fused[i] != 0xFFFF;
            }
            std::printf(
                "[exact] rope_kv_cache_write %s %s: %zu tokens, %zu cache values written, %zu + %zu mismatches\n",
                h.name, style == kernels::RopeStyle::NeoX ? "neox" : "normal", positions.size(), written,
                row_mismatches, cache_mismatches);
            CHECK(row_mismatches == 0);
            CHECK(cache_mismatches == 0);
            CHECK(written == static_cast<size_t>(n) * 2 * kv_dim);
            CHECK(rows_fused != rows);  // the rotation happened
            CHECK(arena_fused.guard_intact());
        }
}

TEST_CASE("update_block_tables applies exactly the staged pairs, up to the device-side count", "[gpu][attention]") {
    std::mt19937 rng(940);
    const int n_tables = 4096, max_updates = 300;
    std::vector<int32_t> tables(n_tables);
    for (auto& t : tables) t = static_cast<int32_t>(rng() % 100000);
    for (const int n : {0, 1, 299, 300}) {
        INFO(n << " updates");
        std::vector<int32_t> updates(1 + 2 * max_updates, -7), ref = tables;
        updates[0] = n;
        std::vector<int32_t> index(n_tables);
        std::iota(index.begin(), index.end(), 0);
        std::shuffle(index.begin(), index.end(), rng);  // distinct targets: the result is order-free
        for (int i = 0; i < max_updates; ++i) {
            updates[1 + 2 * i] = index[i];
            updates[2 + 2 * i] = static_cast<int32_t>(rng() % 100000) + 100000;
            if (i < n) ref[index[i]] = updates[2 + 2 * i];  // pairs past the count must not land
        }
        DeviceBuffer<int32_t> d_tables(tables);
        DeviceBuffer<int32_t> d_updates(updates);
        test::TestStream stream;
        kernels::update_block_tables(d_tables.get(), d_updates.get(), max_updates, stream.get());
        CHECK(d_tables.download() == ref);
        CHECK(d_tables.guard_intact());
    }
}

// Decode attention quantizing its own rows for a q8 product (the o projection's input): where every sequence
// fits one split and head_dim is a multiple of 32 it returns true, its xq / xmeta equal the CPU reference's
// quantization of the rows it wrote (= q8_quantize_x's bytes) and those rows equal a call without them;
// otherwise it returns false and leaves xq / xmeta poisoned.
TEST_CASE("decode_attention quantizes its rows for a q8 product where it writes them directly",
          "[gpu][attention][q8]") {
    uint32_t seed = 4000;
    const Heads k96{"hd96", 8, 2, 96}, k80{"hd80", 8, 2, 80};
    for (const Heads& h : {kcases::kQwen, kLlama, kcases::kWide, k96, k80})
        for (const int max_len : {kernels::kDecodeSplitTokens, 600}) {
            INFO(heads_name(h, kernels::KvType::f16) << " max_len " << max_len);
            const std::vector<int> lens{1, 17, 200};
            const int n_seq = static_cast<int>(lens.size());
            test::TestStream stream;
            PagedCase c(h, lens, seed += 10, stream);
            std::vector<float> q(static_cast<size_t>(n_seq) * c.F);
            for (int s = 0; s < n_seq; ++s)
                std::copy_n(c.rows[s].data() + static_cast<size_t>(lens[s] - 1) * c.F, c.F,
                            q.data() + static_cast<size_t>(s) * c.F);
            DeviceBuffer<float> d_q(q), d_plain(static_cast<size_t>(n_seq) * c.q_dim), d_out(d_plain.size());
            DeviceBuffer<int32_t> d_lens(std::vector<int32_t>(lens.begin(), lens.end()));
            const int64_t ws = kernels::decode_attention_workspace_floats(n_seq, h.n_head, h.head_dim, max_len);
            DeviceBuffer<float> d_ws(static_cast<size_t>(std::max<int64_t>(ws, 1)));
            DeviceBuffer<uint32_t> d_counters(
                std::vector<uint32_t>(static_cast<size_t>(kernels::decode_attention_counters(n_seq, h.n_head)), 0u));
            DeviceBuffer<int8_t> xq(kernels::q8_xq_bytes(n_seq, c.q_dim));
            DeviceBuffer<kernels::q8::XMeta> xm(kernels::q8_xmeta_count(n_seq, c.q_dim));
            xq.poison();
            xm.poison();
            d_plain.poison();
            d_out.poison();
            const auto attend = [&](float* out, int8_t* x, kernels::q8::XMeta* m) {
                return kernels::decode_attention(d_q.get(), c.F, out, c.q_dim, n_seq, h.n_head, d_lens.get(), max_len,
                                                 nullptr, c.d_tables->get(), c.table_stride, c.layer(),
                                                 ws > 0 ? d_ws.get() : nullptr, d_counters.get(), stream.get(), x, m);
            };
            CHECK_FALSE(attend(d_plain.get(), nullptr, nullptr));
            const bool quantized = attend(d_out.get(), xq.get(), xm.get());
            CHECK(quantized == (max_len <= kernels::kDecodeSplitTokens && h.head_dim % 32 == 0));
            const auto out = d_out.download();
            CHECK(std::memcmp(out.data(), d_plain.download().data(), out.size() * sizeof(float)) == 0);
            const auto got_q = xq.download();
            const auto got_m = xm.download();
            if (quantized) {
                const auto want = kernels::q8_quantize_x_ref(out.data(), n_seq, c.q_dim);
                CHECK(got_q == kernels::q8_device_order(want));  // max |Δ| = 0
                CHECK(std::memcmp(got_m.data(), want.meta.data(), got_m.size() * sizeof(kernels::q8::XMeta)) == 0);
            } else {
                CHECK(std::all_of(got_q.begin(), got_q.end(), [](int8_t b) { return b == -1; }));  // still poisoned
            }
            CHECK(xq.guard_intact());
            CHECK(xm.guard_intact());
        }
}

TEST_CASE("decode_attention matches the CPU reference", "[gpu][attention]") {
    for (const auto& c : kcases::decode_test_cases()) check_decode(c);
}

TEST_CASE("prefill_attention matches the CPU reference", "[gpu][attention]") {
    for (const auto& c : kcases::prefill_test_cases()) check_prefill(c);
}

TEST_CASE("kv_cache_write stores exact f32 rows when the cache is f32", "[gpu][attention][kv_f32]") {
    test::TestStream stream;
    for (const auto& c : kcases::kv_write_test_cases(kernels::KvType::f32))
        const PagedCase checked(c.heads, c.lens, c.seed, stream, c.type);  // its constructor checks the arena
}

// Head sizes 16 .. 256 (multiples of 16 with chunk counts that do and do not divide the decode
// block's threads; 256 with its smaller decode head groups and large prefill tiles), GQA 1, 4, 8,
// both cache types; fresh random inputs per case, outputs poisoned.
TEST_CASE("decode_attention matches the CPU reference for every head size class and GQA ratio",
          "[gpu][attention][heads]") {
    for (const auto& c : kcases::decode_head_grid_cases()) check_decode(c);
}

TEST_CASE("prefill_attention matches the CPU reference for every head size class and GQA ratio",
          "[gpu][attention][heads]") {
    for (const auto& c : kcases::prefill_head_grid_cases()) check_prefill(c);
}
