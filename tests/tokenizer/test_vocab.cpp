// Building a tokenizer from GGUF metadata: model types, special ids, flags and typed errors.
#include "catch.hpp"
#include "test_vocab_builder.h"
#include "tokenizer/pre_tokenizer_rules.h"

using namespace loom;
using namespace loom::tokenizer;
using loom::test::BpeVocab;
using loom::test::SpmVocab;
using loom::test::tokenizer_of;

TEST_CASE("unsupported tokenizer models throw an error naming the model", "[tokenizer][vocab]") {
    for (const std::string model : {"bert", "t5", "rwkv", "no_vocab"}) {
        auto w = BpeVocab().writer();
        w.set("tokenizer.ggml.model", gguf::Value::string(model));
        try {
            tokenizer_of(w);
            FAIL("no error for " << model);
        } catch (const UnsupportedModelError& e) {
            CHECK(e.model() == model);
            CHECK(std::string(e.what()).find("'" + model + "'") != std::string::npos);
        }
    }
}

TEST_CASE("missing or inconsistent metadata throws VocabularyError naming the key", "[tokenizer][vocab]") {
    const auto key_of_error = [](const gguf::Writer& w) -> std::string {
        try {
            tokenizer_of(w);
        } catch (const VocabularyError& e) {
            return e.key();
        }
        return "no error";
    };
    CHECK(key_of_error(gguf::Writer{}) == "tokenizer.ggml.model");

    gguf::Writer bare;
    bare.set("tokenizer.ggml.model", gguf::Value::string("gpt2"));
    bare.set("tokenizer.ggml.tokens", gguf::Value::string_array(BpeVocab().tokens));
    CHECK(key_of_error(bare) == "tokenizer.ggml.merges");

    auto short_types = BpeVocab().writer();
    short_types.set("tokenizer.ggml.token_type", gguf::Value::i32_array({1, 1, 1}));
    CHECK(key_of_error(short_types) == "tokenizer.ggml.token_type");

    auto wrong_type = BpeVocab().writer();
    wrong_type.set("tokenizer.ggml.tokens", gguf::Value::u32(7));
    CHECK(key_of_error(wrong_type) == "tokenizer.ggml.tokens");

    auto empty = BpeVocab().writer();
    empty.set("tokenizer.ggml.tokens", gguf::Value::string_array({}));
    CHECK(key_of_error(empty) == "tokenizer.ggml.tokens");

    auto scores = SpmVocab().writer();
    scores.set("tokenizer.ggml.scores", gguf::Value::f32_array({1.f}));
    CHECK(key_of_error(scores) == "tokenizer.ggml.scores");
}

TEST_CASE("special token ids: none, out of range and the 'seperator' spelling", "[tokenizer][vocab]") {
    const BpeVocab v;
    auto w = v.writer();
    w.set("tokenizer.ggml.bos_token_id", gguf::Value::u32(0xFFFFFFFFu));
    w.set("tokenizer.ggml.eos_token_id", gguf::Value::u32(uint32_t(v.tokens.size())));
    w.set("tokenizer.ggml.padding_token_id", gguf::Value::i32(-1));
    w.set("tokenizer.ggml.seperator_token_id", gguf::Value::u32(5));
    w.set("tokenizer.ggml.eot_token_id", gguf::Value::u32(uint32_t(v.id("<|end|>"))));
    w.set("tokenizer.ggml.unknown_token_id", gguf::Value::u32(3));
    const auto tok = tokenizer_of(w);
    const auto& s = tok.special_ids();
    CHECK_FALSE(s.bos);
    CHECK_FALSE(s.eos);
    CHECK_FALSE(s.pad);
    CHECK(s.sep == 5);
    CHECK(s.eot == v.id("<|end|>"));
    CHECK(s.unk == 3);

    auto both = v.writer();
    both.set("tokenizer.ggml.separator_token_id", gguf::Value::u32(6));
    both.set("tokenizer.ggml.seperator_token_id", gguf::Value::u32(5));
    CHECK(tokenizer_of(both).special_ids().sep == 6);
}

TEST_CASE("flags default per model and follow the metadata", "[tokenizer][vocab]") {
    const auto bpe = tokenizer_of(BpeVocab().writer());
    CHECK(bpe.model() == ModelKind::BytePairGpt2);
    CHECK_FALSE(bpe.add_bos());
    CHECK_FALSE(bpe.add_eos());
    CHECK_FALSE(bpe.add_space_prefix());
    CHECK(bpe.pre() == "gpt-2");

    const auto spm = tokenizer_of(SpmVocab().writer());
    CHECK(spm.model() == ModelKind::SentencePieceLlama);
    CHECK(spm.add_bos());
    CHECK_FALSE(spm.add_eos());
    CHECK(spm.add_space_prefix());
    CHECK(spm.pre() == "default");

    auto w = SpmVocab().writer();
    w.set("tokenizer.ggml.add_bos_token", gguf::Value::boolean(false));
    w.set("tokenizer.ggml.add_eos_token", gguf::Value::boolean(true));
    w.set("tokenizer.ggml.add_space_prefix", gguf::Value::boolean(false));
    const auto flipped = tokenizer_of(w);
    CHECK_FALSE(flipped.add_bos());
    CHECK(flipped.add_eos());
    CHECK_FALSE(flipped.add_space_prefix());
}

TEST_CASE("token accessors", "[tokenizer][vocab]") {
    const BpeVocab v;
    const auto tok = tokenizer_of(v.writer());
    CHECK(tok.vocab_size() == v.tokens.size());
    CHECK(tok.token_text(v.id("Ġworld")) == "Ġworld");
    CHECK(tok.token_bytes(v.id("Ġworld")) == " world");
    CHECK(tok.token_type(v.id("<|end|>")) == TokenType::Control);
    CHECK(tok.token_type(v.id("<tool>")) == TokenType::UserDefined);
    CHECK(tok.find_token("hello") == v.id("hello"));
    CHECK_FALSE(tok.find_token("nope"));
    CHECK_THROWS_AS(tok.token_text(-1), InvalidTokenIdError);
    CHECK_THROWS_AS(tok.token_bytes(int32_t(v.tokens.size())), InvalidTokenIdError);

    const SpmVocab s;
    const auto spm = tokenizer_of(s.writer());
    CHECK(spm.token_bytes(s.id("<0x41>")) == "A");
    CHECK(spm.token_bytes(s.id("\xE2\x96\x81world")) == " world");
    CHECK(spm.token_type(0) == TokenType::Unknown);
}

TEST_CASE("every known pre value has rules; unknown values fall back to GPT-2", "[tokenizer][vocab]") {
    for (const auto pre : known_pre_values()) {
        INFO(pre);
        CHECK(rules_for_pre(pre).known);
        CHECK_NOTHROW(tokenizer_of(BpeVocab().writer(std::string(pre))));
    }
    const auto rules = rules_for_pre("no-such-pre");
    CHECK_FALSE(rules.known);
    CHECK(rules.family == "gpt-2");
    // Still a working tokenizer (a warning naming the value is logged).
    const BpeVocab v;
    const auto tok = tokenizer_of(v.writer("no-such-pre"));
    CHECK(tok.encode("hello", {.add_special = false}) == std::vector<TokenId>{v.id("hello")});
}
