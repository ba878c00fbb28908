// Oracle model files: metadata and seeded F32 tensors for the llama, qwen2 and qwen3 test models.
#include "support/oracle_models.h"

#include <cctype>
#include <cmath>
#include <cstring>
#include <span>

#include "gguf/quantize.h"
#include "gguf/synth.h"
#include "gguf/writer.h"

namespace loom::test {
namespace {

// splitmix64 of (seed, index): the index-th value of the tensor seeded `seed`, independent of
// every other (so a tensor is filled in any order, and Python could redo it exactly).
uint64_t mix(uint64_t seed, uint64_t index) {
    uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// n values uniform on (-a, a) with a = sqrt(3) * 0.25: standard deviation 0.25, plus `offset`,
// stored as `type` (gguf::quantize rounds F16 to nearest even).
gguf::Writer::Producer uniform(uint64_t seed, float offset, gguf::TensorType type, uint64_t n) {
    return [seed, offset, type, n](std::span<uint8_t> bytes) {
        const double a = std::sqrt(3.0) * 0.25;
        std::vector<float> values(n);
        for (uint64_t i = 0; i < n; ++i) {
            const double u = static_cast<double>(mix(seed, i) >> 11) * 0x1.0p-53;  // [0, 1)
            values[i] = static_cast<float>((2.0 * u - 1.0) * a) + offset;
        }
        if (type == gguf::TensorType::F32)
            std::memcpy(bytes.data(), values.data(), n * sizeof(float));
        else
            gguf::quantize(type, values.data(), bytes.data(), n);
    };
}

}  // namespace

std::string OracleSpec::name() const {
    std::string type =
        matrix_type == gguf::TensorType::F32 ? "" : "-" + std::string(gguf::tensor_type_name(matrix_type));
    for (char& ch : type) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return arch + "-hd" + std::to_string(head_dim) + type;
}

namespace {

std::vector<OracleSpec> specs_of(std::initializer_list<gguf::TensorType> types) {
    std::vector<OracleSpec> specs;
    for (const char* arch : {"llama", "qwen2", "qwen3"})
        for (const gguf::TensorType type : types)
            for (const int hd : {64, 96, 128, 256}) specs.push_back({arch, hd, type});
    return specs;
}

}  // namespace

std::vector<OracleSpec> oracle_specs() { return specs_of({gguf::TensorType::F32, gguf::TensorType::F16}); }

std::vector<OracleSpec> oracle_quantized_specs() { return specs_of({gguf::TensorType::Q8_0, gguf::TensorType::Q4_K}); }

void write_oracle_model(const OracleSpec& spec, const std::filesystem::path& path) {
    using gguf::TensorType;
    using gguf::Value;
    gguf::Writer w;
    const std::string p = spec.arch + ".";
    const bool qwen = spec.arch != "llama";
    w.set("general.architecture", Value::string(spec.arch));
    w.set("general.name", Value::string("loom-oracle-" + spec.name()));
    w.set(p + "context_length", Value::u32(kOracleContext));
    w.set(p + "embedding_length", Value::u32(kOracleEmbd));
    w.set(p + "block_count", Value::u32(kOracleLayers));
    w.set(p + "feed_forward_length", Value::u32(kOracleFfn));
    w.set(p + "attention.head_count", Value::u32(kOracleHeads));
    w.set(p + "attention.head_count_kv", Value::u32(kOracleKvHeads));
    w.set(p + "attention.key_length", Value::u32(static_cast<uint32_t>(spec.head_dim)));
    w.set(p + "attention.value_length", Value::u32(static_cast<uint32_t>(spec.head_dim)));
    w.set(p + "attention.layer_norm_rms_epsilon", Value::f32(qwen ? 1e-6f : 1e-5f));
    w.set(p + "rope.freq_base", Value::f32(qwen ? 1000000.f : 10000.f));

    const auto d = static_cast<uint64_t>(kOracleEmbd), ff = static_cast<uint64_t>(kOracleFfn);
    const auto q = static_cast<uint64_t>(kOracleHeads * spec.head_dim);
    const auto kv = static_cast<uint64_t>(kOracleKvHeads * spec.head_dim);
    const auto hd = static_cast<uint64_t>(spec.head_dim);
    // One seed per model (from its architecture and head size), then one per tensor in file order.
    uint64_t seed = mix(static_cast<uint64_t>(spec.head_dim) * 1000003u + static_cast<uint64_t>(spec.arch.back()), 0);
    // Vectors (norms, biases) stay F32; matrices take spec.matrix_type. Seeds do not depend on it,
    // so every variant holds the F32 model's values, converted.
    const auto tensor = [&](const std::string& name, std::vector<uint64_t> ne, float offset = 0.f) {
        const TensorType type = ne.size() == 2 ? gguf::fit_row(spec.matrix_type, ne[0]) : TensorType::F32;
        const uint64_t n = ne.size() == 2 ? ne[0] * ne[1] : ne[0];
        w.add_tensor(name, type, std::move(ne), uniform(seed++, offset, type, n));
    };
    tensor("token_embd.weight", {d, kOracleVocab});
    tensor("output_norm.weight", {d}, 1.f);
    tensor("output.weight", {d, kOracleVocab});
    for (int l = 0; l < kOracleLayers; ++l) {
        const std::string b = "blk." + std::to_string(l) + ".";
        tensor(b + "attn_norm.weight", {d}, 1.f);
        tensor(b + "attn_q.weight", {d, q});
        tensor(b + "attn_k.weight", {d, kv});
        tensor(b + "attn_v.weight", {d, kv});
        if (spec.arch == "qwen2") {
            tensor(b + "attn_q.bias", {q});
            tensor(b + "attn_k.bias", {kv});
            tensor(b + "attn_v.bias", {kv});
        }
        if (spec.arch == "qwen3") {
            tensor(b + "attn_q_norm.weight", {hd}, 1.f);
            tensor(b + "attn_k_norm.weight", {hd}, 1.f);
        }
        tensor(b + "attn_output.weight", {q, d});
        tensor(b + "ffn_norm.weight", {d}, 1.f);
        tensor(b + "ffn_gate.weight", {d, ff});
        tensor(b + "ffn_up.weight", {d, ff});
        tensor(b + "ffn_down.weight", {ff, d});
    }
    w.write(path);
}

}  // namespace loom::test
