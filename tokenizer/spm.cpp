// SentencePiece BPE encoding with a merge tree, so that a merged piece the vocabulary marks unused
// can be split back into the pieces it was made of.
#include "tokenizer/spm.h"

#include <algorithm>
#include <cstdint>

#include "tokenizer/errors.h"
#include "tokenizer/utf8.h"

namespace loom::tokenizer {

namespace {

constexpr uint32_t kNone = UINT32_MAX;
constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581 "▁", SentencePiece's space

}  // namespace

SpmModel::SpmModel(const Vocabulary& vocab) : vocab_(vocab), byte_tokens_(256, -1) {
    for (size_t i = 0; i < vocab.size(); ++i) {
        const TokenType t = vocab.types[i];
        if (t == TokenType::Normal || t == TokenType::UserDefined || t == TokenType::Unused) {
            mergeable_.emplace(vocab.tokens[i], TokenId(i));
        } else if (t == TokenType::Byte) {
            if (const auto b = byte_token_value(vocab.tokens[i]); b && byte_tokens_[*b] < 0)
                byte_tokens_[*b] = TokenId(i);
        }
    }
}

void SpmModel::encode(std::string_view text, bool add_prefix, std::vector<TokenId>& out, SpmScratch& s) const {
    if (text.empty()) return;
    s.normalized.clear();
    if (add_prefix) s.normalized += kSpace;
    for (const char c : text) {
        if (c == ' ')
            s.normalized += kSpace;
        else
            s.normalized += c;
    }
    if (s.normalized.size() > UINT32_MAX) throw Error("text too long for SentencePiece encoding (over 4 GiB)");
    const std::string_view norm = s.normalized;
    const auto lookup = [&](uint32_t begin, uint32_t length) -> TokenId {
        const auto it = mergeable_.find(norm.substr(begin, length));
        return it == mergeable_.end() ? -1 : it->second;
    };

    // One symbol per character; an invalid byte is a character of its own.
    s.symbols.clear();
    s.nodes.clear();
    for (size_t pos = 0; pos < norm.size();) {
        const auto length = uint32_t(decode_utf8(norm, pos).length);
        const auto index = uint32_t(s.symbols.size());
        s.nodes.push_back({lookup(uint32_t(pos), length), uint32_t(pos), length, kNone, kNone});
        s.symbols.push_back({uint32_t(pos), length, index - 1, index + 1, index});
        pos += length;
    }
    const auto n = uint32_t(s.symbols.size());
    s.symbols.back().next = kNone;
    s.symbols.front().prev = kNone;

    // Max-heap on score; among equal scores the leftmost pair first.
    const auto worse = [](const SpmScratch::Candidate& a, const SpmScratch::Candidate& b) {
        return a.score != b.score ? a.score < b.score : a.left > b.left;
    };
    s.heap.clear();
    const auto consider = [&](uint32_t left) {
        if (left == kNone) return;
        const uint32_t right = s.symbols[left].next;
        if (right == kNone) return;
        const uint32_t length = s.symbols[left].length + s.symbols[right].length;
        const TokenId id = lookup(s.symbols[left].begin, length);
        if (id < 0) return;
        const float score = vocab_.scores.empty() ? 0.f : vocab_.scores[size_t(id)];
        s.heap.push_back({score, left, length, id});
        std::push_heap(s.heap.begin(), s.heap.end(), worse);
    };
    for (uint32_t i = 0; i + 1 < n; ++i) consider(i);

    while (!s.heap.empty()) {
        std::pop_heap(s.heap.begin(), s.heap.end(), worse);
        const SpmScratch::Candidate c = s.heap.back();
        s.heap.pop_back();
        SpmScratch::Symbol& left = s.symbols[c.left];
        // Stale when either side has grown or been absorbed since (lengths only grow).
        if (left.length == 0 || left.next == kNone) continue;
        SpmScratch::Symbol& right = s.symbols[left.next];
        if (left.length + right.length != c.length) continue;
        s.nodes.push_back({c.id, left.begin, c.length, left.node, right.node});
        left.node = uint32_t(s.nodes.size() - 1);
        left.length = c.length;
        left.next = right.next;
        if (right.next != kNone) s.symbols[right.next].prev = c.left;
        right.length = 0;
        consider(left.prev);
        consider(c.left);
    }

    for (uint32_t i = 0; i != kNone; i = s.symbols[i].next) emit(s.symbols[i].node, out, s);
}

// A usable piece is emitted; an unused one is split into its parts; a character without a piece
// becomes its bytes' <0xNN> tokens (or the unknown token).
void SpmModel::emit(uint32_t root, std::vector<TokenId>& out, SpmScratch& s) const {
    s.stack.assign(1, root);
    while (!s.stack.empty()) {
        const SpmScratch::Node node = s.nodes[s.stack.back()];
        s.stack.pop_back();
        if (node.id >= 0 && vocab_.types[size_t(node.id)] != TokenType::Unused) {
            out.push_back(node.id);
        } else if (node.left != kNone) {
            s.stack.push_back(node.right);
            s.stack.push_back(node.left);
        } else {
            const std::string_view bytes = std::string_view(s.normalized).substr(node.begin, node.length);
            const bool has_byte_tokens = std::all_of(
                bytes.begin(), bytes.end(), [&](char c) { return byte_tokens_[static_cast<unsigned char>(c)] >= 0; });
            if (has_byte_tokens) {
                for (const char c : bytes) out.push_back(byte_tokens_[static_cast<unsigned char>(c)]);
            } else if (vocab_.special.unk) {
                out.push_back(*vocab_.special.unk);
            }
        }
    }
}

}  // namespace loom::tokenizer
