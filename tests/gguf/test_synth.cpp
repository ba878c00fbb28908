// Tests of `loom synth` model synthesis (gguf/synth.h): tensor plan and types, metadata, tokenizer
// copy and padding, weight statistics, determinism, and option errors. Small shapes only.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <numbers>
#include <set>
#include <string>
#include <vector>

#include "catch.hpp"
#include "gguf/errors.h"
#include "gguf/model_shapes.h"
#include "gguf/reader.h"
#include "gguf/synth.h"
#include "gguf/writer.h"
#include "support/test_data.h"

using namespace loom::gguf;
namespace fs = std::filesystem;

namespace {

const fs::path& spm_vocab() {
    static const fs::path p = loom::test::require_tokenizer_vectors() / "ggml-vocab-llama-spm.gguf";
    return p;
}

const fs::path& gpt2_vocab() {
    static const fs::path p = loom::test::require_tokenizer_vectors() / "ggml-vocab-gpt-2.gguf";
    return p;
}

const fs::path& tmp() {
    static const fs::path p = loom::test::temp_dir();
    return p;
}

std::vector<char> read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

SynthOptions options(SynthArch arch, const std::string& shape, SynthType type, uint64_t seed = 7) {
    SynthOptions o;
    o.arch = arch;
    o.shape = parse_model_shape(shape);
    o.type = type;
    o.vocab = arch == SynthArch::qwen2 ? gpt2_vocab() : spm_vocab();
    o.seed = seed;
    return o;
}

fs::path write(const SynthOptions& o, const std::string& file) {
    const fs::path path = tmp() / file;
    synthesize(o).writer.write(path);
    return path;
}

const std::vector<SynthType> kTypes = {SynthType::q4_0, SynthType::q4_1, SynthType::q8_0, SynthType::f16,
                                       SynthType::q4_k_m};

struct Expected {
    TensorType type;
    std::vector<uint64_t> ne;
};

// The tensor list written out by hand from the brief, independent of plan_tensors.
std::map<std::string, Expected> expected_tensors(SynthArch arch, const ModelShape& s, uint32_t vocab, SynthType t) {
    const uint64_t hd = s.embd / s.heads, q = s.heads * hd, kv = s.kv_heads * hd;
    const auto matrix_type = [&](uint64_t row, bool more_bits) {
        const bool k = t == SynthType::q4_k_m;
        TensorType want = t == SynthType::f16    ? TensorType::F16
                          : t == SynthType::q4_0 ? TensorType::Q4_0
                          : t == SynthType::q4_1 ? TensorType::Q4_1
                          : t == SynthType::q8_0 ? TensorType::Q8_0
                          : more_bits            ? TensorType::Q6_K
                                                 : TensorType::Q4_K;
        if (k && row % 256 != 0) want = want == TensorType::Q6_K ? TensorType::Q8_0 : TensorType::Q5_0;
        if (want != TensorType::F16 && row % 32 != 0) want = TensorType::F16;
        return want;
    };
    std::map<std::string, Expected> m;
    m["token_embd.weight"] = {matrix_type(s.embd, false), {s.embd, vocab}};
    m["output_norm.weight"] = {TensorType::F32, {s.embd}};
    if (!s.tied_embeddings) m["output.weight"] = {matrix_type(s.embd, true), {s.embd, vocab}};
    if (s.rope_scaling) m["rope_freqs.weight"] = {TensorType::F32, {hd / 2}};
    const uint32_t n = s.layers;
    for (uint32_t i = 0; i < n; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        const bool more = i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
        m[p + "attn_norm.weight"] = {TensorType::F32, {s.embd}};
        m[p + "ffn_norm.weight"] = {TensorType::F32, {s.embd}};
        m[p + "attn_q.weight"] = {matrix_type(s.embd, false), {s.embd, q}};
        m[p + "attn_k.weight"] = {matrix_type(s.embd, false), {s.embd, kv}};
        m[p + "attn_v.weight"] = {matrix_type(s.embd, more), {s.embd, kv}};
        m[p + "attn_output.weight"] = {matrix_type(q, false), {q, s.embd}};
        m[p + "ffn_gate.weight"] = {matrix_type(s.embd, false), {s.embd, s.ffn}};
        m[p + "ffn_up.weight"] = {matrix_type(s.embd, false), {s.embd, s.ffn}};
        m[p + "ffn_down.weight"] = {matrix_type(s.ffn, more), {s.ffn, s.embd}};
        if (arch == SynthArch::qwen2) {
            m[p + "attn_q.bias"] = {TensorType::F32, {q}};
            m[p + "attn_k.bias"] = {TensorType::F32, {kv}};
            m[p + "attn_v.bias"] = {TensorType::F32, {kv}};
        }
    }
    return m;
}

struct Stats {
    double mean, stddev;
};

Stats stats(const std::vector<float>& v) {
    double sum = 0, sum2 = 0;
    for (float x : v) sum += x;
    const double mean = sum / v.size();
    for (float x : v) sum2 += (x - mean) * (x - mean);
    return {mean, std::sqrt(sum2 / v.size())};
}

std::vector<std::pair<std::string, const Value*>> tokenizer_keys(const File& f) {
    std::vector<std::pair<std::string, const Value*>> out;
    for (const auto& [k, v] : f.metadata())
        if (k.starts_with("tokenizer.")) out.emplace_back(k, &v);
    return out;
}

// Element i of a packed numeric array, as a double.
double packed_at(const Array& a, size_t i) {
    const size_t w = value_type_size(a.elem_type);
    const uint8_t* p = a.packed.data() + i * w;
    switch (a.elem_type) {
        case ValueType::FLOAT32: {
            float f;
            std::memcpy(&f, p, 4);
            return f;
        }
        case ValueType::INT32: {
            int32_t x;
            std::memcpy(&x, p, 4);
            return x;
        }
        case ValueType::UINT32: {
            uint32_t x;
            std::memcpy(&x, p, 4);
            return x;
        }
        default: FAIL("unexpected element type " << value_type_name(a.elem_type)); return 0;
    }
}

}  // namespace

