// SmolLM2 against reference ids from Hugging Face transformers' GGUF tokenizer conversion:
// tests/reference/smollm2_tokenizer_cases.jsonl, one {"text", "add_special", "parse_special", "ids"}
// object per line. Every line must match exactly.
#include <fstream>
#include <nlohmann/json.hpp>

#include "catch.hpp"
#include "support/test_data.h"
#include "tokenizer/tokenizer.h"

using namespace loom::tokenizer;

TEST_CASE("SmolLM2 matches the reference tokenizer on every case", "[tokenizer][smollm2][reference]") {
    const auto model = loom::test::require_smollm2();
    const auto cases = loom::test::require_file(
        std::filesystem::path(LOOM_SOURCE_DIR) / "tests/reference/smollm2_tokenizer_cases.jsonl",
        "made with Hugging Face transformers' GGUF tokenizer conversion");
    const Tokenizer tok = Tokenizer::open(model);

    std::ifstream in(cases, std::ios::binary);
    REQUIRE(in);
    size_t lines = 0, mismatches = 0;
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        ++lines;
        const auto j = nlohmann::json::parse(line);
        const std::string text = j.at("text").get<std::string>();
        const EncodeOptions options{.add_special = j.at("add_special").get<bool>(),
                                    .parse_special = j.at("parse_special").get<bool>()};
        const auto expected = j.at("ids").get<std::vector<TokenId>>();
        const auto got = tok.encode(text, options);
        if (got != expected) {
            ++mismatches;
            if (mismatches <= 10) {
                INFO("line " << lines << ": " << j.at("text").dump());
                CHECK(got == expected);
            }
        }
    }
    INFO(mismatches << " of " << lines << " lines differ");
    CHECK(lines >= 1000);
    CHECK(mismatches == 0);
}
