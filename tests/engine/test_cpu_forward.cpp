// CpuBackend against an independent double-precision forward pass on tiny random models, cpu_ops
// against naive formulas, and synthesized quantized models (every layer path, prefill == decode).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <numbers>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "catch.hpp"
#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/cpu/thread_pool.h"
#include "engine/errors.h"
#include "engine/kv_manager.h"
#include "gguf/reader.h"
#include "gguf/synth.h"
#include "gguf/writer.h"
#include "support/test_data.h"

namespace cpu = loom::engine::cpu;
namespace gguf = loom::gguf;
using loom::engine::RopeMode;

namespace {

// Uniform doubles from a fixed-seed generator, portable bit for bit (no std distributions).
class Random {
public:
    explicit Random(uint64_t seed) : rng_(seed) {}
    double uniform(double lo, double hi) { return lo + (hi - lo) * double(rng_() >> 11) * 0x1p-53; }
    int below(int n) { return static_cast<int>(rng_() % static_cast<uint64_t>(n)); }
    std::vector<float> floats(size_t n, double lo, double hi) {
        std::vector<float> v(n);
        for (auto& x : v) x = static_cast<float>(uniform(lo, hi));
        return v;
    }

private:
    std::mt19937_64 rng_;
};

// ---------------------------------------------------------------------------------------------
// The reference model: its own description of the architectures and a forward pass in double,
// written from the model definitions (not from loom's operators).

struct Llama3Scaling {
    double factor, low_freq_factor, high_freq_factor, original_context;
};

struct RefConfig {
    int vocab = 0, embd = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, ff = 0;
    double eps = 1e-5, rope_base = 10000;
    bool tied = false;
    bool qkv_bias = false;  // qwen2
    bool qk_norm = false;   // qwen3
    bool neox = false;      // qwen2/qwen3 rotate (i, i + d/2); llama GGUF files rotate (2i, 2i + 1)
    std::optional<Llama3Scaling> llama3;
    std::vector<double> explicit_divisors;  // rope_freqs.weight, which wins over the scaling keys
    bool gqa_modulo = false;                // a deliberate mistake: KV head h % kv_heads instead of h / group
};

RefConfig features_of(const std::string& arch, RefConfig c) {
    c.qkv_bias = arch == "qwen2";
    c.qk_norm = arch == "qwen3";
    c.neox = arch != "llama";
    return c;
}

using WeightSource = std::function<std::vector<float>(const std::string&)>;

struct RefLayer {
    std::vector<double> attn_norm, wq, wk, wv, wo, bq, bk, bv, q_norm, k_norm, ffn_norm, gate, up, down;
};

struct RefModel {
    RefConfig c;
    std::vector<double> embd, out_norm, out;
    std::vector<RefLayer> layers;
};

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

std::string blk(int l, const char* suffix) { return "blk." + std::to_string(l) + "." + suffix; }

RefModel load_ref(const RefConfig& c, const WeightSource& get) {
    RefModel m{c, widen(get("token_embd.weight")), widen(get("output_norm.weight")), {}, {}};
    m.out = c.tied ? m.embd : widen(get("output.weight"));
    for (int l = 0; l < c.layers; ++l) {
        RefLayer w;
        w.attn_norm = widen(get(blk(l, "attn_norm.weight")));
        w.wq = widen(get(blk(l, "attn_q.weight")));
        w.wk = widen(get(blk(l, "attn_k.weight")));
        w.wv = widen(get(blk(l, "attn_v.weight")));
        w.wo = widen(get(blk(l, "attn_output.weight")));
        if (c.qkv_bias) {
            w.bq = widen(get(blk(l, "attn_q.bias")));
            w.bk = widen(get(blk(l, "attn_k.bias")));
            w.bv = widen(get(blk(l, "attn_v.bias")));
        }
        if (c.qk_norm) {
            w.q_norm = widen(get(blk(l, "attn_q_norm.weight")));
            w.k_norm = widen(get(blk(l, "attn_k_norm.weight")));
        }
        w.ffn_norm = widen(get(blk(l, "ffn_norm.weight")));
        w.gate = widen(get(blk(l, "ffn_gate.weight")));
        w.up = widen(get(blk(l, "ffn_up.weight")));
        w.down = widen(get(blk(l, "ffn_down.weight")));
        m.layers.push_back(std::move(w));
    }
    return m;
}

// y = W x with W stored as n_out rows of n_in (GGUF ne = {n_in, n_out}).
std::vector<double> ref_matvec(const std::vector<double>& W, const std::vector<double>& x, int n_out) {
    const size_t n_in = x.size();
    std::vector<double> y(n_out, 0.0);
    for (int o = 0; o < n_out; ++o)
        for (size_t i = 0; i < n_in; ++i) y[o] += W[o * n_in + i] * x[i];
    return y;
}

// x / sqrt(mean(x^2) + eps) * w over x[begin, begin + n)
void ref_rmsnorm(std::vector<double>& x, size_t begin, size_t n, const std::vector<double>& w, double eps) {
    double ss = 0;
    for (size_t i = 0; i < n; ++i) ss += x[begin + i] * x[begin + i];
    const double scale = 1.0 / std::sqrt(ss / double(n) + eps);
    for (size_t i = 0; i < n; ++i) x[begin + i] = x[begin + i] * scale * w[i];
}

// The rotation frequency of pair i: base^(-2i/d), divided per Llama-3 (Hugging Face's
// _compute_llama3_parameters) or by rope_freqs.weight.
double ref_inv_freq(const RefConfig& c, int i) {
    const double freq = std::pow(c.rope_base, -2.0 * i / c.head_dim);
    if (!c.explicit_divisors.empty()) return freq / c.explicit_divisors[i];
    if (!c.llama3) return freq;
    const Llama3Scaling& s = *c.llama3;
    const double wavelen = 2 * std::numbers::pi / freq;
    if (wavelen < s.original_context / s.high_freq_factor) return freq;
    if (wavelen > s.original_context / s.low_freq_factor) return freq / s.factor;
    const double smooth = (s.original_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    return (1 - smooth) * freq / s.factor + smooth * freq;
}

void ref_rope(const RefConfig& c, double* v, int pos) {
    const int half = c.head_dim / 2;
    for (int i = 0; i < half; ++i) {
        const double angle = pos * ref_inv_freq(c, i);
        const int a = c.neox ? i : 2 * i, b = c.neox ? i + half : 2 * i + 1;
        const double x0 = v[a], x1 = v[b];
        v[a] = x0 * std::cos(angle) - x1 * std::sin(angle);
        v[b] = x0 * std::sin(angle) + x1 * std::cos(angle);
    }
}

// Logits (n_vocab) for every position of `tokens`, recomputed from scratch (no cache).
std::vector<std::vector<double>> ref_forward(const RefModel& m, const std::vector<int32_t>& tokens) {
    const RefConfig& c = m.c;
    const int T = static_cast<int>(tokens.size()), d = c.embd, hd = c.head_dim;
    const int qd = c.heads * hd, kvd = c.kv_heads * hd;
    std::vector<std::vector<double>> x(T);
    for (int t = 0; t < T; ++t)
        x[t].assign(m.embd.begin() + size_t(tokens[t]) * d, m.embd.begin() + size_t(tokens[t] + 1) * d);

    for (const RefLayer& w : m.layers) {
        std::vector<std::vector<double>> q(T), k(T), v(T);
        for (int t = 0; t < T; ++t) {
            std::vector<double> h = x[t];
            ref_rmsnorm(h, 0, d, w.attn_norm, c.eps);
            q[t] = ref_matvec(w.wq, h, qd);
            k[t] = ref_matvec(w.wk, h, kvd);
            v[t] = ref_matvec(w.wv, h, kvd);
            if (c.qkv_bias) {
                for (int i = 0; i < qd; ++i) q[t][i] += w.bq[i];
                for (int i = 0; i < kvd; ++i) k[t][i] += w.bk[i];
                for (int i = 0; i < kvd; ++i) v[t][i] += w.bv[i];
            }
            for (int h2 = 0; h2 < c.heads; ++h2) {
                if (c.qk_norm) ref_rmsnorm(q[t], size_t(h2) * hd, hd, w.q_norm, c.eps);
                ref_rope(c, &q[t][size_t(h2) * hd], t);
            }
            for (int h2 = 0; h2 < c.kv_heads; ++h2) {
                if (c.qk_norm) ref_rmsnorm(k[t], size_t(h2) * hd, hd, w.k_norm, c.eps);
                ref_rope(c, &k[t][size_t(h2) * hd], t);
            }
        }
        for (int t = 0; t < T; ++t) {
            std::vector<double> att(qd, 0.0);
            for (int head = 0; head < c.heads; ++head) {
                const int kv = c.gqa_modulo ? head % c.kv_heads : head / (c.heads / c.kv_heads);
                std::vector<double> score(t + 1);
                for (int j = 0; j <= t; ++j) {
                    double s = 0;
                    for (int i = 0; i < hd; ++i) s += q[t][head * hd + i] * k[j][kv * hd + i];
                    score[j] = s / std::sqrt(double(hd));
                }
                const double top = *std::max_element(score.begin(), score.end());
                double sum = 0;
                for (double& s : score) sum += (s = std::exp(s - top));
                for (int j = 0; j <= t; ++j)
                    for (int i = 0; i < hd; ++i) att[head * hd + i] += score[j] / sum * v[j][kv * hd + i];
            }
            const std::vector<double> o = ref_matvec(w.wo, att, d);
            for (int i = 0; i < d; ++i) x[t][i] += o[i];

            std::vector<double> h = x[t];
            ref_rmsnorm(h, 0, d, w.ffn_norm, c.eps);
            const std::vector<double> g = ref_matvec(w.gate, h, c.ff), u = ref_matvec(w.up, h, c.ff);
            std::vector<double> act(c.ff);
            for (int i = 0; i < c.ff; ++i) act[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
            const std::vector<double> down = ref_matvec(w.down, act, d);
            for (int i = 0; i < d; ++i) x[t][i] += down[i];
        }
    }
    std::vector<std::vector<double>> logits(T);
    for (int t = 0; t < T; ++t) {
        ref_rmsnorm(x[t], 0, d, m.out_norm, c.eps);
        logits[t] = ref_matvec(m.out, x[t], c.vocab);
    }
    return logits;
}

// max |got - ref| / max |ref| over one row.
double relative_error(std::span<const float> got, const std::vector<double>& ref) {
    double diff = 0, scale = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        diff = std::max(diff, std::abs(double(got[i]) - ref[i]));
        scale = std::max(scale, std::abs(ref[i]));
    }
    return diff / scale;
}

// Logits of `tokens` from the backend: the first `prefill` in one all-logits pass, then one at a
// time (so both the batched and the cached decode paths are compared). Rows in position order.
std::vector<std::vector<float>> backend_logits(cpu::CpuBackend& backend, const std::vector<int32_t>& tokens,
                                               int prefill) {
    const int n_vocab = backend.config().n_vocab;
    std::vector<float> all(size_t(prefill) * n_vocab);
    loom::engine::KvManager kv(backend);
    kv.forward(std::span(tokens).first(prefill), all, true);
    std::vector<std::vector<float>> rows;
    for (int t = 0; t < prefill; ++t)
        rows.emplace_back(all.begin() + size_t(t) * n_vocab, all.begin() + size_t(t + 1) * n_vocab);
    for (size_t t = prefill; t < tokens.size(); ++t) {
        std::vector<float> row(n_vocab);
        kv.forward(std::span(tokens).subspan(t, 1), row, false);
        rows.push_back(std::move(row));
    }
    REQUIRE(kv.n_past() == static_cast<int>(tokens.size()));
    return rows;
}

double worst_error(const std::vector<std::vector<float>>& got, const std::vector<std::vector<double>>& ref) {
    double worst = 0;
    for (size_t t = 0; t < ref.size(); ++t) worst = std::max(worst, relative_error(got[t], ref[t]));
    return worst;
}

// ---------------------------------------------------------------------------------------------
// Tiny F32 models written with gguf::Writer.

struct TinyModel {
    std::string arch = "llama";
    RefConfig c;
    bool key_length = false;  // write attention.key_length (head_dim != embd / heads)
    std::optional<std::vector<float>> rope_freqs;
};

// Writes the model's file with random weights from `seed`; returns the weights by tensor name.
std::map<std::string, std::vector<float>> write_tiny(const TinyModel& m, uint64_t seed,
                                                     const std::filesystem::path& path) {
    const RefConfig& c = m.c;
    Random rng(seed);
    gguf::Writer w;
    const std::string a = m.arch + ".";
    w.set("general.architecture", gguf::Value::string(m.arch));
    w.set(a + "context_length", gguf::Value::u32(256));
    w.set(a + "embedding_length", gguf::Value::u32(c.embd));
    w.set(a + "block_count", gguf::Value::u32(c.layers));
    w.set(a + "feed_forward_length", gguf::Value::u32(c.ff));
    w.set(a + "attention.head_count", gguf::Value::u32(c.heads));
    w.set(a + "attention.head_count_kv", gguf::Value::u32(c.kv_heads));
    if (m.key_length) {
        w.set(a + "attention.key_length", gguf::Value::u32(c.head_dim));
        w.set(a + "attention.value_length", gguf::Value::u32(c.head_dim));
    }
    w.set(a + "attention.layer_norm_rms_epsilon", gguf::Value::f32(static_cast<float>(c.eps)));
    w.set(a + "rope.freq_base", gguf::Value::f32(static_cast<float>(c.rope_base)));
    if (c.llama3) {
        w.set(a + "rope.scaling.type", gguf::Value::string("llama3"));
        w.set(a + "rope.scaling.factor", gguf::Value::f32(static_cast<float>(c.llama3->factor)));
        w.set(a + "rope.scaling.low_freq_factor", gguf::Value::f32(static_cast<float>(c.llama3->low_freq_factor)));
        w.set(a + "rope.scaling.high_freq_factor", gguf::Value::f32(static_cast<float>(c.llama3->high_freq_factor)));
        w.set(a + "rope.scaling.original_context_length",
              gguf::Value::u32(static_cast<uint32_t>(c.llama3->original_context)));
    }

    std::map<std::string, std::vector<float>> weights;
    const auto add = [&](const std::string& name, std::vector<uint64_t> ne, std::vector<float> values) {
        std::vector<uint8_t> bytes(values.size() * sizeof(float));
        std::memcpy(bytes.data(), values.data(), bytes.size());
        w.add_tensor(name, gguf::TensorType::F32, std::move(ne), std::move(bytes));
        weights[name] = std::move(values);
    };
    // Unit-variance inputs give unit-variance outputs; norms near 1 but never exactly 1 or 0.
    const auto matrix = [&](const std::string& name, int n_in, int n_out) {
        const double r = std::sqrt(3.0 / n_in);
        add(name, {uint64_t(n_in), uint64_t(n_out)}, rng.floats(size_t(n_in) * n_out, -r, r));
    };
    const auto vec = [&](const std::string& name, int n, double lo, double hi) {
        add(name, {uint64_t(n)}, rng.floats(n, lo, hi));
    };
    const int qd = c.heads * c.head_dim, kvd = c.kv_heads * c.head_dim;
    add("token_embd.weight", {uint64_t(c.embd), uint64_t(c.vocab)}, rng.floats(size_t(c.embd) * c.vocab, -1, 1));
    vec("output_norm.weight", c.embd, 0.7, 1.3);
    if (!c.tied) matrix("output.weight", c.embd, c.vocab);
    if (m.rope_freqs) add("rope_freqs.weight", {m.rope_freqs->size()}, *m.rope_freqs);
    for (int l = 0; l < c.layers; ++l) {
        vec(blk(l, "attn_norm.weight"), c.embd, 0.7, 1.3);
        matrix(blk(l, "attn_q.weight"), c.embd, qd);
        matrix(blk(l, "attn_k.weight"), c.embd, kvd);
        matrix(blk(l, "attn_v.weight"), c.embd, kvd);
        if (c.qkv_bias) {
            vec(blk(l, "attn_q.bias"), qd, -0.5, 0.5);
            vec(blk(l, "attn_k.bias"), kvd, -0.5, 0.5);
            vec(blk(l, "attn_v.bias"), kvd, -0.5, 0.5);
        }
        if (c.qk_norm) {
            vec(blk(l, "attn_q_norm.weight"), c.head_dim, 0.5, 1.5);
            vec(blk(l, "attn_k_norm.weight"), c.head_dim, 0.5, 1.5);
        }
        matrix(blk(l, "attn_output.weight"), qd, c.embd);
        vec(blk(l, "ffn_norm.weight"), c.embd, 0.7, 1.3);
        matrix(blk(l, "ffn_gate.weight"), c.embd, c.ff);
        matrix(blk(l, "ffn_up.weight"), c.embd, c.ff);
        matrix(blk(l, "ffn_down.weight"), c.ff, c.embd);
    }
    w.write(path);
    return weights;
}

std::vector<int32_t> random_tokens(Random& rng, int n, int vocab) {
    std::vector<int32_t> t(n);
    for (auto& id : t) id = rng.below(vocab);
    return t;
}

// f32 against f64 over a few layers: max |Δ| <= 1e-4 * max |logit| per position.
constexpr double kForwardTolerance = 1e-4;

// Compares the backend with the reference on `model` for a few seeds; `mistake` is the same
// reference with one thing wrong, which must be clearly worse (the comparison can fail).
void check_tiny_model(const TinyModel& model, uint64_t first_seed, const std::function<void(RefConfig&)>& mistake) {
    const auto dir = loom::test::temp_dir();
    for (uint64_t seed = first_seed; seed < first_seed + 3; ++seed) {
        INFO(model.arch << " seed " << seed);
        const auto path = dir / ("model_" + std::to_string(seed) + ".gguf");
        const auto weights = write_tiny(model, seed, path);
        const gguf::File file = gguf::File::open(path);
        cpu::CpuBackend backend(file, 32, 2);
        REQUIRE(backend.config().head_dim == model.c.head_dim);
        REQUIRE(backend.config().tied_embeddings == model.c.tied);

        Random rng(seed * 7919);
        const std::vector<int32_t> tokens = random_tokens(rng, 11, model.c.vocab);
        const auto got = backend_logits(backend, tokens, 7);

        const WeightSource source = [&](const std::string& name) { return weights.at(name); };
        const double err = worst_error(got, ref_forward(load_ref(model.c, source), tokens));
        INFO("max |Δ| / max |logit| = " << err);
        CHECK(err <= kForwardTolerance);

        RefConfig wrong = model.c;
        mistake(wrong);
        const double wrong_err = worst_error(got, ref_forward(load_ref(wrong, source), tokens));
        INFO("with the deliberate mistake: " << wrong_err);
        CHECK(wrong_err > 100 * kForwardTolerance);
    }
}

RefConfig tiny_config(const std::string& arch, int embd, int heads, int kv_heads, int head_dim) {
    RefConfig c;
    c.vocab = 67;
    c.embd = embd;
    c.layers = 2;
    c.heads = heads;
    c.kv_heads = kv_heads;
    c.head_dim = head_dim;
    c.ff = 43;
    return features_of(arch, c);
}

}  // namespace

TEST_CASE("llama with GQA 4/2 and an untied output matches the double reference", "[engine][cpu][forward]") {
    TinyModel m{"llama", tiny_config("llama", 32, 4, 2, 8), false, {}};
    check_tiny_model(m, 100, [](RefConfig& c) { c.gqa_modulo = true; });
    check_tiny_model(m, 110, [](RefConfig& c) { c.neox = true; });
}

TEST_CASE("qwen2 with biases, NeoX RoPE and tied embeddings matches the double reference", "[engine][cpu][forward]") {
    TinyModel m{"qwen2", tiny_config("qwen2", 48, 6, 2, 8), false, {}};
    m.c.tied = true;
    m.c.rope_base = 1000000;
    m.c.eps = 1e-6;
    check_tiny_model(m, 200, [](RefConfig& c) { c.neox = false; });
    check_tiny_model(m, 210, [](RefConfig& c) { c.qkv_bias = false; });
}

TEST_CASE("qwen3 with Q/K norms and head_dim != embd / heads matches the double reference", "[engine][cpu][forward]") {
    TinyModel m{"qwen3", tiny_config("qwen3", 48, 4, 2, 16), true, {}};  // 48 / 4 = 12, key_length 16
    check_tiny_model(m, 300, [](RefConfig& c) { c.qk_norm = false; });
}

TEST_CASE("llama with Llama-3 RoPE scaling keys matches the double reference", "[engine][cpu][forward]") {
    // A short original context puts the frequency bands where 11 positions feel them: pair 0 is
    // blended, pairs 1.. are fully scaled.
    TinyModel m{"llama", tiny_config("llama", 64, 4, 4, 16), false, {}};
    m.c.llama3 = Llama3Scaling{8.0, 1.0, 4.0, 16.0};
    check_tiny_model(m, 400, [](RefConfig& c) { c.llama3.reset(); });
    check_tiny_model(m, 410, [](RefConfig& c) { c.llama3->factor = 2.0; });
}

TEST_CASE("llama with a rope_freqs.weight tensor uses its divisors", "[engine][cpu][forward]") {
    TinyModel m{"llama", tiny_config("llama", 32, 2, 1, 16), false, {}};
    m.rope_freqs = std::vector<float>{1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, 8.0f, 12.0f};
    m.c.explicit_divisors = widen(*m.rope_freqs);
    check_tiny_model(m, 500, [](RefConfig& c) { c.explicit_divisors.clear(); });
}

// ---------------------------------------------------------------------------------------------
// Synthesized quantized models: every tensor type path of the forward pass.

namespace {

// A vocab file for gguf::synthesize: it copies tokenizer.* keys and needs only the token list.
std::filesystem::path write_vocab(const std::filesystem::path& dir) {
    std::vector<std::string> tokens;
    for (int i = 0; i < 20; ++i) tokens.push_back("t" + std::to_string(i));
    gguf::Writer w;
    w.set("general.architecture", gguf::Value::string("llama"));
    w.set("tokenizer.ggml.model", gguf::Value::string("llama"));
    w.set("tokenizer.ggml.tokens", gguf::Value::string_array(tokens));
    const auto path = dir / "vocab.gguf";
    w.write(path);
    return path;
}

// Stories260K's shape leaves K-quants no room (rows of 64 and 172 fall back to Q5_0/Q8_0/F16);
// rows of 256 and 512 keep Q4_K and Q6_K, and Llama-3 scaling adds rope_freqs.weight.
gguf::ModelShape k_quant_shape() {
    gguf::ModelShape s{"k-quant-test", 300, 256, 2, 4, 2, 512, 256, 10000.0f, 1e-5f, false, {}};
    s.rope_scaling = gguf::Llama3RopeScaling{8.0f, 1.0f, 4.0f, 64};
    return s;
}

}  // namespace

TEST_CASE("synthesized q8_0 and q4_k_m models: finite logits, reference match, prefill equals decode",
          "[engine][cpu][forward][synth]") {
    const auto dir = loom::test::temp_dir();
    const auto vocab = write_vocab(dir);
    const gguf::ModelShape shapes[] = {*gguf::find_model_shape("stories260k"), k_quant_shape()};
    uint64_t seed = 1000;
    for (const gguf::ModelShape& shape : shapes)
        for (const auto arch : {gguf::SynthArch::llama, gguf::SynthArch::qwen2})
            for (const auto type : {gguf::SynthType::q8_0, gguf::SynthType::q4_k_m}) {
                ++seed;
                INFO(shape.name << " " << gguf::synth_arch_name(arch) << " " << gguf::synth_type_name(type) << " seed "
                                << seed);
                gguf::SynthModel synth = gguf::synthesize(
                    {.arch = arch, .shape = shape, .type = type, .vocab = vocab, .seed = seed, .threads = 2});
                const auto path = dir / ("synth_" + std::to_string(seed) + ".gguf");
                synth.writer.write(path);
                const gguf::File file = gguf::File::open(path);
                if (type == gguf::SynthType::q4_k_m && shape.embd == 256) {
                    CHECK(file.find_tensor("blk.0.attn_q.weight")->type == gguf::TensorType::Q4_K);
                    CHECK(file.find_tensor("output.weight")->type == gguf::TensorType::Q6_K);
                }
                cpu::CpuBackend backend(file, 64, 2);
                const int n_vocab = backend.config().n_vocab;
                REQUIRE(n_vocab == static_cast<int>(shape.vocab));

                Random rng(seed);
                const std::vector<int32_t> tokens = random_tokens(rng, 9, n_vocab);
                std::vector<float> batched(tokens.size() * n_vocab);
                loom::engine::KvManager(backend).forward(tokens, batched, true);
                CHECK(std::all_of(batched.begin(), batched.end(), [](float x) { return std::isfinite(x); }));

                // The same tokens one at a time must leave the same KV cache: equal logits at every
                // position (1e-5 relative; the arithmetic is the same, so they are in fact equal).
                const auto stepwise = backend_logits(backend, tokens, 1);
                double worst = 0;
                for (size_t t = 0; t < tokens.size(); ++t) {
                    const std::vector<double> ref(batched.begin() + t * n_vocab, batched.begin() + (t + 1) * n_vocab);
                    worst = std::max(worst, relative_error(stepwise[t], ref));
                }
                CHECK(worst <= 1e-5);

                // The double reference on the dequantized weights.
                RefConfig c;
                c.vocab = n_vocab;
                c.embd = int(shape.embd);
                c.layers = int(shape.layers);
                c.heads = int(shape.heads);
                c.kv_heads = int(shape.kv_heads);
                c.head_dim = int(shape.head_dim());
                c.ff = int(shape.ffn);
                c.eps = shape.rms_eps;
                c.rope_base = shape.rope_base;
                c.tied = shape.tied_embeddings;
                if (shape.rope_scaling)
                    c.llama3 = Llama3Scaling{shape.rope_scaling->factor, shape.rope_scaling->low_freq_factor,
                                             shape.rope_scaling->high_freq_factor,
                                             double(shape.rope_scaling->original_context)};
                c = features_of(std::string(gguf::synth_arch_name(arch)), c);
                const WeightSource source = [&](const std::string& name) {
                    return file.dequantize_tensor(*file.find_tensor(name));
                };
                const double err = worst_error(stepwise, ref_forward(load_ref(c, source), tokens));
                INFO("max |Δ| / max |logit| against the reference = " << err);
                CHECK(err <= kForwardTolerance);
            }
}

TEST_CASE("forward refuses tokens past the context, ids outside the vocabulary and a short buffer",
          "[engine][cpu][forward]") {
    const auto dir = loom::test::temp_dir();
    TinyModel m{"llama", tiny_config("llama", 32, 4, 2, 8), false, {}};
    write_tiny(m, 7, dir / "m.gguf");
    const gguf::File file = gguf::File::open(dir / "m.gguf");
    cpu::CpuBackend backend(file, 4, 1);
    CHECK(backend.n_ctx() == 4);
    std::vector<float> logits(size_t(4) * 67);
    loom::engine::KvManager kv(backend);
    const std::vector<int32_t> five = {1, 2, 3, 4, 5}, bad = {67}, negative = {-1}, two = {1, 2};
    CHECK_THROWS_AS(kv.forward(five, logits, true), loom::engine::RequestError);
    CHECK_THROWS_AS(kv.forward(bad, logits, false), loom::engine::RequestError);
    CHECK_THROWS_AS(kv.forward(negative, logits, false), loom::engine::RequestError);
    CHECK_THROWS_AS(kv.forward(two, std::span(logits).first(67), true), loom::engine::RequestError);
    CHECK(kv.n_past() == 0);
    kv.forward(two, logits, true);
    CHECK(kv.n_past() == 2);
    CHECK_THROWS_AS(kv.forward(std::vector<int32_t>{1, 2, 3}, logits, false), loom::engine::RequestError);
    kv.reset();
    CHECK(kv.n_past() == 0);
}

// ---------------------------------------------------------------------------------------------
// The operators against naive double formulas on random inputs.

TEST_CASE("rmsnorm matches x / sqrt(mean(x^2) + eps) * w, also in place", "[engine][cpu][ops]") {
    Random rng(11);
    for (const int n : {1, 7, 64, 1001}) {
        const auto x = rng.floats(n, -3, 3), w = rng.floats(n, 0.5, 1.5);
        std::vector<float> out(n);
        cpu::rmsnorm(x.data(), w.data(), out.data(), n, 1e-5f);
        double ss = 0;
        for (float v : x) ss += double(v) * v;
        const double scale = 1 / std::sqrt(ss / n + double(1e-5f));
        std::vector<float> in_place = x;
        cpu::rmsnorm(in_place.data(), w.data(), in_place.data(), n, 1e-5f);
        for (int i = 0; i < n; ++i) {
            const double ref = x[i] * scale * w[i];
            // Three f32 roundings: 1e-6 relative.
            CHECK(std::abs(out[i] - ref) <= 1e-6 * std::abs(ref));
            CHECK(in_place[i] == out[i]);
        }
    }
}

TEST_CASE("matmul matches a double product for odd sizes and several rows", "[engine][cpu][ops]") {
    cpu::ThreadPool pool(3);
    Random rng(12);
    const int sizes[][3] = {{1, 1, 1}, {1, 7, 5}, {3, 33, 17}, {5, 129, 45}, {2, 64, 300}, {7, 250, 31}, {16, 576, 19}};
    for (const auto& [T, n_in, n_out] : sizes) {
        INFO("T " << T << " n_in " << n_in << " n_out " << n_out);
        const auto W = rng.floats(size_t(n_out) * n_in, -1, 1), X = rng.floats(size_t(T) * n_in, -1, 1);
        std::vector<float> Y(size_t(T) * n_out, std::numeric_limits<float>::quiet_NaN());
        cpu::matmul(pool, W.data(), X.data(), Y.data(), T, n_in, n_out);
        double worst = 0;
        for (int t = 0; t < T; ++t)
            for (int o = 0; o < n_out; ++o) {
                double ref = 0, magnitude = 0;
                for (int i = 0; i < n_in; ++i) {
                    ref += double(W[size_t(o) * n_in + i]) * X[size_t(t) * n_in + i];
                    magnitude += std::abs(double(W[size_t(o) * n_in + i]) * X[size_t(t) * n_in + i]);
                }
                // f32 accumulation: |Δ| <= 1e-5 * Σ|w x| (far above rounding, far below an indexing slip).
                worst = std::max(worst, std::abs(Y[size_t(t) * n_out + o] - ref) / magnitude);
            }
        CHECK(worst <= 1e-5);
    }
}

TEST_CASE("rope_inv_freq is base^(-2i/d) / divisor", "[engine][cpu][ops]") {
    const std::vector<float> divisors = {1, 2, 3, 4, 5, 6, 7, 8};
    const auto plain = cpu::rope_inv_freq(16, 10000, {}), scaled = cpu::rope_inv_freq(16, 500000, divisors);
    REQUIRE(plain.size() == 8);
    REQUIRE(scaled.size() == 8);
    for (int i = 0; i < 8; ++i) {
        const double ref = std::pow(10000.0, -2.0 * i / 16),
                     ref_scaled = std::pow(500000.0, -2.0 * i / 16) / divisors[i];
        CHECK(std::abs(plain[i] - ref) <= 1e-6 * ref);
        CHECK(std::abs(scaled[i] - ref_scaled) <= 1e-6 * ref_scaled);
    }
}

TEST_CASE("rope rotates the right pairs in both modes, keeps norms, and is the identity at position 0",
          "[engine][cpu][ops]") {
    Random rng(13);
    for (const int hd : {2, 16, 64, 128})
        for (const RopeMode mode : {RopeMode::Normal, RopeMode::NeoX})
            for (const int pos : {0, 1, 17, 4095}) {
                INFO("head_dim " << hd << (mode == RopeMode::NeoX ? " neox" : " normal") << " pos " << pos);
                const auto inv_freq = cpu::rope_inv_freq(hd, 10000, {});
                const auto v = rng.floats(hd, -2, 2);
                std::vector<float> got = v;
                cpu::rope(got.data(), hd, pos, mode, inv_freq);
                if (pos == 0) {
                    CHECK(got == v);
                    continue;
                }
                double norm_in = 0, norm_out = 0, worst = 0;
                for (int i = 0; i < hd / 2; ++i) {
                    const int a = mode == RopeMode::NeoX ? i : 2 * i,
                              b = mode == RopeMode::NeoX ? i + hd / 2 : 2 * i + 1;
                    const double angle = pos * double(inv_freq[i]);
                    const double ra = v[a] * std::cos(angle) - v[b] * std::sin(angle);
                    const double rb = v[a] * std::sin(angle) + v[b] * std::cos(angle);
                    worst = std::max({worst, std::abs(got[a] - ra), std::abs(got[b] - rb)});
                    norm_in += double(v[a]) * v[a] + double(v[b]) * v[b];
                    norm_out += double(got[a]) * got[a] + double(got[b]) * got[b];
                }
                // sin/cos rounded to f32: |Δ| <= 1e-6 * |v|_max-scale (2); the norm to 1e-6 relative.
                CHECK(worst <= 4e-6);
                CHECK(std::abs(std::sqrt(norm_out) - std::sqrt(norm_in)) <= 1e-6 * std::sqrt(norm_in));
            }
}

TEST_CASE("attention matches causal softmax attention with GQA", "[engine][cpu][ops]") {
    cpu::ThreadPool pool(3);
    Random rng(14);
    struct Case {
        int n_head, n_head_kv, hd, T, pos0;
        double q_scale;
    };
    // Includes a single query on a single key, MHA, and scores near ±300 (needs the max subtracted).
    const Case cases[] = {{6, 2, 8, 4, 3, 1}, {4, 4, 16, 1, 0, 1}, {8, 1, 32, 5, 0, 1}, {6, 3, 8, 2, 9, 40}};
    for (const Case& c : cases) {
        INFO("heads " << c.n_head << "/" << c.n_head_kv << " hd " << c.hd << " T " << c.T << " pos0 " << c.pos0);
        const int qd = c.n_head * c.hd, kvd = c.n_head_kv * c.hd, n_pos = c.pos0 + c.T;
        const auto q = rng.floats(size_t(c.T) * qd, -c.q_scale, c.q_scale);
        // Rows past the last position are NaN: reading them would poison the output.
        std::vector<float> k = rng.floats(size_t(n_pos + 3) * kvd, -1, 1),
                           v = rng.floats(size_t(n_pos + 3) * kvd, -1, 1);
        std::fill(k.begin() + size_t(n_pos) * kvd, k.end(), std::numeric_limits<float>::quiet_NaN());
        std::fill(v.begin() + size_t(n_pos) * kvd, v.end(), std::numeric_limits<float>::quiet_NaN());
        std::vector<float> out(size_t(c.T) * qd);
        cpu::attention(pool, q.data(), k.data(), v.data(), out.data(), c.T, c.pos0, c.n_head, c.n_head_kv, c.hd);
        double worst = 0;
        for (int t = 0; t < c.T; ++t)
            for (int h = 0; h < c.n_head; ++h) {
                const int g = h / (c.n_head / c.n_head_kv), n_keys = c.pos0 + t + 1;
                std::vector<double> s(n_keys);
                for (int j = 0; j < n_keys; ++j) {
                    for (int i = 0; i < c.hd; ++i)
                        s[j] += double(q[size_t(t) * qd + h * c.hd + i]) * k[size_t(j) * kvd + g * c.hd + i];
                    s[j] /= std::sqrt(double(c.hd));
                }
                const double top = *std::max_element(s.begin(), s.end());
                double sum = 0;
                for (double& x : s) sum += (x = std::exp(x - top));
                for (int i = 0; i < c.hd; ++i) {
                    double ref = 0;
                    for (int j = 0; j < n_keys; ++j) ref += s[j] / sum * v[size_t(j) * kvd + g * c.hd + i];
                    worst = std::max(worst, std::abs(out[size_t(t) * qd + h * c.hd + i] - ref));
                }
            }
        // Values in [-1, 1]; f32 scores scaled by up to 40 lose ~1e-5 relative in exp: 1e-4 absolute.
        CHECK(worst <= (c.q_scale > 1 ? 1e-4 : 1e-5));
    }
}

TEST_CASE("swiglu matches silu(gate) * up", "[engine][cpu][ops]") {
    Random rng(15);
    const int n = 1001;
    const auto gate = rng.floats(n, -12, 12), up = rng.floats(n, -2, 2);
    std::vector<float> out(n);
    cpu::swiglu(gate.data(), up.data(), out.data(), n);
    for (int i = 0; i < n; ++i) {
        const double ref = gate[i] / (1 + std::exp(-double(gate[i]))) * up[i];
        // A few f32 roundings (exp included): 1e-6 relative, plus 1e-9 for values that round to ~0.
        CHECK(std::abs(out[i] - ref) <= 1e-6 * std::abs(ref) + 1e-9);
    }
}
