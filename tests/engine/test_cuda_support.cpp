// check_cuda_attention_heads: the CUDA backend's load-time head check, run without a GPU.
#include <span>

#include "catch.hpp"
#include "engine/cuda_support.h"
#include "engine/errors.h"
#include "engine/model_config.h"
#include "gguf/writer.h"

using namespace loom;
using gguf::TensorType;
using gguf::Value;

namespace {

// A model file (d 32, 1 layer, 4 heads / kv_heads KV heads) whose head size is set by
// attention.key_length when `key_length` is true, else derived as 32 / 4 = 8.
std::vector<uint8_t> model_bytes(int head_dim, bool key_length = true, int kv_heads = 1) {
    gguf::Writer w;
    w.set("general.architecture", Value::string("llama"));
    w.set("llama.embedding_length", Value::u32(32));
    w.set("llama.block_count", Value::u32(1));
    w.set("llama.attention.head_count", Value::u32(4));
    w.set("llama.attention.head_count_kv", Value::u32(static_cast<uint32_t>(kv_heads)));
    w.set("llama.feed_forward_length", Value::u32(16));
    w.set("llama.context_length", Value::u32(64));
    if (key_length) {
        w.set("llama.attention.key_length", Value::u32(static_cast<uint32_t>(head_dim)));
        w.set("llama.attention.value_length", Value::u32(static_cast<uint32_t>(head_dim)));
    }
    const auto q = static_cast<uint64_t>(4 * head_dim), kv = static_cast<uint64_t>(kv_heads * head_dim);
    const auto tensor = [&](const std::string& name, std::vector<uint64_t> ne) {
        w.add_tensor(name, TensorType::F32, ne, [](std::span<uint8_t>) {});
    };
    tensor("token_embd.weight", {32, 16});
    tensor("output_norm.weight", {32});
    tensor("blk.0.attn_norm.weight", {32});
    tensor("blk.0.attn_q.weight", {32, q});
    tensor("blk.0.attn_k.weight", {32, kv});
    tensor("blk.0.attn_v.weight", {32, kv});
    tensor("blk.0.attn_output.weight", {q, 32});
    tensor("blk.0.ffn_norm.weight", {32});
    tensor("blk.0.ffn_gate.weight", {32, 16});
    tensor("blk.0.ffn_up.weight", {32, 16});
    tensor("blk.0.ffn_down.weight", {16, 32});
    auto bytes = w.header_bytes();
    bytes.resize(w.file_size(), 0);
    return bytes;
}

// The check's message, or "" when it accepts the model.
std::string refusal(const std::vector<uint8_t>& bytes) {
    const gguf::File f = gguf::File::parse(bytes);
    const engine::ModelConfig c = engine::ModelConfig::from_gguf(f);
    try {
        engine::check_cuda_attention_heads(f, c);
    } catch (const engine::ModelError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("the CUDA head check accepts 8 and every multiple of 16 up to 256", "[engine][cuda_support]") {
    for (const int hd : {16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 192, 256}) {
        INFO("head_dim " << hd);
        CHECK(refusal(model_bytes(hd)).empty());
    }
    CHECK(refusal(model_bytes(8, false)).empty());  // 32 / 4: stories260K's size
    for (const int kv_heads : {1, 2, 4}) CHECK(refusal(model_bytes(64, true, kv_heads)).empty());  // GQA 4, 2; MHA
}

TEST_CASE("the CUDA head check refuses other head sizes, naming the key and value", "[engine][cuda_support]") {
    for (const int hd : {4, 24, 40, 72, 120, 272, 512}) {
        INFO("head_dim " << hd);
        const std::string why = refusal(model_bytes(hd));
        CHECK_THAT(why, test::contains("head_dim " + std::to_string(hd)) &&
                            test::contains("llama.attention.key_length") && test::contains("blk.0.attn_k.weight") &&
                            test::contains("multiple of 16 up to 256"));
    }
}