TEST_CASE("every type on stories260k (llama, qwen2): tensors, metadata, tokenizer, weight statistics", "[synth]") {
    for (SynthArch arch : {SynthArch::llama, SynthArch::qwen2}) {
        for (SynthType type : kTypes) {
            const std::string arch_s(synth_arch_name(arch)), type_s(synth_type_name(type));
            INFO(arch_s << " " << type_s);
            const SynthOptions o = options(arch, "stories260k", type);
            const fs::path path = write(o, "s260k-" + arch_s + "-" + type_s + ".gguf");
            const File f = File::open(path);
            const File vocab = File::open(o.vocab);
            const uint32_t n_tokens = static_cast<uint32_t>(vocab.at("tokenizer.ggml.tokens").as_array().size());
            REQUIRE(n_tokens > 512);  // both vocabularies raise the shape's 512

            // Tensors: exactly the expected names, types and shapes.
            const auto expected = expected_tensors(arch, o.shape, n_tokens, type);
            REQUIRE(f.tensors().size() == expected.size());
            for (const auto& t : f.tensors()) {
                INFO(t.name);
                const auto it = expected.find(t.name);
                REQUIRE(it != expected.end());
                CHECK(tensor_type_name(t.type) == tensor_type_name(it->second.type));
                CHECK(t.ne == it->second.ne);
            }
            CHECK(f.tensors().front().name == "token_embd.weight");

            // Metadata.
            const std::string a = arch_s + ".";
            CHECK(f.get_string("general.architecture") == arch_s);
            CHECK(f.get_string("general.name") == "loom-synth stories260k " + type_s + " seed 7");
            CHECK(f.get_uint("general.file_type") == static_cast<uint32_t>(type));
            CHECK(f.at("general.file_type").type() == ValueType::UINT32);
            CHECK(f.get_uint("general.quantization_version") == 2);
            const std::map<std::string, uint64_t> counts = {{"context_length", 2048},    {"embedding_length", 64},
                                                            {"block_count", 5},          {"feed_forward_length", 172},
                                                            {"attention.head_count", 8}, {"attention.head_count_kv", 4},
                                                            {"rope.dimension_count", 8}, {"vocab_size", n_tokens}};
            for (const auto& [k, v] : counts) {
                INFO(a + k);
                CHECK(f.at(a + k).type() == ValueType::UINT32);
                CHECK(f.get_uint(a + k) == v);
            }
            CHECK(f.at(a + "rope.freq_base").type() == ValueType::FLOAT32);
            CHECK(f.get_float(a + "rope.freq_base") == 10000.0);
            CHECK(f.at(a + "attention.layer_norm_rms_epsilon").type() == ValueType::FLOAT32);
            CHECK(f.get_float(a + "attention.layer_norm_rms_epsilon") == Approx(1e-5).epsilon(1e-6));
            CHECK(f.find(a + "rope.scaling.type") == nullptr);
            // Only general.*, <arch>.* and tokenizer.* keys; none of the vocab file's architecture keys.
            size_t own_keys = 0;
            for (const auto& [k, v] : f.metadata()) {
                INFO(k);
                CHECK((k.starts_with("general.") || k.starts_with(a) || k.starts_with("tokenizer.")));
                own_keys += !k.starts_with("tokenizer.");
            }
            CHECK(own_keys == 4 + counts.size() + 2);

            // Tokenizer: every tokenizer.* key, in order, unchanged (the vocab was raised, not padded).
            const auto got = tokenizer_keys(f), want = tokenizer_keys(vocab);
            REQUIRE(got.size() == want.size());
            for (size_t i = 0; i < got.size(); ++i) {
                INFO(want[i].first);
                CHECK(got[i].first == want[i].first);
                CHECK(*got[i].second == *want[i].second);
            }

            // Weights: matrices N(0, 1/sqrt(fan_in)), norms ~1, biases ~N(0, 0.02).
            for (const auto& t : f.tensors()) {
                INFO(t.name);
                const Stats s = stats(f.dequantize_tensor(t));
                const double mean_bound = 5.0 * 0.02 / std::sqrt(double(t.n_elems));
                if (t.name.ends_with("norm.weight")) {
                    CHECK(std::abs(s.mean - 1.0) < mean_bound);
                    CHECK(s.stddev == Approx(0.02).epsilon(0.35));
                } else if (t.name.ends_with(".bias")) {
                    CHECK(std::abs(s.mean) < mean_bound);
                    CHECK(s.stddev == Approx(0.02).epsilon(0.35));
                } else {
                    const double target = 1.0 / std::sqrt(double(t.ne[0]));
                    CHECK(s.stddev == Approx(target).epsilon(0.1));
                    CHECK(std::abs(s.mean) < 5.0 * target / std::sqrt(double(t.n_elems)) + 0.01 * target);
                }
            }
        }
    }
}

