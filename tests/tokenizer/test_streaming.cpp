// The streaming detokenizer: only complete UTF-8 comes out, and everything together equals decode().
#include <random>

#include "catch.hpp"
#include "test_vocab_builder.h"

using namespace loom;
using namespace loom::tokenizer;
using loom::test::BpeVocab;
using loom::test::SpmVocab;
using loom::test::tokenizer_of;
using Ids = std::vector<TokenId>;

namespace {

const std::string kReplacement = "\xEF\xBF\xBD";

// Feeds ids one by one; checks each chunk is valid UTF-8 and returns their concatenation.
std::string stream(const Tokenizer& tok, const Ids& ids, const DecodeOptions& options = {}) {
    StreamingDetokenizer d(tok, options);
    std::string all;
    for (const TokenId id : ids) {
        const std::string chunk = d.feed(id);
        REQUIRE(is_valid_utf8(chunk));
        all += chunk;
    }
    const std::string rest = d.flush();
    REQUIRE(is_valid_utf8(rest));
    return all + rest;
}

}  // namespace

TEST_CASE("a character split across byte tokens comes out once complete", "[tokenizer][stream]") {
    const auto tok = tokenizer_of(BpeVocab().writer());
    StreamingDetokenizer d(tok);
    CHECK(d.feed('a') == "a");
    CHECK(d.feed(0xE2) == "");
    CHECK(d.feed(0x82) == "");
    CHECK(d.feed(0xAC) == "\xE2\x82\xAC");
    CHECK(d.feed(0xF0) == "");
    CHECK(d.feed('b') == kReplacement + "b");  // the lead byte can no longer complete
    CHECK(d.feed(0xFF) == kReplacement);       // never valid: replaced at once
    CHECK(d.feed(0xE2) == "");
    CHECK(d.flush() == kReplacement);  // unfinished at the end
    CHECK(d.flush() == "");
}

TEST_CASE("a bad id throws and leaves the stream as it was", "[tokenizer][stream]") {
    const auto tok = tokenizer_of(BpeVocab().writer());
    StreamingDetokenizer d(tok);
    CHECK(d.feed(0xE2) == "");
    CHECK_THROWS_AS(d.feed(-5), InvalidTokenIdError);
    CHECK_THROWS_AS(d.feed(TokenId(tok.vocab_size())), InvalidTokenIdError);
    CHECK(d.feed(0x82) == "");
    CHECK(d.feed(0xAC) == "\xE2\x82\xAC");
}

TEST_CASE("SentencePiece streaming drops the dummy prefix like decode, and reset starts over", "[tokenizer][stream]") {
    const SpmVocab v;
    const auto tok = tokenizer_of(v.writer());
    const Ids ids{1, v.id("\xE2\x96\x81hello"), v.id("\xE2\x96\x81world")};
    CHECK(stream(tok, ids) == tok.decode(ids));
    CHECK(stream(tok, ids, {.skip_control = true}) == "hello world");
    StreamingDetokenizer d(tok);
    CHECK(d.feed(v.id("\xE2\x96\x81hello")) == "hello");
    CHECK(d.feed(v.id("\xE2\x96\x81hello")) == " hello");
    d.reset();
    CHECK(d.feed(v.id("\xE2\x96\x81hello")) == "hello");
}

TEST_CASE("random id sequences: streaming equals whole decoding", "[tokenizer][stream]") {
    std::mt19937 rng(11);
    const auto bpe = tokenizer_of(BpeVocab().writer());
    const auto spm = tokenizer_of(SpmVocab().writer());
    for (const Tokenizer* tok : {&bpe, &spm}) {
        for (int round = 0; round < 300; ++round) {
            Ids ids(size_t(rng() % 40));
            for (TokenId& id : ids) id = TokenId(rng() % tok->vocab_size());
            for (const bool skip : {false, true}) {
                const std::string whole = tok->decode(ids, {.skip_control = skip});
                REQUIRE(is_valid_utf8(whole));
                REQUIRE(stream(*tok, ids, {.skip_control = skip}) == whole);
            }
        }
    }
}
