// SentencePiece BPE (tokenizer.ggml.model "llama"): spaces become "▁", then adjacent pieces merge
// best score first (leftmost among equal scores) while the merged text is a vocabulary piece;
// characters no piece covers fall back to <0xNN> byte tokens.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace loom::tokenizer {

struct SpmScratch {
    struct Symbol {
        uint32_t begin, length;  // bytes of the normalized text
        uint32_t prev, next;
        uint32_t node;  // the merge tree node this symbol currently is
    };
    struct Node {
        TokenId id;  // -1: no usable piece (a character needing byte fallback)
        uint32_t begin, length;
        uint32_t left, right;  // children for merged nodes, kNone for characters
    };
    struct Candidate {
        float score;
        uint32_t left;    // symbol index
        uint32_t length;  // bytes of the merged text, to detect stale candidates
        TokenId id;
    };
    std::string normalized;
    std::vector<Symbol> symbols;
    std::vector<Node> nodes;
    std::vector<Candidate> heap;
    std::vector<uint32_t> stack;
};

class SpmModel {
public:
    explicit SpmModel(const Vocabulary& vocab);

    // Appends the ids of `text`; add_prefix puts the dummy "▁" in front.
    void encode(std::string_view text, bool add_prefix, std::vector<TokenId>& out, SpmScratch& scratch) const;

private:
    void emit(uint32_t node, std::vector<TokenId>& out, SpmScratch& scratch) const;

    const Vocabulary& vocab_;
    TokenIndex mergeable_;              // normal, user-defined and unused pieces
    std::vector<TokenId> byte_tokens_;  // 256 entries; -1 where the vocabulary has no <0xNN>
};

}  // namespace loom::tokenizer