TEST_CASE("the synthesized model agrees with its plan and the writer's size", "[synth]") {
    const SynthOptions o = options(SynthArch::qwen2, "stories260k", SynthType::q4_k_m);
    const SynthModel model = synthesize(o);
    CHECK(model.vocab_raised);
    CHECK(model.n_vocab == 50257);
    const fs::path path = tmp() / "plan-check.gguf";
    model.writer.write(path);
    CHECK(fs::file_size(path) == model.writer.file_size());
    const File f = File::open(path);
    REQUIRE(f.tensors().size() == model.tensors.size());
    for (size_t i = 0; i < model.tensors.size(); ++i) {
        CHECK(f.tensors()[i].name == model.tensors[i].name);
        CHECK(f.tensors()[i].type == model.tensors[i].type);
        CHECK(f.tensors()[i].ne == model.tensors[i].ne);
    }
}

TEST_CASE("same seed gives the same bytes whatever the thread count; another seed changes every tensor", "[synth]") {
    SynthOptions o = options(SynthArch::llama, "stories260k", SynthType::q4_k_m, 42);
    o.threads = 1;
    const fs::path a = write(o, "seed42-t1.gguf");
    o.threads = 3;
    const fs::path b = write(o, "seed42-t3.gguf");
    o.threads = 0;
    const fs::path c = write(o, "seed42-t0.gguf");
    o.seed = 43;
    const fs::path d = write(o, "seed43.gguf");
    const auto bytes_a = read_all(a);
    CHECK(bytes_a == read_all(b));
    CHECK(bytes_a == read_all(c));
    CHECK(bytes_a != read_all(d));

    const File fa = File::open(a), fd = File::open(d);
    for (size_t i = 0; i < fa.tensors().size(); ++i) {
        const auto& ta = fa.tensors()[i];
        const auto da = fa.tensor_data(ta), dd = fd.tensor_data(fd.tensors()[i]);
        INFO(ta.name);
        CHECK(!std::equal(da.begin(), da.end(), dd.begin(), dd.end()));
    }
    // Tensors are generated independently: same-shape tensors of one file differ.
    const auto q0 = fa.tensor_data(*fa.find_tensor("blk.0.attn_q.weight"));
    const auto q1 = fa.tensor_data(*fa.find_tensor("blk.1.attn_q.weight"));
    CHECK(!std::equal(q0.begin(), q0.end(), q1.begin(), q1.end()));
}

