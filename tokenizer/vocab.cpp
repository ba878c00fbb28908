// Reading and validating tokenizer.ggml.* metadata into a Vocabulary.
#include "tokenizer/vocab.h"

#include <limits>

#include "gguf/errors.h"
#include "gguf/reader.h"

namespace loom::tokenizer {

namespace {

constexpr std::string_view kPrefix = "tokenizer.ggml.";

std::string key_of(std::string_view name) { return std::string(kPrefix) + std::string(name); }

// Runs a typed metadata read; a wrong type becomes a VocabularyError naming the key.
template <typename Read>
auto read_key(const std::string& key, Read read) {
    try {
        return read();
    } catch (const gguf::Error& e) {
        throw VocabularyError(key, e.what());
    }
}

// A special token id, or nothing when absent, "none" (0xFFFFFFFF or negative) or outside the vocabulary.
std::optional<TokenId> special_id(const gguf::File& file, std::string_view name, size_t n_vocab) {
    const std::string key = key_of(name);
    const gguf::Value* v = file.find(key);
    if (!v) return std::nullopt;
    const int64_t id = read_key(key, [&] { return v->as_int(key); });
    if (id < 0 || static_cast<uint64_t>(id) >= n_vocab) return std::nullopt;
    return static_cast<TokenId>(id);
}

bool flag(const gguf::File& file, std::string_view name, bool fallback) {
    const std::string key = key_of(name);
    return read_key(key, [&] { return file.find_bool(key); }).value_or(fallback);
}

TokenType token_type_of(int32_t raw) {
    if (raw >= 1 && raw <= 6) return static_cast<TokenType>(raw);
    return TokenType::Normal;  // 0 ("undefined") and unknown values carry no special meaning
}

}  // namespace

std::optional<uint8_t> byte_token_value(std::string_view text) {
    if (text.size() != 6 || !text.starts_with("<0x") || text.back() != '>') return std::nullopt;
    const auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    const int hi = hex(text[3]), lo = hex(text[4]);
    if (hi < 0 || lo < 0) return std::nullopt;
    return uint8_t(hi * 16 + lo);
}

Vocabulary load_vocabulary(const gguf::File& file) {
    Vocabulary v;
    const std::string model_key = key_of("model");
    const auto model = read_key(model_key, [&] { return file.find_string(model_key); });
    if (!model) throw VocabularyError(model_key, "missing (the file has no tokenizer)");
    v.model_name = *model;
    if (v.model_name == "gpt2")
        v.model = ModelKind::BytePairGpt2;
    else if (v.model_name == "llama")
        v.model = ModelKind::SentencePieceLlama;
    else
        throw UnsupportedModelError(v.model_name);
    const bool spm = v.model == ModelKind::SentencePieceLlama;

    const std::string pre_key = key_of("pre");
    v.pre = read_key(pre_key, [&] { return file.find_string(pre_key); }).value_or("default");

    const std::string tokens_key = key_of("tokens");
    const gguf::Value* tokens = file.find(tokens_key);
    if (!tokens) throw VocabularyError(tokens_key, "missing");
    v.tokens = read_key(tokens_key, [&] { return tokens->as_string_array(tokens_key); });
    if (v.tokens.empty()) throw VocabularyError(tokens_key, "empty");
    if (v.tokens.size() > static_cast<size_t>(std::numeric_limits<TokenId>::max()))
        throw VocabularyError(tokens_key, std::to_string(v.tokens.size()) + " tokens do not fit 32-bit ids");
    const size_t n = v.tokens.size();

    const std::string types_key = key_of("token_type");
    v.types.assign(n, TokenType::Normal);
    if (const gguf::Value* types = file.find(types_key)) {
        const auto raw = read_key(types_key, [&] { return types->as_i32_array(types_key); });
        if (raw.size() != n)
            throw VocabularyError(types_key,
                                  std::to_string(raw.size()) + " entries for " + std::to_string(n) + " tokens");
        for (size_t i = 0; i < n; ++i) v.types[i] = token_type_of(raw[i]);
    }

    const std::string scores_key = key_of("scores");
    if (const gguf::Value* scores = file.find(scores_key)) {
        v.scores = read_key(scores_key, [&] { return scores->as_f32_array(scores_key); });
        if (v.scores.size() != n)
            throw VocabularyError(scores_key,
                                  std::to_string(v.scores.size()) + " entries for " + std::to_string(n) + " tokens");
    }

    const std::string merges_key = key_of("merges");
    if (const gguf::Value* merges = file.find(merges_key)) {
        v.merges = read_key(merges_key, [&] { return merges->as_string_array(merges_key); });
    } else if (!spm) {
        throw VocabularyError(merges_key, "missing (a gpt2 tokenizer needs its merges)");
    }

    v.index.reserve(n);
    for (size_t i = 0; i < n; ++i) v.index.emplace(v.tokens[i], static_cast<TokenId>(i));

    v.special.bos = special_id(file, "bos_token_id", n);
    v.special.eos = special_id(file, "eos_token_id", n);
    v.special.eot = special_id(file, "eot_token_id", n);
    v.special.pad = special_id(file, "padding_token_id", n);
    v.special.unk = special_id(file, "unknown_token_id", n);
    v.special.sep = special_id(file, "separator_token_id", n);
    if (!v.special.sep) v.special.sep = special_id(file, "seperator_token_id", n);  // the spelling of many files

    // SentencePiece adds BOS and a dummy space prefix unless told otherwise; byte-level BPE adds neither.
    v.add_bos = flag(file, "add_bos_token", spm);
    v.add_eos = flag(file, "add_eos_token", false);
    v.add_space_prefix = flag(file, "add_space_prefix", spm);
    return v;
}

}  // namespace loom::tokenizer
