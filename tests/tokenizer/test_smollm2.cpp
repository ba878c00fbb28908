// The tokenizer of the real SmolLM2-135M-Instruct GGUF (gpt2 model, pre "smollm").
#include "catch.hpp"
#include "support/test_data.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

using namespace loom::tokenizer;
using Ids = std::vector<TokenId>;

namespace {

const Tokenizer& smollm2() {
    static const Tokenizer tok = Tokenizer::open(loom::test::require_smollm2());
    return tok;
}

}  // namespace

TEST_CASE("SmolLM2 metadata", "[tokenizer][smollm2]") {
    const Tokenizer& tok = smollm2();
    CHECK(tok.model() == ModelKind::BytePairGpt2);
    CHECK(tok.pre() == "smollm");
    CHECK(tok.vocab_size() == 49152);
    CHECK(tok.special_ids().bos == 1);
    CHECK(tok.special_ids().eos == 2);
    CHECK(tok.special_ids().pad == 2);
    CHECK(tok.special_ids().unk == 0);
    CHECK_FALSE(tok.add_bos());
    CHECK_FALSE(tok.add_space_prefix());
    CHECK(tok.token_type(1) == TokenType::Control);
}

TEST_CASE("SmolLM2 chat markup and digits", "[tokenizer][smollm2]") {
    const Tokenizer& tok = smollm2();
    const Ids ids = tok.encode("<|im_start|>user\nHi<|im_end|>\n");
    REQUIRE(ids.size() >= 4);
    CHECK(ids.front() == 1);
    CHECK(std::count(ids.begin(), ids.end(), 2) == 1);
    CHECK(tok.decode(ids) == "<|im_start|>user\nHi<|im_end|>\n");
    CHECK(tok.decode(ids, {.skip_control = true}) == "user\nHi\n");
    CHECK(tok.encode("12345", {.add_special = false}).size() == 5);
    CHECK(tok.encode("<|im_start|>", {.parse_special = false}).size() > 1);
}

TEST_CASE("SmolLM2 round trips and streams", "[tokenizer][smollm2]") {
    const Tokenizer& tok = smollm2();
    for (const std::string text :
         {"Hello, world!", "  two spaces\n\n\ttab", "int main() { return 0; }\n", "Ünïcödé — 日本語 🙂",
          "a\r\nb", "", " ", "'s 'S it's", "x = 3.14159e-10;"}) {
        INFO(text);
        const Ids ids = tok.encode(text);
        CHECK(tok.decode(ids) == text);
        StreamingDetokenizer d(tok);
        std::string streamed;
        for (const TokenId id : ids) {
            const std::string chunk = d.feed(id);
            CHECK(is_valid_utf8(chunk));
            streamed += chunk;
        }
        CHECK(streamed + d.flush() == text);
    }
}
