// The parts of a Tokenizer, shared by the encoder, the decoder and the streaming detokenizer.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/spm.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace loom::tokenizer {

// Everything one encode call reuses; one per thread at a time.
struct EncodeScratch {
    PreTokenizer::Scratch pre;
    std::vector<Piece> pieces;
    BpeScratch bpe;
    SpmScratch spm;
};

struct Tokenizer::Impl {
    Vocabulary vocab;
    std::optional<PreTokenizer> pre_tokenizer;  // gpt2 only
    std::optional<BpeModel> bpe;                // gpt2 only
    std::optional<SpmModel> spm;                // llama only
    SpecialTokenMatcher specials;               // control and user-defined tokens (parse_special on)
    SpecialTokenMatcher user_defined;           // user-defined tokens only (parse_special off)
    std::vector<std::string> token_bytes;       // what each token decodes to
    bool strip_first_space = false;             // decoding drops the dummy prefix encoding added

    // The warm scratch (and its word cache); a caller that finds it busy uses a fresh one.
    mutable std::mutex scratch_mutex;
    mutable std::unique_ptr<EncodeScratch> scratch = std::make_unique<EncodeScratch>();

    explicit Impl(Vocabulary v);

    // Appends the bytes of one token to `out`. `seen_text` tracks whether a non-control token was
    // already decoded (the dummy prefix space is dropped from the first one only).
    void append_decoded(TokenId id, const DecodeOptions& options, bool& seen_text, std::string& out) const;
    void check_id(int64_t id) const {
        if (!vocab.contains(id)) throw InvalidTokenIdError(id, vocab.size());
    }
};

}  // namespace loom::tokenizer
