// The real files: stories260K (facts from its README) and every tokenizer-vectors vocabulary.
// Missing files make this program report "skipped" with the reason.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "catch.hpp"
#include "gguf/reader.h"
#include "gguf/writer.h"
#include "support/test_data.h"

using namespace loom::gguf;
namespace fs = std::filesystem;

namespace {
std::vector<char> read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

const fs::path& stories() {
    static const fs::path p = loom::test::require_stories260k();
    return p;
}
}  // namespace

TEST_CASE("stories260K: llama, 5 blocks, dim 64, 8/4 heads, ffn 172, ctx 2048, vocab 512, 48 F32 tensors",
          "[gguf][real]") {
    const auto f = File::open(stories());
    CHECK(f.version() == 3);
    CHECK(f.find("general.alignment") == nullptr);
    CHECK(f.alignment() == 32);
    CHECK(f.get_string("general.architecture") == "llama");
    CHECK(f.get_uint("llama.block_count") == 5);
    CHECK(f.get_uint("llama.embedding_length") == 64);
    CHECK(f.get_uint("llama.attention.head_count") == 8);
    CHECK(f.get_uint("llama.attention.head_count_kv") == 4);
    CHECK(f.get_uint("llama.feed_forward_length") == 172);
    CHECK(f.get_uint("llama.context_length") == 2048);
    CHECK(f.at("tokenizer.ggml.tokens").as_array().size() == 512);
    CHECK(f.get_string("tokenizer.ggml.model") == "llama");
    CHECK(f.get_uint("tokenizer.ggml.seperator_token_id") == 0xFFFFFFFFu);
    REQUIRE(f.tensors().size() == 48);
    for (const auto& t : f.tensors()) CHECK(t.type == TensorType::F32);

    // GGUF ne order: token_embd is ne = {64, 512}: rows of 64 contiguous floats, one per token.
    const TensorInfo* embd = f.find_tensor("token_embd.weight");
    REQUIRE(embd);
    CHECK(embd->ne == std::vector<uint64_t>{64, 512});
    CHECK(embd->n_rows() == 512);
    const TensorInfo* out = f.find_tensor("output.weight");
    REQUIRE(out);
    const auto a = f.tensor_data(*embd), b = f.tensor_data(*out);
    CHECK(std::equal(a.begin(), a.end(), b.begin(), b.end()));  // the README: byte-identical
    const auto w = f.dequantize_tensor(*f.find_tensor("blk.0.ffn_down.weight"));
    CHECK(f.find_tensor("blk.0.ffn_down.weight")->ne == std::vector<uint64_t>{172, 64});
    double sum2 = 0;
    for (float x : w) {
        REQUIRE(std::isfinite(x));
        sum2 += double(x) * x;
    }
    CHECK(sum2 > 0);
}

TEST_CASE("stories260K: read -> write reproduces the file byte for byte", "[gguf][real][writer]") {
    const auto f = File::open(stories());
    const auto out = loom::test::temp_dir() / "copy.gguf";
    Writer::copy_of(f).write(out);
    CHECK(read_all(out) == read_all(stories()));
}

TEST_CASE("every tokenizer-vectors vocabulary parses", "[gguf][real]") {
    const auto dir = loom::test::require_tokenizer_vectors();
    int count = 0;
    for (const auto& entry : fs::directory_iterator(dir)) {
        if (entry.path().extension() != ".gguf") continue;
        INFO(entry.path());
        const auto f = File::open(entry.path());
        CHECK(f.tensors().empty());
        const auto n_tokens = f.at("tokenizer.ggml.tokens").as_array().size();
        CHECK(n_tokens >= 32000);
        CHECK(!f.get_string("tokenizer.ggml.model").empty());
        if (const Value* types = f.find("tokenizer.ggml.token_type")) CHECK(types->as_i32_array().size() == n_tokens);
        ++count;
    }
    CHECK(count == 5);
}