TEST_CASE("a tokenizer smaller than the shape's vocab is padded", "[synth]") {
    for (SynthArch arch : {SynthArch::llama, SynthArch::qwen2}) {
        INFO(synth_arch_name(arch));
        SynthOptions o = options(arch, "stories260k", SynthType::q8_0);
        o.shape.name = "stories260k-wide";
        o.shape.vocab = 51000;
        const File vocab = File::open(o.vocab);
        const auto orig_tokens = vocab.at("tokenizer.ggml.tokens").as_string_array();
        const size_t n = orig_tokens.size();
        REQUIRE(n < 51000);

        const SynthModel model = synthesize(o);
        CHECK(!model.vocab_raised);
        CHECK(model.n_vocab == 51000);
        const fs::path path = tmp() / ("padded-" + std::string(synth_arch_name(arch)) + ".gguf");
        model.writer.write(path);
        const File f = File::open(path);
        CHECK(f.get_uint(std::string(synth_arch_name(arch)) + ".vocab_size") == 51000);
        CHECK(f.find_tensor("token_embd.weight")->ne == std::vector<uint64_t>{64, 51000});

        const auto tokens = f.at("tokenizer.ggml.tokens").as_string_array();
        REQUIRE(tokens.size() == 51000);
        CHECK(std::equal(orig_tokens.begin(), orig_tokens.end(), tokens.begin()));
        CHECK(tokens[n] == "[PAD" + std::to_string(n) + "]");
        CHECK(tokens.back() == "[PAD50999]");

        for (const char* key : {"tokenizer.ggml.token_type", "tokenizer.ggml.scores"}) {
            INFO(key);
            const Value* orig = vocab.find(key);
            const Value* got = f.find(key);
            REQUIRE((orig == nullptr) == (got == nullptr));
            if (!orig) continue;
            const Array& oa = orig->as_array();
            const Array& ga = got->as_array();
            CHECK(ga.elem_type == oa.elem_type);
            REQUIRE(ga.size() == 51000);
            CHECK(std::equal(oa.packed.begin(), oa.packed.end(), ga.packed.begin()));
            const double pad = std::string(key) == "tokenizer.ggml.token_type" ? 5.0 : 0.0;
            CHECK(packed_at(ga, n) == pad);
            CHECK(packed_at(ga, 50999) == pad);
        }
        // The other tokenizer keys are copied unchanged, in order.
        const auto got = tokenizer_keys(f), want = tokenizer_keys(vocab);
        REQUIRE(got.size() == want.size());
        for (size_t i = 0; i < got.size(); ++i) {
            CHECK(got[i].first == want[i].first);
            if (got[i].first != "tokenizer.ggml.tokens" && got[i].first != "tokenizer.ggml.token_type" &&
                got[i].first != "tokenizer.ggml.scores")
                CHECK(*got[i].second == *want[i].second);
        }
    }
}

