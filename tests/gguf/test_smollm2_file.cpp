// SmolLM2-135M-Instruct Q4_1 (from test-models/fetch): tensor types, tokenizer keys, dequantization.
// A missing file makes this program report "skipped" with the reason.
#include <cmath>
#include <map>

#include "catch.hpp"
#include "gguf/reader.h"
#include "support/test_data.h"

using namespace loom::gguf;

TEST_CASE("SmolLM2-135M-Instruct Q4_1 parses with its types and chat template", "[gguf][real]") {
    const auto f = File::open(loom::test::require_smollm2());
    CHECK(f.get_string("general.architecture") == "llama");
    CHECK(f.get_uint("llama.block_count") == 30);
    CHECK(f.get_uint("llama.embedding_length") == 576);
    CHECK(f.get_string("tokenizer.ggml.model") == "gpt2");
    CHECK(f.get_string("tokenizer.ggml.pre") == "smollm");
    CHECK(f.get_string("tokenizer.chat_template").find("<|im_start|>") != std::string::npos);
    std::map<TensorType, int> types;
    for (const auto& t : f.tensors()) ++types[t.type];
    CHECK(f.tensors().size() == 272);
    CHECK(types[TensorType::Q4_1] == 210);
    CHECK(types[TensorType::Q8_0] == 1);
    CHECK(types[TensorType::F32] == 61);
    const TensorInfo* q = f.find_tensor("blk.0.attn_q.weight");
    REQUIRE(q);
    CHECK(q->type == TensorType::Q4_1);
    const auto w = f.dequantize_tensor(*q);
    double sum2 = 0;
    for (float x : w) sum2 += double(x) * x;
    const double rms = std::sqrt(sum2 / double(w.size()));
    CHECK(rms > 0.01);
    CHECK(rms < 1.0);
}
