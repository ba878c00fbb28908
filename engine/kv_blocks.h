// Host bookkeeping of a paged KV cache: sequence slots, each with its list of fixed-size blocks
// taken from one shared pool. Backends store the K/V rows; this decides where they go.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/errors.h"

namespace loom::engine {

// The KV cache has no room for a request's tokens; the request fails or waits, nothing else.
class KvCacheFullError : public RequestError {
public:
    using RequestError::RequestError;
};

class KvBlockPool {
public:
    // n_blocks blocks of block_tokens positions, shared by up to max_seqs sequences.
    KvBlockPool(int n_blocks, int block_tokens, int max_seqs);

    int block_tokens() const { return block_tokens_; }
    int total_blocks() const { return static_cast<int>(n_blocks_); }
    int free_blocks() const { return static_cast<int>(free_.size()); }
    int max_seqs() const { return static_cast<int>(seqs_.size()); }
    int open_seqs() const { return n_open_; }

    // The lowest free slot; RequestError when max_seqs are open.
    int open();
    // Returns the slot's blocks to the pool. An unknown or closed slot: RequestError.
    void close(int seq);
    bool is_open(int seq) const;

    int length(int seq) const;                          // positions filled
    const std::vector<int32_t>& blocks(int seq) const;  // block ids, in position order
    // Blocks the sequence must take to hold n_new more positions.
    int blocks_needed(int seq, int n_new) const;
    // Takes those blocks and advances the length by n_new; returns how many blocks were added (they
    // are the last ones of blocks(seq)). KvCacheFullError (nothing taken) when the pool is short.
    int append(int seq, int n_new);

private:
    struct Seq {
        bool open = false;
        int length = 0;
        std::vector<int32_t> blocks;
    };
    const Seq& checked(int seq) const;

    int64_t n_blocks_;
    int block_tokens_;
    int n_open_ = 0;
    std::vector<Seq> seqs_;
    std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
};

}  // namespace loom::engine
