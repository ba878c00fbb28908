// CpuBackend: the whole forward pass for one sequence, written for clarity first.
#include "engine/cpu/cpu_backend.h"

#include <algorithm>
#include <cstring>
#include <fstream>

#include "engine/cpu/cpu_ops.h"
#include "engine/cpu/thread_pool.h"
#include "engine/errors.h"

namespace loom::engine::cpu {

namespace {

struct LayerWeights {
    std::vector<float> attn_norm, wq, wk, wv, wo, bq, bk, bv, q_norm, k_norm;
    std::vector<float> ffn_norm, w_gate, w_up, w_down;
};

std::string cpu_model_name() {
    std::ifstream in("/proc/cpuinfo");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("model name", 0) == 0) {
            const auto colon = line.find(':');
            if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
        }
    return "unknown processor";
}

}  // namespace

struct CpuBackend::State {
    ModelConfig cfg;
    ThreadPool pool;
    int n_ctx = 0;
    int n_past = 0;
    std::vector<float> token_embd, output_norm, output;  // output empty when tied
    std::vector<LayerWeights> layers;
    std::vector<float> inv_freq;
    std::vector<std::vector<float>> k_cache, v_cache;  // per layer: (n_ctx, kv_dim)

    State(const ModelConfig& c, int threads) : cfg(c), pool(threads) {}
    const std::vector<float>& output_matrix() const { return cfg.tied_embeddings ? token_embd : output; }
};

CpuBackend::CpuBackend(const gguf::File& file, int n_ctx, int n_threads)
    : s_(std::make_unique<State>(ModelConfig::from_gguf(file), n_threads)) {
    State& s = *s_;
    const ModelConfig& c = s.cfg;
    s.n_ctx = n_ctx > 0 ? n_ctx : c.n_ctx_train;
    s.layers.resize(c.n_layer);

    // Every tensor to dequantize, with its destination; converted in parallel.
    std::vector<std::pair<std::string, std::vector<float>*>> jobs = {
        {"token_embd.weight", &s.token_embd}, {"output_norm.weight", &s.output_norm}};
    if (!c.tied_embeddings) jobs.emplace_back("output.weight", &s.output);
    for (int l = 0; l < c.n_layer; ++l) {
        LayerWeights& w = s.layers[l];
        const std::pair<const char*, std::vector<float>*> parts[] = {
            {"attn_norm.weight", &w.attn_norm}, {"attn_q.weight", &w.wq},     {"attn_k.weight", &w.wk},
            {"attn_v.weight", &w.wv},           {"attn_output.weight", &w.wo}, {"ffn_norm.weight", &w.ffn_norm},
            {"ffn_gate.weight", &w.w_gate},     {"ffn_up.weight", &w.w_up},    {"ffn_down.weight", &w.w_down}};
        for (const auto& [suffix, dst] : parts) jobs.emplace_back(layer_tensor(l, suffix), dst);
        if (c.qkv_bias) {
            jobs.emplace_back(layer_tensor(l, "attn_q.bias"), &w.bq);
            jobs.emplace_back(layer_tensor(l, "attn_k.bias"), &w.bk);
            jobs.emplace_back(layer_tensor(l, "attn_v.bias"), &w.bv);
        }
        if (c.qk_norm) {
            jobs.emplace_back(layer_tensor(l, "attn_q_norm.weight"), &w.q_norm);
            jobs.emplace_back(layer_tensor(l, "attn_k_norm.weight"), &w.k_norm);
        }
    }
    s.pool.parallel_for(jobs.size(), 1, [&](size_t begin, size_t end) {
        for (size_t i = begin; i < end; ++i) *jobs[i].second = file.dequantize_tensor(*file.find_tensor(jobs[i].first));
    });

    s.inv_freq = rope_inv_freq(c.rope_dim, c.rope_base, c.rope_freq_divisors);
    s.k_cache.assign(c.n_layer, std::vector<float>(static_cast<size_t>(s.n_ctx) * c.kv_dim()));
    s.v_cache.assign(c.n_layer, std::vector<float>(static_cast<size_t>(s.n_ctx) * c.kv_dim()));
}

CpuBackend::~CpuBackend() = default;

std::string CpuBackend::device() const {
    return "CPU (" + cpu_model_name() + ", " + std::to_string(s_->pool.size()) + " threads)";
}
const ModelConfig& CpuBackend::config() const { return s_->cfg; }
int CpuBackend::n_ctx() const { return s_->n_ctx; }
int CpuBackend::n_past() const { return s_->n_past; }
void CpuBackend::reset() { s_->n_past = 0; }

