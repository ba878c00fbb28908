// A bounded map from a pre-tokenized piece to its token ids: text repeats its words, so most pieces
// skip the merge loop. Ids live in one pool; the cache empties itself when it grows past its limits.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/vocab.h"

namespace loom::tokenizer {

class WordCache {
public:
    static constexpr size_t kMaxPieceBytes = 64;  // longer pieces are rare and not cached
    static constexpr size_t kMaxEntries = 1 << 16;

    std::optional<std::span<const TokenId>> find(std::string_view piece) const {
        const auto it = map_.find(piece);
        if (it == map_.end()) return std::nullopt;
        return std::span<const TokenId>(pool_.data() + it->second.offset, it->second.count);
    }

    void insert(std::string_view piece, std::span<const TokenId> ids) {
        if (piece.size() > kMaxPieceBytes) return;
        if (map_.size() >= kMaxEntries) clear();
        map_.emplace(std::string(piece), Entry{uint32_t(pool_.size()), uint32_t(ids.size())});
        pool_.insert(pool_.end(), ids.begin(), ids.end());
    }

    void clear() {
        map_.clear();
        pool_.clear();
    }

private:
    struct Entry {
        uint32_t offset;
        uint32_t count;
    };
    std::unordered_map<std::string, Entry, StringHash, std::equal_to<>> map_;
    std::vector<TokenId> pool_;
};

}  // namespace loom::tokenizer
