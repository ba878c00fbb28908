// The public tokenizer API: a GGUF model's tokenizer (text <-> token ids) and a streaming detokenizer.
//
// Supported tokenizer.ggml.model values: "gpt2" (byte-level BPE with ranked merges, pre-tokenized by
// the regex rules that tokenizer.ggml.pre selects) and "llama" (SentencePiece BPE with scores and
// <0xNN> byte fallback). Others throw UnsupportedModelError.
//
// Invalid UTF-8 in input text is tokenized losslessly: byte-level BPE keeps every byte (invalid
// bytes match no pre-tokenizer class and become pieces of their own); SentencePiece gives each
// invalid byte its <0xNN> byte token. A byte the vocabulary cannot spell (no byte-level character
// token or no <0xNN> token; some vocabularies leave out bytes that valid UTF-8 never has) becomes
// the unknown token, or is dropped where there is none.
// Decoding always returns valid UTF-8: every byte that is not part of a valid UTF-8 sequence in the
// decoded byte string becomes U+FFFD (the rule of sanitize_utf8), for whole and streaming decoding
// alike. token_bytes() gives the raw bytes of one token.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/errors.h"

namespace loom::gguf {
class File;
}

namespace loom::tokenizer {

using TokenId = int32_t;

// Token types as stored in tokenizer.ggml.token_type.
enum class TokenType : uint8_t {
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
};

enum class ModelKind { BytePairGpt2, SentencePieceLlama };

// Ids from tokenizer.ggml.*_token_id; empty when absent, 0xFFFFFFFF (or negative) or out of range.
struct SpecialTokenIds {
    std::optional<TokenId> bos, eos, eot, pad, unk, sep;
};

struct EncodeOptions {
    bool add_special = true;  // BOS/EOS as tokenizer.ggml.add_bos_token / add_eos_token say
    // Control token texts in the input ("<|im_start|>") become their ids; off, they are plain text.
    // User-defined tokens (added vocabulary) always match, as in the reference tokenizers.
    bool parse_special = true;
};

struct DecodeOptions {
    bool skip_control = false;  // control tokens (BOS, EOS, <|im_start|>, ...) produce no text
    // The ids continue earlier text (tokens generated after a prompt): the leading space of the
    // first token is real text, not SentencePiece's dummy prefix, and is kept.
    bool continuation = false;
};

class Tokenizer {
public:
    // Builds the tokenizer from tokenizer.ggml.* metadata. Throws UnsupportedModelError or
    // VocabularyError. An unknown tokenizer.ggml.pre logs a warning and uses the GPT-2 rules.
    static Tokenizer from_gguf(const gguf::File& file);
    static Tokenizer open(const std::filesystem::path& gguf_path);

    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    ~Tokenizer();

    // Thread-safe: concurrent calls on one Tokenizer are allowed. SentencePiece puts its dummy
    // prefix ("▁", with add_space_prefix) in front of each run of text between special tokens.
    std::vector<TokenId> encode(std::string_view text, const EncodeOptions& options = {}) const;
    // Appends to `out` (reuse one vector to avoid reallocations).
    void encode_into(std::string_view text, std::vector<TokenId>& out, const EncodeOptions& options = {}) const;

    // Throws InvalidTokenIdError for an id outside the vocabulary. For SentencePiece vocabularies with
    // add_space_prefix, one leading space of the first non-control token is dropped (it is the
    // dummy prefix encoding added).
    std::string decode(std::span<const TokenId> ids, const DecodeOptions& options = {}) const;

    ModelKind model() const;
    const std::string& pre() const;  // tokenizer.ggml.pre ("default" when absent)
    size_t vocab_size() const;
    const std::string& token_text(TokenId id) const;  // as stored in tokenizer.ggml.tokens
    TokenType token_type(TokenId id) const;
    // The bytes the token stands for in decoded text (control tokens: their text).
    const std::string& token_bytes(TokenId id) const;
    std::optional<TokenId> find_token(std::string_view text) const;

    const SpecialTokenIds& special_ids() const;
    bool add_bos() const;
    bool add_eos() const;
    bool add_space_prefix() const;  // used by SentencePiece only (byte-level BPE adds no prefix)

private:
    friend class StreamingDetokenizer;
    struct Impl;
    explicit Tokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Turns ids into text one at a time, emitting only complete UTF-8: bytes of a character split
// across tokens are held back until it is complete. The concatenation of everything feed() and
// flush() return equals Tokenizer::decode() of the same ids. The tokenizer must outlive it.
class StreamingDetokenizer {
public:
    explicit StreamingDetokenizer(const Tokenizer& tokenizer, const DecodeOptions& options = {});

    // Text that became complete with this token (possibly empty). Throws InvalidTokenIdError (the
    // state is then unchanged).
    std::string feed(TokenId id);
    // What is still held back, each byte of an unfinished sequence replaced by U+FFFD; then resets.
    std::string flush();
    void reset();

private:
    const Tokenizer* tokenizer_;
    DecodeOptions options_;
    std::string pending_;
    bool seen_text_ = false;
};

}  // namespace loom::tokenizer
