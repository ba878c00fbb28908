// Byte-level BPE over one pre-tokenized piece: start from one token per byte, then repeatedly merge
// the adjacent pair with the best (lowest) merge rank, leftmost first among equal ranks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"
#include "tokenizer/word_cache.h"

namespace loom::tokenizer {

// (left id, right id) -> (rank, merged id), open addressing: the merge loop's only lookup.
class MergeTable {
public:
    struct Merge {
        uint32_t rank;
        TokenId merged;
    };
    void reserve(size_t n);
    // Keeps the first (best-ranked) entry of a pair listed twice.
    void insert(TokenId left, TokenId right, Merge merge);
    const Merge* find(TokenId left, TokenId right) const;
    size_t size() const { return size_; }

private:
    struct Slot {
        uint64_t key;
        Merge merge;
    };
    static constexpr uint64_t kEmpty = ~uint64_t{0};
    static uint64_t key_of(TokenId left, TokenId right) { return (uint64_t(uint32_t(left)) << 32) | uint32_t(right); }
    size_t slot_of(uint64_t key) const { return size_t((key * 0x9E3779B97F4A7C15ull) >> shift_); }

    std::vector<Slot> slots_;
    size_t size_ = 0;
    unsigned shift_ = 64;
};

// Reusable buffers of the merge loop, and the piece -> ids cache (one per thread at a time).
struct BpeScratch {
    struct Candidate {
        uint32_t rank;
        uint32_t left;  // symbol index
        TokenId left_id, right_id, merged;
    };
    std::vector<TokenId> ids;
    std::vector<uint32_t> prev, next;
    std::vector<Candidate> heap;
    std::vector<TokenId> piece_ids;
    std::string mapped;
    WordCache cache;
};

class BpeModel {
public:
    // Ranks the merges ("left right" strings); merges naming tokens the vocabulary lacks are skipped.
    BpeModel(const Vocabulary& vocab, bool whole_piece_lookup);

    // Appends the ids of one piece (raw bytes, any bytes allowed).
    void encode_piece(std::string_view piece, std::vector<TokenId>& out, BpeScratch& scratch) const;

    size_t merge_count() const { return merges_.size(); }
    size_t skipped_merges() const { return skipped_merges_; }

private:
    void merge(std::string_view piece, BpeScratch& scratch) const;

    const Vocabulary& vocab_;
    MergeTable merges_;
    std::vector<TokenId> byte_token_;  // 256 entries; -1 where the alphabet character is no token
    bool whole_piece_lookup_;
    size_t skipped_merges_ = 0;
};

}  // namespace loom::tokenizer
