// The device-memory budget arithmetic: KV blocks that fit beside weights and workspace, and the
// refusal naming each part.
#include "engine/memory_budget.h"

#include <algorithm>
#include <climits>
#include <cstdio>

namespace loom::engine {

namespace {

uint64_t round_up(uint64_t n, uint64_t alignment) {
    const uint64_t a = std::max<uint64_t>(alignment, 1);
    return (n + a - 1) / a * a;
}

int64_t blocks_for(int64_t tokens, int block_tokens) { return (tokens + block_tokens - 1) / block_tokens; }

int clamp_blocks(int64_t blocks) { return static_cast<int>(std::clamp<int64_t>(blocks, 1, INT_MAX)); }

}  // namespace

std::string mib(uint64_t bytes) {
    char s[48];
    std::snprintf(s, sizeof s, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
    return s;
}

std::string describe(const MemoryPlan& plan) {
    return "weights " + mib(plan.weights) + " + KV cache " + mib(plan.kv_cache) + " + workspace " +
           mib(plan.workspace) + " = " + mib(plan.total());
}

MemoryBudgetError::MemoryBudgetError(const MemoryPlan& p, uint64_t b, const std::string& note)
    : EngineError(describe(p) + " > budget " + mib(b) + " (" + std::to_string(b) + " bytes)" +
                  (note.empty() ? "" : "; " + note)),
      plan(p),
      budget(b) {}

uint64_t kv_bytes(const KvCost& kv, int64_t n_blocks) {
    return round_up(static_cast<uint64_t>(n_blocks) * kv.block_bytes, kv.alignment) +
           round_up(kv.fixed_bytes, kv.alignment);
}

void check_memory_budget(const MemoryPlan& plan, uint64_t budget) {
    if (budget > 0 && plan.total() > budget) throw MemoryBudgetError(plan, budget, "");
}

int kv_blocks_within(const MemoryPlan& rest, const KvCost& kv, const KvDemand& demand, uint64_t budget) {
    const int bt = std::max(kv.block_tokens, 1);
    MemoryPlan plan = rest;
    if (demand.kv_tokens > 0) {
        const int64_t blocks = blocks_for(demand.kv_tokens, bt);
        plan.kv_cache = kv_bytes(kv, blocks);
        if (budget > 0 && plan.total() > budget)
            throw MemoryBudgetError(
                plan, budget,
                "the KV cache holds the " + std::to_string(demand.kv_tokens) + " positions asked for (--kv-tokens)");
        return clamp_blocks(blocks);
    }
    const int64_t all = blocks_for(int64_t{demand.max_seqs} * demand.n_ctx, bt);
    if (budget == 0) return clamp_blocks(all);
    const int64_t one = blocks_for(demand.n_ctx, bt);
    plan.kv_cache = kv_bytes(kv, one);
    if (plan.total() > budget)
        throw MemoryBudgetError(plan, budget,
                                "the KV cache holds one sequence of " + std::to_string(demand.n_ctx) +
                                    " positions, the least that serves the context; raise the budget "
                                    "or lower --ctx");
    const uint64_t left = budget - rest.weights - rest.workspace;  // >= kv_bytes(kv, one)
    const uint64_t per_block = std::max<uint64_t>(kv.block_bytes, 1);
    const uint64_t fit = (left - round_up(kv.fixed_bytes, kv.alignment)) / per_block;
    int64_t blocks = fit < static_cast<uint64_t>(all) ? static_cast<int64_t>(fit) : all;
    while (blocks > one && kv_bytes(kv, blocks) > left) --blocks;  // the arena's alignment padding
    return clamp_blocks(std::max(blocks, one));
}

}  // namespace loom::engine
