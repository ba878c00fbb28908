// The vocabulary read from tokenizer.ggml.* metadata: token texts, types, scores, merges, special
// ids and flags, validated once so that the models can index without checks.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace loom::tokenizer {

// Heterogeneous string hashing so that maps keyed by std::string can be probed with string_view.
struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using TokenIndex = std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>>;

struct Vocabulary {
    ModelKind model = ModelKind::BytePairGpt2;
    std::string model_name;  // tokenizer.ggml.model
    std::string pre = "default";
    std::vector<std::string> tokens;
    std::vector<TokenType> types;     // Normal where the file has no token_type array
    std::vector<float> scores;        // empty where the file has none
    std::vector<std::string> merges;  // "left right", best first (gpt2 only)
    TokenIndex index;                 // text -> id (the first id wins for a duplicated text)
    SpecialTokenIds special;
    bool add_bos = false;
    bool add_eos = false;
    bool add_space_prefix = false;

    size_t size() const { return tokens.size(); }
    bool contains(int64_t id) const { return id >= 0 && static_cast<uint64_t>(id) < tokens.size(); }
    const TokenId* find(std::string_view text) const {
        const auto it = index.find(text);
        return it == index.end() ? nullptr : &it->second;
    }
};

// The byte of a "<0xNN>" byte token text.
std::optional<uint8_t> byte_token_value(std::string_view text);

// Throws UnsupportedModelError or VocabularyError (naming the key).
Vocabulary load_vocabulary(const gguf::File& file);

}  // namespace loom::tokenizer
