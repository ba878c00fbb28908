// Byte-level BPE: merge ranks in an open-addressing table keyed by the id pair, and a heap-driven
// merge loop over a linked list of symbols (O(n log n) per piece, no allocation once warm).
#include "tokenizer/bpe.h"

#include <algorithm>
#include <bit>

#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace loom::tokenizer {

void MergeTable::reserve(size_t n) {
    // Load factor at most 1/2.
    const size_t capacity = std::max<size_t>(16, std::bit_ceil(n * 2));
    shift_ = 64 - unsigned(std::countr_zero(capacity));
    slots_.assign(capacity, Slot{kEmpty, {}});
    size_ = 0;
}

void MergeTable::insert(TokenId left, TokenId right, Merge merge) {
    if ((size_ + 1) * 2 > slots_.size()) {
        std::vector<Slot> old;
        old.swap(slots_);
        reserve(std::max<size_t>(size_ + 1, old.size()));
        for (const Slot& s : old)
            if (s.key != kEmpty) insert(TokenId(s.key >> 32), TokenId(uint32_t(s.key)), s.merge);
    }
    const uint64_t key = key_of(left, right);
    for (size_t i = slot_of(key);; i = (i + 1) & (slots_.size() - 1)) {
        if (slots_[i].key == key) return;
        if (slots_[i].key == kEmpty) {
            slots_[i] = {key, merge};
            ++size_;
            return;
        }
    }
}

const MergeTable::Merge* MergeTable::find(TokenId left, TokenId right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = key_of(left, right);
    for (size_t i = slot_of(key);; i = (i + 1) & (slots_.size() - 1)) {
        if (slots_[i].key == key) return &slots_[i].merge;
        if (slots_[i].key == kEmpty) return nullptr;
    }
}

BpeModel::BpeModel(const Vocabulary& vocab, bool whole_piece_lookup)
    : vocab_(vocab), byte_token_(256, -1), whole_piece_lookup_(whole_piece_lookup) {
    for (unsigned b = 0; b < 256; ++b)
        if (const TokenId* id = vocab.find(encode_utf8(byte_to_code_point(uint8_t(b))))) byte_token_[b] = *id;

    merges_.reserve(vocab.merges.size());
    std::string merged;
    for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
        const std::string_view m = vocab.merges[rank];
        // "left right"; a left part may itself start with a space only in malformed files.
        const size_t space = m.find(' ', 1);
        if (space == std::string_view::npos) {
            ++skipped_merges_;
            continue;
        }
        const std::string_view left = m.substr(0, space), right = m.substr(space + 1);
        merged.assign(left);
        merged.append(right);
        const TokenId* l = vocab.find(left);
        const TokenId* r = vocab.find(right);
        const TokenId* lr = vocab.find(merged);
        if (!l || !r || !lr) {
            ++skipped_merges_;
            continue;
        }
        merges_.insert(*l, *r, {uint32_t(rank), *lr});
    }
}

void BpeModel::merge(std::string_view piece, BpeScratch& s) const {
    const uint32_t n = uint32_t(piece.size());
    s.ids.resize(n);
    s.prev.resize(n);
    s.next.resize(n);
    for (uint32_t i = 0; i < n; ++i) {
        s.ids[i] = byte_token_[static_cast<unsigned char>(piece[i])];
        s.prev[i] = i - 1;  // wraps to UINT32_MAX for "none"
        s.next[i] = i + 1;  // n for "none"
    }

    // Min-heap on (rank, position): the best merge first, leftmost among equal ranks.
    const auto worse = [](const BpeScratch::Candidate& a, const BpeScratch::Candidate& b) {
        return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
    };
    s.heap.clear();
    const auto consider = [&](uint32_t left) {
        const uint32_t right = s.next[left];
        if (right >= n) return;
        if (const MergeTable::Merge* m = merges_.find(s.ids[left], s.ids[right])) {
            s.heap.push_back({m->rank, left, s.ids[left], s.ids[right], m->merged});
            std::push_heap(s.heap.begin(), s.heap.end(), worse);
        }
    };
    for (uint32_t i = 0; i + 1 < n; ++i) consider(i);

    while (!s.heap.empty()) {
        std::pop_heap(s.heap.begin(), s.heap.end(), worse);
        const BpeScratch::Candidate c = s.heap.back();
        s.heap.pop_back();
        // Stale when either side changed since the candidate was made (a merged token never has
        // the id of one of its parts, so equal ids mean the same symbols).
        const uint32_t right = s.next[c.left];
        if (s.ids[c.left] != c.left_id || right >= n || s.ids[right] != c.right_id) continue;
        s.ids[c.left] = c.merged;
        s.ids[right] = -1;
        s.next[c.left] = s.next[right];
        if (s.next[right] < n) s.prev[s.next[right]] = c.left;
        if (s.prev[c.left] < n) consider(s.prev[c.left]);
        consider(c.left);
    }
}

void BpeModel::encode_piece(std::string_view piece, std::vector<TokenId>& out, BpeScratch& s) const {
    if (piece.empty()) return;
    if (const auto cached = s.cache.find(piece)) {
        out.insert(out.end(), cached->begin(), cached->end());
        return;
    }
    s.piece_ids.clear();
    const TokenId* whole = nullptr;
    if (whole_piece_lookup_) {
        s.mapped = byte_level_encode(piece);
        whole = vocab_.find(s.mapped);
    }
    if (whole) {
        s.piece_ids.push_back(*whole);
    } else {
        merge(piece, s);
        for (uint32_t i = 0; i < piece.size(); i = s.next[i]) {
            // A byte whose alphabet character is no token: the unknown token stands in, if any.
            const TokenId id = s.ids[i] >= 0 ? s.ids[i] : vocab_.special.unk.value_or(-1);
            if (id >= 0) s.piece_ids.push_back(id);
        }
    }
    s.cache.insert(piece, s.piece_ids);
    out.insert(out.end(), s.piece_ids.begin(), s.piece_ids.end());
}

}  // namespace loom::tokenizer