TEST_CASE("q4_k_m mix on smollm2-135m (30 layers): Q6_K in the first and last eighth and every third layer",
          "[synth]") {
    SynthOptions o;
    o.arch = SynthArch::llama;
    o.shape = parse_model_shape("smollm2-135m");
    o.type = SynthType::q4_k_m;
    const auto plan = plan_tensors(o);
    std::map<std::string, PlannedTensor> by_name;
    for (const auto& t : plan) by_name.emplace(t.name, t);
    CHECK(plan.size() == 2 + 30 * 9);
    CHECK(!by_name.contains("output.weight"));
    const std::set<uint32_t> more = {0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29};
    for (uint32_t i = 0; i < 30; ++i) {
        INFO("layer " << i);
        const std::string p = "blk." + std::to_string(i) + ".";
        // ffn_down rows are 1536 = 6 * 256: the K types themselves.
        CHECK(by_name.at(p + "ffn_down.weight").type == (more.contains(i) ? TensorType::Q6_K : TensorType::Q4_K));
        // 576-wide rows are no multiple of 256: Q6_K -> Q8_0, Q4_K -> Q5_0.
        CHECK(by_name.at(p + "attn_v.weight").type == (more.contains(i) ? TensorType::Q8_0 : TensorType::Q5_0));
        for (const char* name :
             {"attn_q.weight", "attn_k.weight", "attn_output.weight", "ffn_gate.weight", "ffn_up.weight"})
            CHECK(by_name.at(p + name).type == TensorType::Q5_0);
        CHECK(by_name.at(p + "attn_q.weight").ne == std::vector<uint64_t>{576, 576});
        CHECK(by_name.at(p + "attn_k.weight").ne == std::vector<uint64_t>{576, 192});
        CHECK(by_name.at(p + "ffn_down.weight").ne == std::vector<uint64_t>{1536, 576});
    }
    CHECK(by_name.at("token_embd.weight").type == TensorType::Q5_0);
    CHECK(by_name.at("token_embd.weight").ne == std::vector<uint64_t>{576, 49152});
}

TEST_CASE("plans at the large shapes: untied output in Q6_K, rope_freqs, K types where rows allow", "[synth]") {
    SynthOptions o;
    o.type = SynthType::q4_k_m;
    o.shape = parse_model_shape("llama3-8b");
    auto plan = plan_tensors(o);
    CHECK(plan.size() == 3 + 32 * 9);
    CHECK(plan[0].name == "token_embd.weight");
    CHECK(plan[0].type == TensorType::Q4_K);
    CHECK(plan[2].name == "output.weight");
    CHECK(plan[2].type == TensorType::Q6_K);
    CHECK(plan[2].ne == std::vector<uint64_t>{4096, 128256});

    o.shape = parse_model_shape("llama3.2-1b");
    plan = plan_tensors(o);
    CHECK(plan.size() == 3 + 16 * 9);
    CHECK(plan[2].name == "rope_freqs.weight");
    CHECK(plan[2].type == TensorType::F32);
    CHECK(plan[2].ne == std::vector<uint64_t>{32});

    o.arch = SynthArch::qwen2;
    o.shape = parse_model_shape("qwen2.5-0.5b");
    plan = plan_tensors(o);
    CHECK(plan.size() == 2 + 24 * 12);
    for (const auto& t : plan) {
        INFO(t.name);
        if (t.ne.size() == 1)
            CHECK(t.type == TensorType::F32);
        else if (t.ne[0] == 896)
            CHECK((t.type == TensorType::Q5_0 || t.type == TensorType::Q8_0));
        else
            CHECK((t.type == TensorType::Q4_K || t.type == TensorType::Q6_K));
    }
}

TEST_CASE("fallback types for rows that do not fit the block size", "[synth]") {
    CHECK(fit_row(TensorType::Q4_K, 512) == TensorType::Q4_K);
    CHECK(fit_row(TensorType::Q4_K, 576) == TensorType::Q5_0);
    CHECK(fit_row(TensorType::Q6_K, 576) == TensorType::Q8_0);
    CHECK(fit_row(TensorType::Q4_K, 172) == TensorType::F16);
    CHECK(fit_row(TensorType::Q6_K, 172) == TensorType::F16);
    for (TensorType t : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q8_0, TensorType::Q5_0}) {
        CHECK(fit_row(t, 576) == t);
        CHECK(fit_row(t, 172) == TensorType::F16);
    }
    CHECK(fit_row(TensorType::F16, 172) == TensorType::F16);
}

