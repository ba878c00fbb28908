// Prefix-aware routing and session pinning: the hash chain over a prompt's 16-token blocks, the
// bounded map of which worker last served each block, and the sessions pinned to a worker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "orchestrator/lru_map.h"
#include "orchestrator/options.h"
#include "orchestrator/prompt_tokens.h"
#include "orchestrator/worker_pool.h"

namespace loom::orchestrator {

// Tokens per block: as the worker's KV cache blocks are laid out.
inline constexpr size_t kBlockTokens = 16;

// The chain over the full 16-token blocks of `ids` (a partial last block has none), at most
// `max_blocks`: h0 = H(seed, block 0), h_i = H(h_{i-1}, block i). Equal hashes at i mean (but for
// collisions of 64-bit hashes) equal first i + 1 blocks.
std::vector<uint64_t> block_hashes(std::span<const int32_t> ids, uint64_t seed, size_t max_blocks = SIZE_MAX);

// A 64-bit hash of bytes (the model name that seeds a chain, a session id).
uint64_t hash_bytes(std::string_view bytes);

// Which worker last served each block hash: a bounded LRU map (worker ids are the caller's).
class PrefixIndex {
public:
    explicit PrefixIndex(size_t capacity) : map_(capacity) {}
    // The deepest block whose worker is in `workers`: (block position, position in `workers`).
    std::optional<std::pair<size_t, size_t>> longest_match(const std::vector<uint64_t>& chain,
                                                           const std::vector<uint32_t>& workers);
    // Every block of `chain` now maps to `worker`.
    void record(const std::vector<uint64_t>& chain, uint32_t worker);
    size_t size() const { return map_.size(); }

private:
    BoundedLru<uint64_t, uint32_t> map_;
};

// True when the worker holding a prefix is too busy to take it: its load exceeds the lightest
// eligible worker's by more than max(kOverloadTokens, half the lightest's).
inline constexpr int64_t kOverloadTokens = 512;
bool overloaded(int64_t load, int64_t lightest);

class PrefixRouter {
public:
    // Blocks hashed per prompt (64), and the entries of the two maps (about 6 MiB each).
    static constexpr size_t kMaxBlocks = PromptTokenizers::kMaxTokens / kBlockTokens;
    static constexpr size_t kBlockEntries = 65536;
    static constexpr size_t kSessionEntries = 65536;

    explicit PrefixRouter(Routing routing);

    // Loads `gguf`'s tokenizer for workers serving `model` (their name for it: the file's stem).
    // Throws as PromptTokenizers::add. Thread-safe; also for models added while serving.
    void add_tokenizer(const std::string& model, const std::filesystem::path& gguf);

    // What the choice of a worker needs of one request, worked out before any lock is taken (the
    // tokenizing): `session` is X-Session-Id or the body's `user` ("" for none).
    struct Plan {
        std::string model;
        std::optional<uint64_t> session;
        PromptIds::Status prompt = PromptIds::Status::no_tokenizer;
        std::vector<uint64_t> chain;
        std::optional<int64_t> prompt_tokens;  // known when tokenized
    };
    Plan plan(const std::string& model, const nlohmann::json& body, bool chat, const std::string& session) const;

    // The pool's preference for a planned request; empty when the pool's policy decides alone
    // (least-load or round-robin without a session).
    WorkerPool::Preference preference(Plan plan);

private:
    WorkerPool::Pick decide(const Plan& plan, const std::vector<WorkerPool::Candidate>& eligible, size_t own_pick);
    WorkerPool::Pick by_prefix(const Plan& plan, const std::vector<WorkerPool::Candidate>& eligible,
                               const std::vector<uint32_t>& ids, size_t own_pick);
    uint32_t worker_id(std::string_view url);

    Routing routing_;
    PromptTokenizers tokenizers_;
    std::mutex mu_;                  // taken inside the pool's lock, never the other way round; guards what follows
    std::vector<std::string> urls_;  // worker id -> URL
    PrefixIndex blocks_;
    BoundedLru<uint64_t, uint32_t> sessions_;  // hash of the session id -> worker id
};

}  // namespace loom::orchestrator
