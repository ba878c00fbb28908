// Model description from GGUF metadata, with every tensor the forward pass reads checked.
#include "engine/model_config.h"

#include <cmath>
#include <numbers>

#include "engine/errors.h"
#include "gguf/errors.h"

namespace loom::engine {

namespace {

std::string shape_string(const std::vector<uint64_t>& ne) {
    std::string s = "{";
    for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "}";
}

// Requires tensor `name` with exactly shape `ne` (GGUF order) and a type loom can dequantize.
void check_tensor(const gguf::File& f, const std::string& name, std::vector<uint64_t> ne) {
    const gguf::TensorInfo* t = f.find_tensor(name);
    if (!t) throw ModelError("missing tensor " + name + " (expected shape " + shape_string(ne) + ")");
    if (!gguf::tensor_type_info(t->type).dequantizable)
        throw ModelError(gguf::UnsupportedTypeError(t->type, name).what());
    if (t->ne != ne)
        throw ModelError("tensor " + name + " has shape " + shape_string(t->ne) + ", the metadata implies " +
                         shape_string(ne));
}

int positive_int(const gguf::File& f, const std::string& key) {
    const gguf::Value* v = f.find(key);
    if (!v) throw ModelError("missing metadata key '" + key + "'");
    if (v->type() == gguf::ValueType::ARRAY)
        throw ModelError("metadata key '" + key + "' is a per-layer array; loom supports one value for all layers");
    const uint64_t x = v->as_uint(key);
    if (x == 0 || x > (1u << 30))
        throw ModelError("metadata key '" + key + "' = " + std::to_string(x) + " is out of range");
    return static_cast<int>(x);
}

// Llama-3 frequency-dependent scaling: long wavelengths are slowed by `factor`, short ones kept,
// and the band between is interpolated.
std::vector<float> llama3_divisors(int rope_dim, float base, float factor, float low_freq_factor,
                                   float high_freq_factor, float original_ctx) {
    std::vector<float> d(rope_dim / 2);
    const double low_wavelen = original_ctx / low_freq_factor;
    const double high_wavelen = original_ctx / high_freq_factor;
    for (int i = 0; i < rope_dim / 2; ++i) {
        const double freq = std::pow(double(base), -2.0 * i / rope_dim);
        const double wavelen = 2 * std::numbers::pi / freq;
        if (wavelen < high_wavelen) {
            d[i] = 1.f;
        } else if (wavelen > low_wavelen) {
            d[i] = factor;
        } else {
            const double smooth = (original_ctx / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
            d[i] = static_cast<float>(1.0 / ((1 - smooth) / factor + smooth));
        }
    }
    return d;
}

void read_rope_scaling(const gguf::File& f, ModelConfig& c) {
    const std::string p = c.arch_name + ".rope.scaling.";
    if (const gguf::TensorInfo* t = f.find_tensor("rope_freqs.weight")) {
        check_tensor(f, "rope_freqs.weight", {static_cast<uint64_t>(c.rope_dim / 2)});
        c.rope_freq_divisors = f.dequantize_tensor(*t);
        return;
    }
    const std::string type = f.find_string(p + "type").value_or("none");
    if (type == "none") return;
    const float factor = static_cast<float>(f.find_float(p + "factor").value_or(1.0));
    if (!(factor > 0)) throw ModelError("metadata key '" + p + "factor' must be positive");
    if (type == "linear") {
        c.rope_freq_divisors.assign(c.rope_dim / 2, factor);
    } else if (type == "llama3") {
        c.rope_freq_divisors = llama3_divisors(
            c.rope_dim, c.rope_base, factor, static_cast<float>(f.find_float(p + "low_freq_factor").value_or(1.0)),
            static_cast<float>(f.find_float(p + "high_freq_factor").value_or(4.0)),
            static_cast<float>(f.find_float(p + "original_context_length").value_or(8192.0)));
    } else {
        throw ModelError("rope scaling type '" + type + "' (" + p + "type) is not supported");
    }
}

}  // namespace

std::string to_string(Architecture arch) {
    switch (arch) {
        case Architecture::Llama: return "llama";
        case Architecture::Qwen2: return "qwen2";
        case Architecture::Qwen3: return "qwen3";
    }
    return "unknown";
}

std::string layer_tensor(int layer, const char* suffix) { return "blk." + std::to_string(layer) + "." + suffix; }

ModelConfig ModelConfig::from_gguf(const gguf::File& f) {
    ModelConfig c;
    const auto arch = f.find_string("general.architecture");
    if (!arch) throw ModelError("missing metadata key 'general.architecture'");
    c.arch_name = *arch;
    if (c.arch_name == "llama")
        c.arch = Architecture::Llama;
    else if (c.arch_name == "qwen2")
        c.arch = Architecture::Qwen2;
    else if (c.arch_name == "qwen3")
        c.arch = Architecture::Qwen3;
    else
        throw ModelError("unsupported architecture '" + c.arch_name + "' (loom runs llama, qwen2, qwen3)");

    const std::string p = c.arch_name + ".";
    c.n_embd = positive_int(f, p + "embedding_length");
    c.n_layer = positive_int(f, p + "block_count");
    c.n_head = positive_int(f, p + "attention.head_count");
    c.n_head_kv = f.find(p + "attention.head_count_kv") ? positive_int(f, p + "attention.head_count_kv") : c.n_head;
    c.n_ff = positive_int(f, p + "feed_forward_length");
    c.n_ctx_train = positive_int(f, p + "context_length");
    if (c.n_head % c.n_head_kv != 0)
        throw ModelError("head_count " + std::to_string(c.n_head) + " is not a multiple of head_count_kv " +
                         std::to_string(c.n_head_kv));
    c.head_dim = f.find(p + "attention.key_length") ? positive_int(f, p + "attention.key_length") : c.n_embd / c.n_head;
    if (f.find(p + "attention.value_length") && positive_int(f, p + "attention.value_length") != c.head_dim)
        throw ModelError("attention.value_length differs from key_length; loom needs equal Q/K/V head sizes");
    if (c.head_dim % 2 != 0) throw ModelError("head size " + std::to_string(c.head_dim) + " is odd; RoPE needs pairs");
    c.rope_dim = f.find(p + "rope.dimension_count") ? positive_int(f, p + "rope.dimension_count") : c.head_dim;
    if (c.rope_dim != c.head_dim)
        throw ModelError("partial RoPE (rope.dimension_count " + std::to_string(c.rope_dim) + " < head size " +
                         std::to_string(c.head_dim) + ") is not supported");
    c.rms_eps = static_cast<float>(f.find_float(p + "attention.layer_norm_rms_epsilon").value_or(1e-5));
    c.rope_base = static_cast<float>(f.find_float(p + "rope.freq_base").value_or(10000.0));
    c.rope_mode = c.arch == Architecture::Llama ? RopeMode::Normal : RopeMode::NeoX;
    c.qkv_bias = c.arch == Architecture::Qwen2;
    c.qk_norm = c.arch == Architecture::Qwen3;
    read_rope_scaling(f, c);

    const gguf::TensorInfo* embd = f.find_tensor("token_embd.weight");
    if (!embd) throw ModelError("missing tensor token_embd.weight");
    if (embd->ne.size() != 2 || embd->ne[0] != static_cast<uint64_t>(c.n_embd))
        throw ModelError("tensor token_embd.weight has shape " + shape_string(embd->ne) + ", expected {" +
                         std::to_string(c.n_embd) + ", n_vocab}");
    c.n_vocab = static_cast<int>(embd->ne[1]);
    // A tokenizer with more tokens than the embedding has rows would hand the model ids it has no row
    // for; refuse the file here, not each request that meets one of them. Fewer tokens is common
    // (rows padded to a multiple of 64 or 128) and harmless.
    if (const gguf::Value* tokens = f.find("tokenizer.ggml.tokens")) {
        const size_t n_tokens = tokens->as_array("tokenizer.ggml.tokens").size();
        if (n_tokens > embd->ne[1])
            throw ModelError("tokenizer.ggml.tokens has " + std::to_string(n_tokens) +
                             " tokens but token_embd.weight has " + std::to_string(embd->ne[1]) + " rows: ids from " +
                             std::to_string(embd->ne[1]) + " on would have no embedding");
    }
    const auto d = static_cast<uint64_t>(c.n_embd), v = static_cast<uint64_t>(c.n_vocab);
    const auto q = static_cast<uint64_t>(c.q_dim()), kv = static_cast<uint64_t>(c.kv_dim());
    const auto ff = static_cast<uint64_t>(c.n_ff), hd = static_cast<uint64_t>(c.head_dim);
    check_tensor(f, "token_embd.weight", {d, v});
    check_tensor(f, "output_norm.weight", {d});
    c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
    if (!c.tied_embeddings) check_tensor(f, "output.weight", {d, v});
    for (int l = 0; l < c.n_layer; ++l) {
        check_tensor(f, layer_tensor(l, "attn_norm.weight"), {d});
        check_tensor(f, layer_tensor(l, "attn_q.weight"), {d, q});
        check_tensor(f, layer_tensor(l, "attn_k.weight"), {d, kv});
        check_tensor(f, layer_tensor(l, "attn_v.weight"), {d, kv});
        check_tensor(f, layer_tensor(l, "attn_output.weight"), {q, d});
        check_tensor(f, layer_tensor(l, "ffn_norm.weight"), {d});
        check_tensor(f, layer_tensor(l, "ffn_gate.weight"), {d, ff});
        check_tensor(f, layer_tensor(l, "ffn_up.weight"), {d, ff});
        check_tensor(f, layer_tensor(l, "ffn_down.weight"), {ff, d});
        if (c.qkv_bias) {
            check_tensor(f, layer_tensor(l, "attn_q.bias"), {q});
            check_tensor(f, layer_tensor(l, "attn_k.bias"), {kv});
            check_tensor(f, layer_tensor(l, "attn_v.bias"), {kv});
        }
        if (c.qk_norm) {
            check_tensor(f, layer_tensor(l, "attn_q_norm.weight"), {hd});
            check_tensor(f, layer_tensor(l, "attn_k_norm.weight"), {hd});
        }
    }
    return c;
}

}  // namespace loom::engine
