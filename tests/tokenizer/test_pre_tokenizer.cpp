// Pre-tokenization rules per family, and that any bytes (invalid UTF-8 included) split cleanly.
#include <random>

#include "catch.hpp"
#include "tokenizer/pre_tokenizer.h"

using namespace loom::tokenizer;
using Pieces = std::vector<std::string>;

namespace {

Pieces split(std::string_view pre, std::string_view text) {
    const PreTokenizer p(rules_for_pre(pre));
    PreTokenizer::Scratch scratch;
    std::vector<Piece> pieces;
    p.split(text, pieces, scratch);
    Pieces out;
    for (const Piece& piece : pieces) out.emplace_back(text.substr(piece.begin, piece.end - piece.begin));
    return out;
}

}  // namespace

TEST_CASE("GPT-2 rules", "[tokenizer][pre]") {
    CHECK(split("gpt-2", "Hello world's  test 123!!\n\n") ==
          Pieces{"Hello", " world", "'s", " ", " test", " 123", "!!", "\n\n"});
    CHECK(split("gpt-2", "  Hello") == Pieces{" ", " Hello"});
    CHECK(split("gpt-2", "").empty());
    CHECK(split("mpt", "a\tb") == Pieces{"a", "\t", "b"});
}

TEST_CASE("digit rules differ per family", "[tokenizer][pre]") {
    CHECK(split("llama-bpe", "x 1234567") == Pieces{"x", " ", "123", "456", "7"});
    CHECK(split("qwen2", "x 123") == Pieces{"x", " ", "1", "2", "3"});
    CHECK(split("smollm", "x 123") == Pieces{"x", " ", "1", "2", "3"});
    CHECK(split("starcoder", "a12b") == Pieces{"a", "1", "2", "b"});
    CHECK(split("deepseek-v3", "1234") == Pieces{"123", "4"});
}

TEST_CASE("Llama 3 rules: case-insensitive contractions and newline handling", "[tokenizer][pre]") {
    CHECK(split("llama-bpe", "I'LL go") == Pieces{"I", "'LL", " go"});
    CHECK(split("llama-bpe", "a\n\n  b") == Pieces{"a", "\n\n", " ", " b"});
    CHECK(split("llama-bpe", "...\n") == Pieces{"...\n"});
}

TEST_CASE("Falcon rules: punctuation runs, and digit splits on byte-level text", "[tokenizer][pre]") {
    CHECK(split("falcon", "hello, world!! ...ok") == Pieces{"hello", ",", " world", "!!", " ", "...", "ok"});
    CHECK(split("falcon", " 1234567") == Pieces{" ", "123", "456", "7"});
    // 'м' is D0 BC; byte BC stands for '¼', which is numeric, so the character splits in two.
    CHECK(split("falcon", "\xD0\xBC") == Pieces{"\xD0", "\xBC"});
}

TEST_CASE("DeepSeek rules", "[tokenizer][pre]") {
    CHECK(split("deepseek-coder", "Hello, world!\n") == Pieces{"Hello", ",", " world", "!", "\n"});
    CHECK(split("deepseek-llm", "Hello world  ") == Pieces{"Hello", " world", "  "});
    CHECK(split("deepseek-llm", "\xE4\xBD\xA0\xE5\xA5\xBD") == Pieces{"\xE4\xBD\xA0\xE5\xA5\xBD"});
}

TEST_CASE("BLOOM rules split at whitespace and sentence punctuation", "[tokenizer][pre]") {
    CHECK(split("bloom", "Hello, world. x") == Pieces{"Hello", ",", " world", ".", " x"});
    CHECK(split("viking", "ab12") == Pieces{"ab", "1", "2"});
}

TEST_CASE("Tekken rules keep case runs", "[tokenizer][pre]") {
    CHECK(split("tekken", "HelloWorld XMLParser") == Pieces{"Hello", "World", " XMLParser"});
}

TEST_CASE("invalid UTF-8 never stops splitting; pieces cover every byte", "[tokenizer][pre]") {
    CHECK(split("gpt-2",
                "ab\xFF"
                "cd \xC3") == Pieces{"ab", "\xFF", "cd", " ", "\xC3"});
    std::mt19937 rng(7);
    for (const auto pre : known_pre_values()) {
        const PreTokenizer p(rules_for_pre(pre));
        PreTokenizer::Scratch scratch;
        std::vector<Piece> pieces;
        for (int round = 0; round < 50; ++round) {
            std::string text(size_t(rng() % 64), '\0');
            for (char& c : text) c = char(rng() % 4 == 0 ? "a 1\n.\xE2\x96"[rng() % 7] : rng());
            p.split(text, pieces, scratch);
            size_t at = 0;
            for (const Piece& piece : pieces) {
                REQUIRE(piece.begin == at);
                REQUIRE(piece.end > piece.begin);
                at = piece.end;
            }
            REQUIRE(at == text.size());
        }
    }
}

TEST_CASE("long inputs split without running out of matcher stack", "[tokenizer][pre]") {
    const std::string spaces(1 << 20, ' ');
    CHECK(split("gpt-2", spaces + "x") == Pieces{spaces.substr(1), " x"});
    const std::string letters(1 << 20, 'a');
    CHECK(split("llama-bpe", letters) == Pieces{letters});
    CHECK(split("deepseek-llm", letters + "  ").size() == 2);
}
