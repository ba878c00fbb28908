// Attention cases: head shapes, the tests' lengths, kernel_bench's shapes, paged inputs, the CPU
// reference, bytes.
#include "kernel_cases/attention_cases.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <tuple>
#include <utility>

#include "engine/cpu/cpu_ops.h"
#include "gguf/half.h"
#include "kernel_cases/inputs.h"

namespace loom::kcases {

using kernels::KvType;

std::vector<Heads> head_grid() {
    std::vector<Heads> grid;
    for (const int hd : {16, 48, 64, 80, 96, 128, 160, 256})
        for (const int ratio : {1, 4, 8}) grid.push_back({"grid", 2 * ratio, 2, hd});
    return grid;
}

std::string heads_name(const Heads& h, KvType type) {
    return std::string(h.name) + " " + std::to_string(h.n_head) + "/" + std::to_string(h.n_head_kv) + "x" +
           std::to_string(h.head_dim) + " kv " + kernels::kv_type_name(type);
}

float cached(float x, KvType type) { return type == KvType::f32 ? x : gguf::half_to_float(gguf::float_to_half(x)); }

PagedInputs paged_inputs(const Heads& h, const std::vector<int>& lens, uint32_t seed, KvType type) {
    PagedInputs in;
    in.q_dim = h.n_head * h.head_dim;
    in.kv_dim = h.n_head_kv * h.head_dim;
    in.F = in.q_dim + 2 * in.kv_dim;
    const int n_seq = static_cast<int>(lens.size());
    int total_blocks = 0;
    for (const int len : lens) {
        const int nb = (len + kernels::kKvBlockTokens - 1) / kernels::kKvBlockTokens;
        total_blocks += nb;
        in.table_stride = std::max(in.table_stride, nb);
    }
    in.n_blocks = total_blocks + 5;
    std::vector<int32_t> perm(static_cast<size_t>(in.n_blocks));
    std::iota(perm.begin(), perm.end(), 0);
    std::mt19937 rng(seed);
    std::shuffle(perm.begin(), perm.end(), rng);
    in.tables.assign(static_cast<size_t>(n_seq) * in.table_stride, -1);
    size_t next = 0;
    for (int s = 0; s < n_seq; ++s)
        for (int b = 0; b * kernels::kKvBlockTokens < lens[s]; ++b)
            in.tables[static_cast<size_t>(s) * in.table_stride + b] = perm[next++];

    for (int s = 0; s < n_seq; ++s) {
        const auto& rows = in.rows.emplace_back(
            random_uniform(static_cast<size_t>(lens[s]) * in.F, seed + 1 + static_cast<uint32_t>(s), -2.f, 2.f));
        in.all_rows.insert(in.all_rows.end(), rows.begin(), rows.end());
        auto& kr = in.kref.emplace_back(static_cast<size_t>(lens[s]) * in.kv_dim);
        auto& vr = in.vref.emplace_back(static_cast<size_t>(lens[s]) * in.kv_dim);
        for (int p = 0; p < lens[s]; ++p) {
            in.positions.push_back(p);
            in.token_seq.push_back(s);
            const float* row = rows.data() + static_cast<size_t>(p) * in.F;
            for (int e = 0; e < in.kv_dim; ++e) {
                kr[static_cast<size_t>(p) * in.kv_dim + e] = cached(row[in.q_dim + e], type);
                vr[static_cast<size_t>(p) * in.kv_dim + e] = cached(row[in.q_dim + in.kv_dim + e], type);
            }
        }
    }
    return in;
}

std::vector<KvWriteCase> kv_write_test_cases(KvType type) {
    if (type == KvType::f32)
        return {{kSmol, {1, 16, 17, 33}, 950, type}, {kLlama, {64, 2}, 951, type}, {kTiny, {40, 3}, 952, type}};
    return {{kSmol, {1, 16, 17, 33}, 900, type},
            {kQwen, {300, 5}, 910, type},
            {kLlama, {64, 2}, 920, type},
            {kTiny, {40, 3}, 930, type}};
}

std::string DecodeCase::name() const {
    std::string s = std::string(heads.name) + " lens";
    for (const int len : lens) s += " " + std::to_string(len);
    return s;
}

std::vector<DecodeCase> decode_test_cases() {
    std::vector<DecodeCase> cases;
    uint32_t seed = 1000;
    for (const Heads& h : {kSmol, kQwen, kLlama}) {
        cases.push_back({h, {1, 17, 300, 2049, 16, 257}, seed += 10, KvType::f16});  // split over the keys, combined
        cases.push_back({h, {17, 1, 200}, seed += 10, KvType::f16});                 // one split: written directly
        cases.push_back({h, {2500}, seed += 10, KvType::f16});
    }
    cases.push_back({kWide, {300, 40}, seed += 10, KvType::f16});
    cases.push_back({kTiny, {1, 17, 300, 2048}, seed += 10, KvType::f16});
    return cases;
}

std::vector<DecodeCase> decode_head_grid_cases() {
    std::vector<DecodeCase> cases;
    uint32_t seed = 3000;
    for (const Heads& h : head_grid())
        for (const auto type : {KvType::f16, KvType::f32}) {
            cases.push_back({h, {1, 17, 300, 600}, seed += 10, type});  // splits, merged
            cases.push_back({h, {40, 1}, seed += 10, type});            // one split
        }
    return cases;
}

std::string PrefillCase::name() const {
    return heads_name(heads, type) + " T=" + std::to_string(T) + " pos0=" + std::to_string(pos0);
}

std::vector<PrefillCase> prefill_test_cases() {
    std::vector<PrefillCase> cases;
    uint32_t seed = 2000;
    for (const Heads& h : {kSmol, kQwen, kLlama})
        // One query; a short and a longer prompt; a later chunk of a prompt; one query over a long cache.
        for (const auto& [T, pos0] :
             {std::pair{1, 0}, std::pair{17, 0}, std::pair{300, 0}, std::pair{45, 300}, std::pair{1, 2000}})
            cases.push_back({h, T, pos0, seed += 10, KvType::f16});
    for (const auto& [h, T, pos0] : {std::tuple{kSmol, 2100, 0}, std::tuple{kLlama, 2048, 17},
                                     std::tuple{kWide, 70, 10}, std::tuple{kTiny, 8, 0}, std::tuple{kTiny, 8, 300}})
        cases.push_back({h, T, pos0, seed += 10, KvType::f16});
    return cases;
}

std::vector<PrefillCase> prefill_head_grid_cases() {
    std::vector<PrefillCase> cases;
    uint32_t seed = 4000;
    for (const Heads& h : head_grid())
        for (const auto type : {KvType::f16, KvType::f32}) {
            cases.push_back({h, 45, 0, seed += 10, type});
            cases.push_back({h, 33, 300, seed += 10, type});  // a later chunk: full and partial tiles
        }
    return cases;
}

std::vector<float> attention_reference(const Heads& h, const float* q, const float* k, const float* v, int T,
                                       int pos0) {
    static engine::cpu::ThreadPool pool(0);
    std::vector<float> out(static_cast<size_t>(T) * h.n_head * h.head_dim);
    engine::cpu::attention(pool, q, k, v, out.data(), T, pos0, h.n_head, h.n_head_kv, h.head_dim);
    return out;
}

std::vector<KvWriteBenchCase> kv_write_bench_cases() {
    return {{1, 1}, {32, 32}, {512, 1}};  // one decode token, a decode batch of 32 sequences, a 512-token prefill
}

std::vector<DecodeBenchCase> decode_bench_cases() {
    return {{512, 1}, {512, 32}, {4096, 1}, {4096, 32}, {16384, 1}, {16384, 32}, {32768, 1}, {32768, 32}};
}

double kv_cache_write_bytes(int n_tokens, int kv_dim, KvType type) {
    return n_tokens * (8.0 * kv_dim + 2.0 * kernels::kv_type_bytes(type) * kv_dim + 8.0);
}

double decode_attention_bytes(int batch, int ctx, int q_dim, int kv_dim, KvType type) {
    return static_cast<double>(batch) * ctx * kv_dim * 2 * kernels::kv_type_bytes(type) + 8.0 * batch * q_dim;
}

double prefill_attention_bytes(int T, int q_dim, int kv_dim, KvType type) {
    return static_cast<double>(T) * kv_dim * 2 * kernels::kv_type_bytes(type) + 8.0 * T * q_dim;
}

}  // namespace loom::kcases
