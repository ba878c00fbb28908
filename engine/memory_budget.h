// The device-memory budget arithmetic (--vram-budget): what weights, KV cache and workspace take,
// how many KV blocks a budget leaves room for, and the refusal that names every part. Pure: no CUDA.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "engine/errors.h"

namespace loom::engine {

// Bytes a backend reserves at load, by purpose (its VRAM arenas).
struct MemoryPlan {
    uint64_t weights = 0;
    uint64_t kv_cache = 0;
    uint64_t workspace = 0;
    uint64_t total() const { return weights + kv_cache + workspace; }
};

// What the KV cache costs: block_bytes per block of block_tokens positions (K and V of every
// layer), fixed_bytes whatever the block count (the block tables); sizes round up to `alignment`.
struct KvCost {
    uint64_t block_bytes = 0;
    uint64_t fixed_bytes = 0;
    int block_tokens = 16;
    uint64_t alignment = 256;
};

// The sequences and context the KV cache serves.
struct KvDemand {
    int kv_tokens = 0;  // > 0: exactly these positions (rounded up to whole blocks)
    int max_seqs = 1;
    int n_ctx = 1;
};

// The plan does not fit the budget; thrown before anything is allocated. what():
// "weights 1.2 MiB + KV cache 20.0 MiB + workspace 40.1 MiB = 61.3 MiB > budget 16.0 MiB (...)".
class MemoryBudgetError : public EngineError {
public:
    MemoryBudgetError(const MemoryPlan& plan, uint64_t budget, const std::string& note);
    MemoryPlan plan;
    uint64_t budget = 0;
};

// "weights 1.2 MiB + KV cache 20.0 MiB + workspace 40.1 MiB = 61.3 MiB"
std::string describe(const MemoryPlan& plan);

// Bytes in MiB with one decimal ("20.0 MiB").
std::string mib(uint64_t bytes);

// The KV cache's bytes for n_blocks blocks.
uint64_t kv_bytes(const KvCost& kv, int64_t n_blocks);

// The KV blocks to reserve. kv_tokens > 0: those. Otherwise max_seqs * n_ctx positions (every
// sequence can reach the full context), and with a budget (> 0) no more than the budget leaves
// beside the weights and workspace of `rest` (its kv_cache is ignored), as vLLM sizes its cache from
// --gpu-memory-utilization. MemoryBudgetError when the budget cannot hold the weights, workspace and
// one sequence of n_ctx positions (or the explicit kv_tokens).
int kv_blocks_within(const MemoryPlan& rest, const KvCost& kv, const KvDemand& demand, uint64_t budget);

// MemoryBudgetError when budget > 0 and plan.total() > budget.
void check_memory_budget(const MemoryPlan& plan, uint64_t budget);

}  // namespace loom::engine
