// Encoding and decoding with small synthetic vocabularies: merges, special tokens, BOS/EOS,
// SentencePiece prefix and byte fallback, the U+FFFD rule, bad ids, and concurrent use.
#include <atomic>
#include <thread>

#include "catch.hpp"
#include "test_vocab_builder.h"

using namespace loom;
using namespace loom::tokenizer;
using loom::test::BpeVocab;
using loom::test::SpmVocab;
using loom::test::tokenizer_of;
using Ids = std::vector<TokenId>;

namespace {
constexpr EncodeOptions kPlain{.add_special = false, .parse_special = false};
constexpr EncodeOptions kNoBos{.add_special = false, .parse_special = true};
const std::string kReplacement = "\xEF\xBF\xBD";
}  // namespace

TEST_CASE("byte-level BPE merges by rank", "[tokenizer][bpe]") {
    const BpeVocab v;
    const auto tok = tokenizer_of(v.writer());
    CHECK(tok.encode("hello world", kPlain) == Ids{v.id("hello"), v.id("Ġworld")});
    CHECK(tok.encode("hell", kPlain) == Ids{v.id("hell")});
    CHECK(tok.encode("helo", kPlain) == Ids{v.id("he"), 'l', 'o'});
    CHECK(tok.encode("", kPlain).empty());
    CHECK(tok.decode(tok.encode("hello world", kPlain)) == "hello world");
}

TEST_CASE("control tokens are parsed only with parse_special; user-defined ones always", "[tokenizer][special]") {
    const BpeVocab v;
    const auto tok = tokenizer_of(v.writer());
    const TokenId end = v.id("<|end|>"), tool = v.id("<tool>");
    CHECK(tok.encode("hello<|end|>world", kNoBos) == Ids{v.id("hello"), end, 'w', v.id("or"), 'l', 'd'});
    CHECK(tok.encode("hello<|end|>world", kPlain) ==
          Ids{v.id("hello"), '<', '|', 'e', 'n', 'd', '|', '>', 'w', v.id("or"), 'l', 'd'});
    CHECK(tok.encode("<tool>hello", kPlain) == Ids{tool, v.id("hello")});
    CHECK(tok.encode("<|end|><|end|>", kNoBos) == Ids{end, end});
}

TEST_CASE("the longest special token wins at a position", "[tokenizer][special]") {
    BpeVocab v;
    v.tokens.push_back("<|end|>x");
    v.types.push_back(3);
    const auto tok = tokenizer_of(v.writer());
    CHECK(tok.encode("<|end|>x<|end|>", kNoBos) == Ids{TokenId(v.tokens.size() - 1), v.id("<|end|>")});
}

TEST_CASE("BOS and EOS follow add_special and the metadata flags", "[tokenizer][special]") {
    const BpeVocab v;
    const TokenId end = v.id("<|end|>"), hello = v.id("hello");
    CHECK(tokenizer_of(v.writer()).encode("hello") == Ids{hello});
    auto w = v.writer();
    w.set("tokenizer.ggml.add_bos_token", gguf::Value::boolean(true));
    w.set("tokenizer.ggml.add_eos_token", gguf::Value::boolean(true));
    const auto tok = tokenizer_of(w);
    CHECK(tok.encode("hello") == Ids{end, hello, end});
    CHECK(tok.encode("hello", kNoBos) == Ids{hello});
    CHECK(tok.encode("") == Ids{end, end});
}

TEST_CASE("decoding: control tokens, skip_control, and the U+FFFD rule", "[tokenizer][decode]") {
    const BpeVocab v;
    const auto tok = tokenizer_of(v.writer());
    const Ids ids{v.id("hello"), v.id("<|end|>"), v.id("Ġworld")};
    CHECK(tok.decode(ids) == "hello<|end|> world");
    CHECK(tok.decode(ids, {.skip_control = true}) == "hello world");
    CHECK(tok.decode(Ids{0xE2, 0x82, 0xAC}) == "\xE2\x82\xAC");
    // Each byte that is not part of a valid sequence becomes one U+FFFD.
    CHECK(tok.decode(Ids{'a', 0xFF, 'b'}) == "a" + kReplacement + "b");
    CHECK(tok.decode(Ids{0xE2, 0x82}) == kReplacement + kReplacement);
    CHECK(tok.decode(Ids{0xC0, 0xAF}) == kReplacement + kReplacement);
    CHECK(tok.token_bytes(0xFF) == "\xFF");
}

TEST_CASE("an out-of-range id is an error naming the id", "[tokenizer][decode]") {
    const BpeVocab v;
    const auto tok = tokenizer_of(v.writer());
    for (const TokenId bad : {TokenId(-1), TokenId(v.tokens.size()), TokenId(1 << 30)}) {
        try {
            tok.decode(Ids{'a', bad});
            FAIL("no error for " << bad);
        } catch (const InvalidTokenIdError& e) {
            CHECK(e.id() == bad);
            CHECK(e.vocab_size() == v.tokens.size());
            CHECK(std::string(e.what()).find(std::to_string(bad)) != std::string::npos);
        }
    }
}