TEST_CASE("llama-3 rope scaling: metadata and rope_freqs.weight", "[synth]") {
    // A small stand-in for llama3.2-1b: head_dim 16, the same base and scaling.
    SynthOptions o = options(SynthArch::llama, "stories260k", SynthType::q8_0);
    const ModelShape& l32 = parse_model_shape("llama3.2-1b");
    o.shape.name = "tiny-llama3";
    o.shape.embd = 64;
    o.shape.heads = 4;
    o.shape.kv_heads = 2;
    o.shape.rope_base = l32.rope_base;
    o.shape.rope_scaling = l32.rope_scaling;
    const File f = File::open(write(o, "tiny-llama3.gguf"));
    CHECK(f.get_string("llama.rope.scaling.type") == "llama3");
    CHECK(f.get_float("llama.rope.scaling.factor") == 32.0);
    CHECK(f.get_float("llama.rope.scaling.low_freq_factor") == 1.0);
    CHECK(f.get_float("llama.rope.scaling.high_freq_factor") == 4.0);
    CHECK(f.at("llama.rope.scaling.original_context_length").type() == ValueType::UINT32);
    CHECK(f.get_uint("llama.rope.scaling.original_context_length") == 8192);
    CHECK(f.get_uint("llama.rope.dimension_count") == 16);

    const TensorInfo* t = f.find_tensor("rope_freqs.weight");
    REQUIRE(t != nullptr);
    CHECK(t->type == TensorType::F32);
    const auto d = f.dequantize_tensor(*t);
    REQUIRE(d.size() == 8);
    // wavelen_i = 2 pi 500000^(i/8): i <= 3 below 8192/4 (unscaled), i >= 5 above 8192 (divided by 32),
    // i = 4 (wavelen ~4443) in the smooth band.
    for (int i = 0; i < 4; ++i) CHECK(d[i] == 1.0f);
    for (int i = 5; i < 8; ++i) CHECK(d[i] == 32.0f);
    const double wavelen = 2 * std::numbers::pi * std::pow(500000.0, 4.0 / 8);
    const double smooth = (8192 / wavelen - 1.0) / (4.0 - 1.0);
    CHECK(d[4] == Approx(1.0 / ((1 - smooth) / 32 + smooth)).epsilon(1e-6));
    CHECK(d[4] == Approx(3.2925).epsilon(1e-3));
}

TEST_CASE("bad options throw with clear messages", "[synth]") {
    const auto message = [](auto&& f) -> std::string {
        try {
            f();
        } catch (const SynthError& e) {
            return e.what();
        }
        return "(no SynthError)";
    };
    CHECK(message([] { parse_synth_arch("gpt2"); }) == "unknown architecture 'gpt2' (valid: llama, qwen2)");
    CHECK(message([] { parse_synth_type("q5_k"); }) == "unknown type 'q5_k' (valid: q4_0, q4_1, q8_0, f16, q4_k_m)");
    const std::string shape_msg = message([] { parse_model_shape("llama-7b"); });
    CHECK(shape_msg.starts_with("unknown shape 'llama-7b' (valid: stories260k, smollm2-135m,"));
    CHECK(shape_msg.find("qwen2.5-7b") != std::string::npos);

    SynthOptions o = options(SynthArch::llama, "stories260k", SynthType::q4_0);
    o.shape.heads = 7;
    CHECK(message([&] { plan_tensors(o); }) == "shape stories260k: embd 64 is not a multiple of heads 7");
    CHECK(message([&] { synthesize(o); }) == "shape stories260k: embd 64 is not a multiple of heads 7");
    o.shape.heads = 8;
    o.shape.kv_heads = 3;
    CHECK(message([&] { plan_tensors(o); }) == "shape stories260k: heads 8 is not a multiple of kv_heads 3");
    o.shape.kv_heads = 0;
    CHECK(message([&] { plan_tensors(o); }).find("must all be positive") != std::string::npos);

    o = options(SynthArch::llama, "stories260k", SynthType::q4_0);
    o.vocab = tmp() / "no-such-vocab.gguf";
    const std::string missing = message([&] { synthesize(o); });
    CHECK(missing.starts_with("vocab file " + o.vocab.string() + ": "));

    // A GGUF without a tokenizer.
    Writer w;
    w.set("general.architecture", Value::string("llama"));
    const fs::path empty = tmp() / "no-tokenizer.gguf";
    w.write(empty);
    o.vocab = empty;
    CHECK(message([&] { synthesize(o); }) ==
          "vocab file " + empty.string() + " has no tokenizer.ggml.tokens string array");
}
