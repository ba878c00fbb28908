// KvBlockPool: slot and block accounting with a free-block stack.
#include "engine/kv_blocks.h"

#include <string>

namespace loom::engine {

KvBlockPool::KvBlockPool(int n_blocks, int block_tokens, int max_seqs)
    : n_blocks_(n_blocks), block_tokens_(block_tokens), seqs_(static_cast<size_t>(max_seqs)) {
    if (n_blocks < 1 || block_tokens < 1 || max_seqs < 1)
        throw RequestError("kv cache: n_blocks, block_tokens and max_seqs must be positive");
    free_.reserve(static_cast<size_t>(n_blocks));
    for (int b = n_blocks; b-- > 0;) free_.push_back(b);  // block 0 on top: handed out first
}

int KvBlockPool::open() {
    for (size_t s = 0; s < seqs_.size(); ++s)
        if (!seqs_[s].open) {
            seqs_[s] = Seq{true, 0, {}};
            ++n_open_;
            return static_cast<int>(s);
        }
    throw RequestError("all " + std::to_string(seqs_.size()) + " sequence slots are in use");
}

const KvBlockPool::Seq& KvBlockPool::checked(int seq) const {
    if (seq < 0 || seq >= static_cast<int>(seqs_.size()) || !seqs_[static_cast<size_t>(seq)].open)
        throw RequestError("kv cache: sequence " + std::to_string(seq) + " is not open");
    return seqs_[static_cast<size_t>(seq)];
}

void KvBlockPool::close(int seq) {
    checked(seq);
    Seq& s = seqs_[static_cast<size_t>(seq)];
    for (auto b = s.blocks.rbegin(); b != s.blocks.rend(); ++b) free_.push_back(*b);
    s = Seq{};
    --n_open_;
}

bool KvBlockPool::is_open(int seq) const {
    return seq >= 0 && seq < static_cast<int>(seqs_.size()) && seqs_[static_cast<size_t>(seq)].open;
}

int KvBlockPool::length(int seq) const { return checked(seq).length; }

const std::vector<int32_t>& KvBlockPool::blocks(int seq) const { return checked(seq).blocks; }

int KvBlockPool::blocks_needed(int seq, int n_new) const {
    const Seq& s = checked(seq);
    const int64_t need = (int64_t{s.length} + n_new + block_tokens_ - 1) / block_tokens_;
    return static_cast<int>(need - static_cast<int64_t>(s.blocks.size()));
}

int KvBlockPool::append(int seq, int n_new) {
    const int need = blocks_needed(seq, n_new);
    if (need > free_blocks())
        throw KvCacheFullError("kv cache full: sequence " + std::to_string(seq) + " needs " + std::to_string(need) +
                               " more blocks of " + std::to_string(block_tokens_) + " tokens, " +
                               std::to_string(free_blocks()) + " of " + std::to_string(n_blocks_) + " are free");
    Seq& s = seqs_[static_cast<size_t>(seq)];
    for (int i = 0; i < need; ++i) {
        s.blocks.push_back(free_.back());
        free_.pop_back();
    }
    s.length += n_new;
    return need;
}

}  // namespace loom::engine
