// ModelConfig::from_gguf: what it reads, and the errors that name the architecture, key or tensor.
#include <functional>
#include <span>

#include "catch.hpp"
#include "engine/errors.h"
#include "engine/model_config.h"
#include "gguf/writer.h"

using namespace loom;
using gguf::TensorType;
using gguf::Value;

namespace {

// A tiny model (d 8, 2 layers, 2 heads / 1 KV head, ffn 12, vocab 16) of architecture `arch`;
// `edit` may override its metadata. Tensor data is left as zeros: only metadata and shapes matter.
engine::ModelConfig parse_tiny(const std::string& arch = "llama", const std::function<void(gguf::Writer&)>& edit = {},
                               TensorType q_type = TensorType::F32) {
    gguf::Writer w;
    w.set("general.architecture", Value::string(arch));
    const std::string p = arch + ".";
    w.set(p + "embedding_length", Value::u32(8));
    w.set(p + "block_count", Value::u32(2));
    w.set(p + "attention.head_count", Value::u32(2));
    w.set(p + "attention.head_count_kv", Value::u32(1));
    w.set(p + "feed_forward_length", Value::u32(12));
    w.set(p + "context_length", Value::u32(64));
    if (edit) edit(w);
    const auto tensor = [&](const std::string& name, std::vector<uint64_t> ne, TensorType type = TensorType::F32) {
        w.add_tensor(name, type, ne, [](std::span<uint8_t>) {});
    };
    tensor("token_embd.weight", {8, 16});
    tensor("output_norm.weight", {8});
    for (int l = 0; l < 2; ++l) {
        const std::string b = "blk." + std::to_string(l) + ".";
        tensor(b + "attn_norm.weight", {8});
        if (q_type == TensorType::F32)
            tensor(b + "attn_q.weight", {8, 8});
        else
            tensor(b + "attn_q.weight", {256, 8}, q_type);  // quantized types need 256-wide rows
        tensor(b + "attn_k.weight", {8, 4});
        tensor(b + "attn_v.weight", {8, 4});
        tensor(b + "attn_output.weight", {8, 8});
        tensor(b + "ffn_norm.weight", {8});
        tensor(b + "ffn_gate.weight", {8, 12});
        tensor(b + "ffn_up.weight", {8, 12});
        tensor(b + "ffn_down.weight", {12, 8});
    }
    auto bytes = w.header_bytes();
    bytes.resize(w.file_size(), 0);
    return engine::ModelConfig::from_gguf(gguf::File::parse(bytes));
}

}  // namespace

TEST_CASE("a tiny llama is read with its shapes, GQA and tied embeddings", "[engine][config]") {
    const auto c = parse_tiny();
    CHECK(c.arch == engine::Architecture::Llama);
    CHECK(c.n_vocab == 16);
    CHECK(c.n_embd == 8);
    CHECK(c.n_layer == 2);
    CHECK(c.n_head == 2);
    CHECK(c.n_head_kv == 1);
    CHECK(c.head_dim == 4);
    CHECK(c.kv_dim() == 4);
    CHECK(c.tied_embeddings);
    CHECK(c.rope_mode == engine::RopeMode::Normal);
    CHECK(c.rope_freq_divisors.empty());
}

TEST_CASE("model errors name the architecture, the tensor type and tensor, or the key", "[engine][config]") {
    CHECK_THROWS_WITH(parse_tiny("gpt2"), "unsupported architecture 'gpt2' (loom runs llama, qwen2, qwen3)");
    CHECK_THROWS_WITH(parse_tiny("llama", {}, TensorType::IQ2_XS),
                      "unsupported tensor type IQ2_XS in blk.0.attn_q.weight");
    CHECK_THROWS_WITH(parse_tiny("llama", {}, TensorType::Q4_K),
                      "tensor blk.0.attn_q.weight has shape {256, 8}, the metadata implies {8, 8}");
    CHECK_THROWS_WITH(
        parse_tiny("llama", [](gguf::Writer& w) { w.set("llama.rope.scaling.type", Value::string("yarn")); }),
        "rope scaling type 'yarn' (llama.rope.scaling.type) is not supported");
    CHECK_THROWS_WITH(parse_tiny("llama",
                                 [](gguf::Writer& w) {
                                     w.set("llama.attention.head_count_kv", Value::i32_array({1, 1}));
                                 }),
                      "metadata key 'llama.attention.head_count_kv' is a per-layer array; loom supports one value "
                      "for all layers");
    CHECK_THROWS_WITH(
        parse_tiny("llama", [](gguf::Writer& w) { w.set("llama.attention.head_count_kv", Value::u32(3)); }),
        "head_count 2 is not a multiple of head_count_kv 3");
}

TEST_CASE("a tokenizer with more tokens than the embedding has rows is refused at load", "[engine][config]") {
    const auto with_tokens = [](int n) {
        return [n](gguf::Writer& w) {
            std::vector<std::string> tokens;
            for (int i = 0; i < n; ++i) tokens.push_back("t" + std::to_string(i));
            w.set("tokenizer.ggml.tokens", Value::string_array(tokens));
        };
    };
    CHECK(parse_tiny("llama", with_tokens(16)).n_vocab == 16);
    CHECK(parse_tiny("llama", with_tokens(12)).n_vocab == 16);  // padded embedding rows are fine
    CHECK_THROWS_WITH(parse_tiny("llama", with_tokens(17)),
                      "tokenizer.ggml.tokens has 17 tokens but token_embd.weight has 16 rows: ids from 16 on would "
                      "have no embedding");
}