void CpuBackend::forward(std::span<const int32_t> tokens, std::span<float> logits, bool all_logits,
                         LayerObserver* observer) {
    State& s = *s_;
    const ModelConfig& c = s.cfg;
    const int T = static_cast<int>(tokens.size());
    const int pos0 = s.n_past;
    check_forward_inputs(c, s.n_ctx, pos0, tokens, logits.size(), all_logits);

    const int d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim(), hd = c.head_dim, ff = c.n_ff;
    const auto rows = [](int n, int width) { return std::vector<float>(static_cast<size_t>(n) * width); };
    std::vector<float> x = rows(T, d), h = rows(T, d), q = rows(T, qd), k = rows(T, kvd), v = rows(T, kvd);
    std::vector<float> att = rows(T, qd), o = rows(T, d), gate = rows(T, ff), up = rows(T, ff), act = rows(T, ff);

    for (int t = 0; t < T; ++t)
        std::memcpy(&x[static_cast<size_t>(t) * d], &s.token_embd[static_cast<size_t>(tokens[t]) * d], d * sizeof(float));

    for (int l = 0; l < c.n_layer; ++l) {
        const LayerWeights& w = s.layers[l];
        for (int t = 0; t < T; ++t) rmsnorm(&x[size_t(t) * d], w.attn_norm.data(), &h[size_t(t) * d], d, c.rms_eps);
        matmul(s.pool, w.wq.data(), h.data(), q.data(), T, d, qd);
        matmul(s.pool, w.wk.data(), h.data(), k.data(), T, d, kvd);
        matmul(s.pool, w.wv.data(), h.data(), v.data(), T, d, kvd);
        for (int t = 0; t < T; ++t) {
            float* qt = &q[size_t(t) * qd];
            float* kt = &k[size_t(t) * kvd];
            float* vt = &v[size_t(t) * kvd];
            if (c.qkv_bias) {
                for (int i = 0; i < qd; ++i) qt[i] += w.bq[i];
                for (int i = 0; i < kvd; ++i) kt[i] += w.bk[i];
                for (int i = 0; i < kvd; ++i) vt[i] += w.bv[i];
            }
            for (int hh = 0; hh < c.n_head; ++hh) {
                if (c.qk_norm) rmsnorm(qt + hh * hd, w.q_norm.data(), qt + hh * hd, hd, c.rms_eps);
                rope(qt + hh * hd, hd, pos0 + t, c.rope_mode, s.inv_freq);
            }
            for (int hh = 0; hh < c.n_head_kv; ++hh) {
                if (c.qk_norm) rmsnorm(kt + hh * hd, w.k_norm.data(), kt + hh * hd, hd, c.rms_eps);
                rope(kt + hh * hd, hd, pos0 + t, c.rope_mode, s.inv_freq);
            }
            std::memcpy(&s.k_cache[l][size_t(pos0 + t) * kvd], kt, kvd * sizeof(float));
            std::memcpy(&s.v_cache[l][size_t(pos0 + t) * kvd], vt, kvd * sizeof(float));
        }
        attention(s.pool, q.data(), s.k_cache[l].data(), s.v_cache[l].data(), att.data(), T, pos0, c.n_head,
                  c.n_head_kv, hd);
        matmul(s.pool, w.wo.data(), att.data(), o.data(), T, qd, d);
        for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];

        for (int t = 0; t < T; ++t) rmsnorm(&x[size_t(t) * d], w.ffn_norm.data(), &h[size_t(t) * d], d, c.rms_eps);
        matmul(s.pool, w.w_gate.data(), h.data(), gate.data(), T, d, ff);
        matmul(s.pool, w.w_up.data(), h.data(), up.data(), T, d, ff);
        swiglu(gate.data(), up.data(), act.data(), T * ff);
        matmul(s.pool, w.w_down.data(), act.data(), o.data(), T, ff, d);
        for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
        if (observer) observer->on_layer_output(l, pos0, T, x.data());
    }

    for (int t = 0; t < T; ++t) rmsnorm(&x[size_t(t) * d], s.output_norm.data(), &h[size_t(t) * d], d, c.rms_eps);
    if (observer) observer->on_layer_output(c.n_layer, pos0, T, h.data());
    const float* head_in = all_logits ? h.data() : &h[size_t(T - 1) * d];
    matmul(s.pool, s.output_matrix().data(), head_in, logits.data(), all_logits ? T : 1, d, c.n_vocab);
    s.n_past += T;
}

}  // namespace loom::engine::cpu
