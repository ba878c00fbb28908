// Paged KV cache write, decode and prefill attention cases: head shapes, sequence lengths, the
// paged inputs (fused [q | k | v] rows, shuffled block tables), engine::cpu::attention as the
// reference, the tolerance, and the bytes a launch must move.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_cases/bench_shapes.h"
#include "kernels/kv_cache.h"

namespace loom::kcases {

// The reference reads the same K/V values (fp16-rounded for an f16 cache), so only the f32
// arithmetic order differs.
inline constexpr double kAttentionMaxNmse = 1e-6;

struct Heads {
    const char* name;
    int n_head, n_head_kv, head_dim;
};
inline constexpr Heads kSmol{"smollm2", 9, 3, 64};
inline constexpr Heads kQwen{"qwen2.5", 14, 2, 64};
inline constexpr Heads kLlama{"llama3", 32, 8, 128};
inline constexpr Heads kWide{"gqa16", 16, 1, 64};  // a group wider than one decode block serves
inline constexpr Heads kTiny{"stories260k", 8, 4, 8};

// Every head size class the kernels instantiate (16 .. 256), each with GQA ratios 1, 4 and 8 over 2 KV heads.
std::vector<Heads> head_grid();
std::string heads_name(const Heads& h, kernels::KvType type);  // "smollm2 9/3x64 kv f16"

// The value a cache of `type` holds for x.
float cached(float x, kernels::KvType type);

// Sequences of the given lengths: per token a fused [q | k | v] row (stride F) of U(-2, 2) values,
// the cached K/V values, and block tables drawn from a shuffled arena of n_blocks (with spare
// blocks, so ids are neither contiguous nor dense).
struct PagedInputs {
    int F = 0, q_dim = 0, kv_dim = 0, table_stride = 0, n_blocks = 0;
    std::vector<std::vector<float>> rows;        // per sequence: lens[s] fused rows
    std::vector<std::vector<float>> kref, vref;  // per sequence: (lens[s], kv_dim), as cached
    std::vector<int32_t> tables;                 // (n_seq, table_stride), -1 past a sequence's blocks
    std::vector<float> all_rows;                 // every sequence's rows, one after another
    std::vector<int32_t> positions, token_seq;   // of each row of all_rows
};
PagedInputs paged_inputs(const Heads& h, const std::vector<int>& lens, uint32_t seed, kernels::KvType type);

struct KvWriteCase {
    Heads heads;
    std::vector<int> lens;
    uint32_t seed;
    kernels::KvType type;
};
std::vector<KvWriteCase> kv_write_test_cases(kernels::KvType type);

struct DecodeCase {
    Heads heads;
    std::vector<int> lens;  // one query row per sequence, at its last position
    uint32_t seed;
    kernels::KvType type;
    std::string name() const;  // "smollm2 lens 1 17 300"
};
std::vector<DecodeCase> decode_test_cases();
std::vector<DecodeCase> decode_head_grid_cases();

struct PrefillCase {
    Heads heads;
    int T, pos0;  // T queries at positions pos0 .. pos0 + T - 1
    uint32_t seed;
    kernels::KvType type;
    std::string name() const;  // "smollm2 9/3x64 kv f16 T=17 pos0=0"
};
std::vector<PrefillCase> prefill_test_cases();
std::vector<PrefillCase> prefill_head_grid_cases();

// engine::cpu::attention of T queries (rows of n_head * head_dim) at pos0 .. over k/v (pos0 + T, kv_dim).
std::vector<float> attention_reference(const Heads& h, const float* q, const float* k, const float* v, int T, int pos0);

// kernel_bench's kv_cache_write (tokens, sequences), decode (context, batch) and prefill (tokens)
// cases, run at each model's heads.
struct KvWriteBenchCase {
    int n_tokens, n_seq;
};
std::vector<KvWriteBenchCase> kv_write_bench_cases();
struct DecodeBenchCase {
    int ctx, batch;
};
std::vector<DecodeBenchCase> decode_bench_cases();
inline constexpr int kPrefillBenchTokens = 512;

// Bytes: kv_cache_write reads the k and v rows and their position and sequence and stores them;
// decode reads every cached key and value of every sequence and the queries, and writes the
// outputs; prefill reads the cache once.
double kv_cache_write_bytes(int n_tokens, int kv_dim, kernels::KvType type);
double decode_attention_bytes(int batch, int ctx, int q_dim, int kv_dim, kernels::KvType type);
double prefill_attention_bytes(int T, int q_dim, int kv_dim, kernels::KvType type);

}  // namespace loom::kcases
