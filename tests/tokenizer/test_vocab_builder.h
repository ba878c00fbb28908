// Small synthetic GGUF vocabularies for tokenizer tests: a byte-level BPE one and a SentencePiece one.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gguf/reader.h"
#include "gguf/writer.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace loom::test {

// A parsed GGUF header together with the bytes it views.
struct VocabFile {
    std::vector<uint8_t> bytes;
    std::unique_ptr<gguf::File> file;
};

inline VocabFile vocab_file(const gguf::Writer& w) {
    VocabFile v;
    v.bytes = w.header_bytes();
    v.bytes.resize(w.file_size(), 0);
    v.file = std::make_unique<gguf::File>(gguf::File::parse(v.bytes));
    return v;
}

inline tokenizer::Tokenizer tokenizer_of(const gguf::Writer& w) {
    const VocabFile v = vocab_file(w);
    return tokenizer::Tokenizer::from_gguf(*v.file);
}

// Byte-level BPE: ids 0-255 are the byte alphabet (id == byte), then merged tokens, then
// "<|end|>" (control) and "<tool>" (user-defined).
struct BpeVocab {
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    std::vector<std::string> merges;

    BpeVocab() {
        for (unsigned b = 0; b < 256; ++b) {
            tokens.push_back(tokenizer::encode_utf8(tokenizer::byte_to_code_point(uint8_t(b))));
            types.push_back(1);
        }
        for (const char* m : {"h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d"}) {
            merges.push_back(m);
            std::string merged = m;
            merged.erase(merged.find(' '), 1);
            tokens.push_back(merged);
            types.push_back(1);
        }
        tokens.push_back("<|end|>");
        types.push_back(3);
        tokens.push_back("<tool>");
        types.push_back(4);
    }
    int32_t id(const std::string& text) const {
        for (size_t i = 0; i < tokens.size(); ++i)
            if (tokens[i] == text) return int32_t(i);
        return -1;
    }
    gguf::Writer writer(const std::string& pre = "gpt-2") const {
        gguf::Writer w;
        w.set("tokenizer.ggml.model", gguf::Value::string("gpt2"));
        w.set("tokenizer.ggml.pre", gguf::Value::string(pre));
        w.set("tokenizer.ggml.tokens", gguf::Value::string_array(tokens));
        w.set("tokenizer.ggml.token_type", gguf::Value::i32_array(types));
        w.set("tokenizer.ggml.merges", gguf::Value::string_array(merges));
        w.set("tokenizer.ggml.bos_token_id", gguf::Value::u32(uint32_t(id("<|end|>"))));
        w.set("tokenizer.ggml.eos_token_id", gguf::Value::u32(uint32_t(id("<|end|>"))));
        return w;
    }
};

// SentencePiece: <unk>, <s>, </s>, the 256 <0xNN> byte tokens, then scored pieces.
struct SpmVocab {
    std::vector<std::string> tokens{"<unk>", "<s>", "</s>"};
    std::vector<int32_t> types{2, 3, 3};
    std::vector<float> scores{0, 0, 0};

    SpmVocab() {
        static const char* hex = "0123456789ABCDEF";
        for (unsigned b = 0; b < 256; ++b) {
            tokens.push_back(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">");
            types.push_back(6);
            scores.push_back(0);
        }
        const std::pair<const char*, float> pieces[] = {
            {"\xE2\x96\x81", -1},
            {"h", -2},
            {"e", -2},
            {"l", -2},
            {"o", -2},
            {"w", -2},
            {"r", -2},
            {"d", -2},
            {"he", -3},
            {"ll", -3},
            {"hell", -4},
            {"hello", -5},
            {"\xE2\x96\x81hello", -6},
            {"\xE2\x96\x81w", -7},
            {"or", -7},
            {"\xE2\x96\x81wor", -8},
            {"\xE2\x96\x81world", -9},
            {"ld", -9},
        };
        for (const auto& [text, score] : pieces) {
            tokens.push_back(text);
            types.push_back(1);
            scores.push_back(score);
        }
    }
    int32_t id(const std::string& text) const {
        for (size_t i = 0; i < tokens.size(); ++i)
            if (tokens[i] == text) return int32_t(i);
        return -1;
    }
    gguf::Writer writer() const {
        gguf::Writer w;
        w.set("tokenizer.ggml.model", gguf::Value::string("llama"));
        w.set("tokenizer.ggml.tokens", gguf::Value::string_array(tokens));
        w.set("tokenizer.ggml.token_type", gguf::Value::i32_array(types));
        w.set("tokenizer.ggml.scores", gguf::Value::f32_array(scores));
        w.set("tokenizer.ggml.bos_token_id", gguf::Value::u32(1));
        w.set("tokenizer.ggml.eos_token_id", gguf::Value::u32(2));
        w.set("tokenizer.ggml.unknown_token_id", gguf::Value::u32(0));
        return w;
    }
};

}  // namespace loom::test