TEST_CASE("invalid UTF-8 input is tokenized losslessly (byte-level BPE)", "[tokenizer][bpe]") {
    const BpeVocab v;
    const auto tok = tokenizer_of(v.writer());
    const std::string text = "he\xFFllo \xC3";
    const auto ids = tok.encode(text, kPlain);
    std::string bytes;
    for (const TokenId id : ids) bytes += tok.token_bytes(id);
    CHECK(bytes == text);
    CHECK(tok.decode(ids) == sanitize_utf8(text));
}

TEST_CASE("SentencePiece: dummy prefix, score order, byte fallback", "[tokenizer][spm]") {
    const SpmVocab v;
    const auto tok = tokenizer_of(v.writer());
    const auto byte = [&](unsigned b) { return TokenId(3 + b); };
    CHECK(tok.encode("hello world", kPlain) == Ids{v.id("\xE2\x96\x81hello"), v.id("\xE2\x96\x81world")});
    CHECK(tok.encode("hello world") == Ids{1, v.id("\xE2\x96\x81hello"), v.id("\xE2\x96\x81world")});
    CHECK(tok.encode("", kPlain).empty());
    CHECK(tok.encode("\xC3\xA9", kPlain) == Ids{v.id("\xE2\x96\x81"), byte(0xC3), byte(0xA9)});
    CHECK(tok.encode("\xFF", kPlain) == Ids{v.id("\xE2\x96\x81"), byte(0xFF)});
    // Each chunk after a special token gets the dummy prefix too.
    CHECK(tok.encode("<s>hello", kNoBos) == Ids{1, v.id("\xE2\x96\x81hello")});

    CHECK(tok.decode(Ids{1, v.id("\xE2\x96\x81hello"), v.id("\xE2\x96\x81world")}) == "<s>hello world");
    CHECK(tok.decode(Ids{1, v.id("\xE2\x96\x81hello")}, {.skip_control = true}) == "hello");
    CHECK(tok.decode(Ids{v.id("\xE2\x96\x81"), byte(0xFF)}) == kReplacement);
    for (const std::string s : {"hello world", " hello", "  two", "\n", "\xC3\xA9t\xC3\xA9", "a b  c ", "<s>x"})
        CHECK(tok.decode(tok.encode(s, kPlain)) == s);
    // Generated tokens continue the prompt's text: their first space is real and is kept.
    const Ids world{v.id("\xE2\x96\x81world")};
    CHECK(tok.decode(world) == "world");
    CHECK(tok.decode(world, {.continuation = true}) == " world");
    StreamingDetokenizer stream(tok, {.skip_control = true, .continuation = true});
    CHECK(stream.feed(world[0]) + stream.flush() == " world");
}

TEST_CASE("SentencePiece without the dummy prefix", "[tokenizer][spm]") {
    const SpmVocab v;
    auto w = v.writer();
    w.set("tokenizer.ggml.add_space_prefix", gguf::Value::boolean(false));
    const auto tok = tokenizer_of(w);
    CHECK(tok.encode("hello world", kPlain) == Ids{v.id("hello"), v.id("\xE2\x96\x81world")});
    CHECK(tok.decode(tok.encode(" hello", kPlain)) == " hello");
}

TEST_CASE("SentencePiece unused pieces are split back; no byte tokens means <unk>", "[tokenizer][spm]") {
    SpmVocab v;
    v.types[size_t(v.id("hello"))] = 5;  // unused: "hello" must come out as "hell" + "o"
    auto w = v.writer();
    w.set("tokenizer.ggml.add_space_prefix", gguf::Value::boolean(false));
    CHECK(tokenizer_of(w).encode("hello", kPlain) == Ids{v.id("hell"), v.id("o")});

    SpmVocab no_bytes;
    for (unsigned b = 0; b < 256; ++b) no_bytes.types[3 + b] = 1;  // no longer byte tokens
    CHECK(tokenizer_of(no_bytes.writer()).encode("\xC3\xA9", kPlain) == Ids{no_bytes.id("\xE2\x96\x81"), 0});
}

TEST_CASE("concurrent encodes agree", "[tokenizer][threads]") {
    const BpeVocab v;
    const auto tok = tokenizer_of(v.writer());
    const std::string text = "hello world hello<|end|> world, hello!";
    const auto expected = tok.encode(text);
    std::vector<std::thread> threads;
    std::atomic<int> mismatches{0};
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 500; ++i)
                if (tok.encode(text) != expected) ++mismatches;
        });
    for (auto& t : threads) t.join();
    CHECK(mismatches == 0);
}
