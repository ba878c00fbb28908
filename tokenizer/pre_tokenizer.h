// Splitting text into pre-tokenization pieces by a family's rules, with PCRE2 (UTF + UCP, JIT,
// PCRE2_MATCH_INVALID_UTF so that invalid UTF-8 never stops matching; such bytes match no class).
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>
#include <vector>

#include "tokenizer/pre_tokenizer_rules.h"

namespace loom::tokenizer {

struct Piece {
    size_t begin = 0;  // byte offsets into the split text
    size_t end = 0;
};

class PreTokenizer {
public:
    // Compiles every pattern; a pattern PCRE2 rejects throws Error naming it and the offset.
    explicit PreTokenizer(const PreTokenizerRules& rules);
    PreTokenizer(PreTokenizer&&) noexcept;
    PreTokenizer& operator=(PreTokenizer&&) noexcept;
    ~PreTokenizer();

    // Matching state for one thread at a time (PCRE2 match data, JIT stack, piece buffers).
    class Scratch {
    public:
        Scratch();
        Scratch(Scratch&&) noexcept;
        Scratch& operator=(Scratch&&) noexcept;
        ~Scratch();

    private:
        friend class PreTokenizer;
        struct State;
        std::unique_ptr<State> state_;
    };

    // Replaces `pieces` with the non-empty pieces of `text`, in order, covering it exactly: each step
    // splits every piece the previous step made into its matches and the text between them.
    void split(std::string_view text, std::vector<Piece>& pieces, Scratch& scratch) const;

private:
    struct Step;
    std::vector<Step> steps_;
};

}  // namespace loom::tokenizer
