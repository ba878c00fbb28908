// CpuBackend: the whole forward pass of one sequence, written for clarity first; plans run it per entry.
#include "engine/cpu/cpu_backend.h"

#include <atomic>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <utility>

#include "engine/cpu/cpu_ops.h"
#include "engine/cpu/thread_pool.h"
#include "engine/errors.h"
#include "engine/q8_policy.h"
#include "engine/sampler.h"
#include "kernels/q8_repack.h"

namespace loom::engine::cpu {

namespace {

// A layer matrix in f32, and its type in the file (the CUDA backend's q8 choice depends on it).
struct Matrix {
    std::vector<float> w;
    gguf::TensorType type = gguf::TensorType::F32;
};

struct LayerWeights {
    std::vector<float> attn_norm, bq, bk, bv, q_norm, k_norm, ffn_norm;
    Matrix wq, wk, wv, wo, w_gate, w_up, w_down;
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

// Positions per KV block: the same accounting unit as the CUDA backend's paged cache.
constexpr int kKvBlockTokens = 16;

struct CpuBackend::State {
    ModelConfig cfg;
    ThreadPool pool;
    int n_ctx = 0;
    int max_batch_tokens = 0;
    KvCapacity kv;
    // Block b's K and V rows: (n_layer, 2, kKvBlockTokens, kv_dim) floats, allocated when first written.
    std::vector<std::vector<float>> kv_blocks;
    std::atomic<uint64_t> kv_blocks_written{0};          // blocks holding RAM, for memory() on other threads
    std::vector<float> token_embd, output_norm, output;  // output empty when tied
    std::vector<LayerWeights> layers;
    std::vector<float> inv_freq;
    CpuBackend::StepLogitsSink logits_sink;
    bool q8_emulation = false;

    State(const ModelConfig& c, int threads, int ctx, const BatchLimits& limits, bool q8)
        : cfg(c),
          pool(threads),
          n_ctx(ctx > 0 ? ctx : c.n_ctx_train),
          max_batch_tokens(limits.max_batch_tokens),
          kv{kv_blocks_for(limits, n_ctx), kKvBlockTokens, limits.max_seqs},
          kv_blocks(static_cast<size_t>(kv.blocks)),
          q8_emulation(q8) {}
    const std::vector<float>& output_matrix() const { return cfg.tied_embeddings ? token_embd : output; }

    static int kv_blocks_for(const BatchLimits& limits, int n_ctx) {
        if (limits.max_seqs < 1) throw RequestError("max_seqs must be positive");
        const int64_t tokens = limits.kv_tokens > 0 ? limits.kv_tokens : int64_t{limits.max_seqs} * n_ctx;
        return static_cast<int>((tokens + kKvBlockTokens - 1) / kKvBlockTokens);
    }
    uint64_t block_floats() const { return uint64_t{2} * cfg.n_layer * kKvBlockTokens * cfg.kv_dim(); }

    // The K (which 0) or V (which 1) row of `layer` at position pos of a sequence with this table.
    float* kv_row(std::span<const int32_t> blocks, int layer, int which, int pos) {
        std::vector<float>& b = kv_blocks[static_cast<size_t>(blocks[static_cast<size_t>(pos / kKvBlockTokens)])];
        if (b.empty()) {
            b.resize(block_floats());
            kv_blocks_written.fetch_add(1, std::memory_order_relaxed);
        }
        return &b[((size_t(layer) * 2 + which) * kKvBlockTokens + pos % kKvBlockTokens) * cfg.kv_dim()];
    }
    // Rows 0 .. len-1 of `layer`'s K or V, copied from the blocks into one contiguous (len, kv_dim) table.
    void gather(std::span<const int32_t> blocks, int layer, int which, int len, std::vector<float>& out) {
        const size_t kvd = static_cast<size_t>(cfg.kv_dim());
        out.resize(static_cast<size_t>(len) * kvd);
        for (int p0 = 0; p0 < len; p0 += kKvBlockTokens)
            std::memcpy(&out[size_t(p0) * kvd], kv_row(blocks, layer, which, p0),
                        size_t(std::min(kKvBlockTokens, len - p0)) * kvd * sizeof(float));
    }

    // The first of an entry's T rows whose inputs the CUDA backend quantizes for the q8 products; T when
    // none is, or without q8 emulation. It runs the rows in chunks of `chunk` (a logits pass: max_batch_tokens;
    // a step's entry: one part), only the last one shorter, and quantizes those of chunks up to
    // kMaxPartMatvecRows rows (a decode row is a chunk of one).
    int q8_first_row(int T, int chunk) const {
        if (!q8_emulation) return T;
        const int last = T - (T - 1) / chunk * chunk;
        return chunk <= kMaxPartMatvecRows ? 0 : last <= kMaxPartMatvecRows ? T - last : T;
    }
    // Y (T, n_out) = W @ X (T, n_in); rows q8_from.. of X replaced first by their q8 round trip x' = q d
    // (kernels::q8_quantize_x_ref) when the CUDA backend takes W through the q8 products.
    void product(const Matrix& m, const float* X, float* Y, int T, int n_in, int n_out, int q8_from) {
        if (q8_from >= T || !q8_eligible(m.type, n_in)) {
            matmul(pool, m.w.data(), X, Y, T, n_in, n_out);
            return;
        }
        std::vector<float> rows(X, X + static_cast<size_t>(T) * n_in);
        float* quantized = &rows[static_cast<size_t>(q8_from) * n_in];
        const kernels::Q8X xq = kernels::q8_quantize_x_ref(quantized, T - q8_from, n_in);
        for (size_t i = 0; i < xq.q.size(); ++i)
            quantized[i] = static_cast<float>(xq.q[i]) * xq.meta[i / kernels::q8::kUnit].d;
        matmul(pool, m.w.data(), rows.data(), Y, T, n_in, n_out);
    }

    // Runs the entry's tokens at positions pos0 .. pos0+T-1; logits (n_vocab) for the last token,
    // or (T, n_vocab) when all_logits. Rows q8_from.. go through the q8 round trip (product).
    void run(const PlanEntry& e, float* logits, bool all_logits, LayerObserver* observer, int q8_from);
    BatchOutput sample(const PlanEntry& e, std::span<const float> logits) const;
};

CpuBackend::CpuBackend(const gguf::File& file, int n_ctx, int n_threads, const BatchLimits& limits, bool q8_emulation)
    : s_(std::make_unique<State>(ModelConfig::from_gguf(file), n_threads, n_ctx, limits, q8_emulation)) {
    State& s = *s_;
    const ModelConfig& c = s.cfg;
    if (limits.max_batch_tokens < 1) throw RequestError("max_batch_tokens must be positive");
    if (limits.vram_budget > 0)
        throw RequestError("vram_budget", "the cpu backend holds host RAM; a VRAM budget is for cuda");
    s.layers.resize(c.n_layer);

    // Every tensor to dequantize, with its destination; converted in parallel. Layer matrices keep their type.
    struct Job {
        std::string name;
        std::vector<float>* dst;
        gguf::TensorType* type = nullptr;
    };
    std::vector<Job> jobs = {{"token_embd.weight", &s.token_embd}, {"output_norm.weight", &s.output_norm}};
    if (!c.tied_embeddings) jobs.push_back({"output.weight", &s.output});
    for (int l = 0; l < c.n_layer; ++l) {
        LayerWeights& w = s.layers[l];
        jobs.push_back({layer_tensor(l, "attn_norm.weight"), &w.attn_norm});
        jobs.push_back({layer_tensor(l, "ffn_norm.weight"), &w.ffn_norm});
        const std::pair<const char*, Matrix*> matrices[] = {
            {"attn_q.weight", &w.wq},      {"attn_k.weight", &w.wk},       {"attn_v.weight", &w.wv},
            {"attn_output.weight", &w.wo}, {"ffn_gate.weight", &w.w_gate}, {"ffn_up.weight", &w.w_up},
            {"ffn_down.weight", &w.w_down}};
        for (const auto& [suffix, m] : matrices) jobs.push_back({layer_tensor(l, suffix), &m->w, &m->type});
        if (c.qkv_bias) {
            jobs.push_back({layer_tensor(l, "attn_q.bias"), &w.bq});
            jobs.push_back({layer_tensor(l, "attn_k.bias"), &w.bk});
            jobs.push_back({layer_tensor(l, "attn_v.bias"), &w.bv});
        }
        if (c.qk_norm) {
            jobs.push_back({layer_tensor(l, "attn_q_norm.weight"), &w.q_norm});
            jobs.push_back({layer_tensor(l, "attn_k_norm.weight"), &w.k_norm});
        }
    }
    s.pool.parallel_for(jobs.size(), 1, [&](size_t begin, size_t end) {
        for (size_t i = begin; i < end; ++i) {
            const gguf::TensorInfo& t = *file.find_tensor(jobs[i].name);
            *jobs[i].dst = file.dequantize_tensor(t);
            if (jobs[i].type) *jobs[i].type = t.type;
        }
    });

    s.inv_freq = rope_inv_freq(c.rope_dim, c.rope_base, c.rope_freq_divisors);
}

CpuBackend::~CpuBackend() = default;

std::string CpuBackend::device() const {
    return "CPU (" + cpu_model_name() + ", " + std::to_string(s_->pool.size()) + " threads)";
}
const ModelConfig& CpuBackend::config() const { return s_->cfg; }
int CpuBackend::n_ctx() const { return s_->n_ctx; }
int CpuBackend::max_batch_tokens() const { return s_->max_batch_tokens; }
KvCapacity CpuBackend::kv_capacity() const { return s_->kv; }

BatchOutput CpuBackend::State::sample(const PlanEntry& e, std::span<const float> logits) const {
    BatchOutput out;
    try {
        Sampler sampler(*e.sampling, cfg.n_vocab);
        if (e.top_logprobs >= 0) {
            out.token = sampler.sample_with_logprobs(logits, e.history, e.sample_step, e.top_logprobs);
        } else {
            out.token.token = sampler.sample(logits, e.history, e.sample_step);
            out.token.logprob = 0.f;
        }
        out.sampled = true;
    } catch (const SamplingError& err) {
        out.error = err.what();
    }
    return out;
}

std::vector<BatchOutput> CpuBackend::execute(const StepPlan& plan) {
    State& s = *s_;
    check_plan(plan, s.kv, s.cfg.n_vocab, s.n_ctx, s.max_batch_tokens);
    std::vector<BatchOutput> out(plan.entries.size());
    if (!plan.logits.empty()) {
        const PlanEntry& e = plan.entries.front();
        const int T = static_cast<int>(e.tokens.size());
        s.run(e, plan.logits.data(), plan.all_logits, plan.observer, s.q8_first_row(T, s.max_batch_tokens));
        return out;
    }
    std::vector<float> all;
    for (size_t i = 0; i < plan.entries.size(); ++i) {
        const PlanEntry& e = plan.entries[i];
        const int T = s.logits_sink ? static_cast<int>(e.tokens.size()) : 1;
        all.resize(static_cast<size_t>(T) * s.cfg.n_vocab);
        const int n = static_cast<int>(e.tokens.size());
        s.run(e, all.data(), s.logits_sink != nullptr, plan.observer, s.q8_first_row(n, n));
        if (s.logits_sink) s.logits_sink(e.seq, e.pos0, T, all.data());
        if (e.sampling) out[i] = s.sample(e, std::span<const float>(all).last(static_cast<size_t>(s.cfg.n_vocab)));
    }
    return out;
}

void CpuBackend::set_step_logits_sink(StepLogitsSink sink) { s_->logits_sink = std::move(sink); }

MemoryReport CpuBackend::memory() const {
    const State& s = *s_;
    const auto bytes = [](const std::vector<float>& v) { return static_cast<uint64_t>(v.size()) * sizeof(float); };
    uint64_t weights = bytes(s.token_embd) + bytes(s.output_norm) + bytes(s.output);
    for (const LayerWeights& w : s.layers)
        for (const auto* v : {&w.attn_norm, &w.wq.w, &w.wk.w, &w.wv.w, &w.wo.w, &w.bq, &w.bk, &w.bv, &w.q_norm,
                              &w.k_norm, &w.ffn_norm, &w.w_gate.w, &w.w_up.w, &w.w_down.w})
            weights += bytes(*v);
    const uint64_t block_bytes = s.block_floats() * sizeof(float);
    const uint64_t kv_used = s.kv_blocks_written.load(std::memory_order_relaxed) * block_bytes;  // kept once written
    return MemoryReport{
        "host RAM",
        false,
        {{"weights", weights, weights}, {"kv_cache", static_cast<uint64_t>(s.kv.blocks) * block_bytes, kv_used}}};
}

void CpuBackend::State::run(const PlanEntry& e, float* logits_out, bool all_logits, LayerObserver* observer,
                            int q8_from) {
    State& s = *this;
    const ModelConfig& c = s.cfg;
    const std::span<const int32_t> tokens = e.tokens;
    const int T = static_cast<int>(tokens.size());
    const int pos0 = e.pos0;
    std::vector<float> k_seq, v_seq;  // the layer's K/V rows 0 .. pos0+T-1, gathered from the blocks

    const int d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim(), hd = c.head_dim, ff = c.n_ff;
    const auto rows = [](int n, int width) { return std::vector<float>(static_cast<size_t>(n) * width); };
    std::vector<float> x = rows(T, d), h = rows(T, d), q = rows(T, qd), k = rows(T, kvd), v = rows(T, kvd);
    std::vector<float> att = rows(T, qd), o = rows(T, d), gate = rows(T, ff), up = rows(T, ff), act = rows(T, ff);

    for (int t = 0; t < T; ++t)
        std::memcpy(&x[static_cast<size_t>(t) * d], &s.token_embd[static_cast<size_t>(tokens[t]) * d],
                    d * sizeof(float));

    for (int l = 0; l < c.n_layer; ++l) {
        const LayerWeights& w = s.layers[l];
        for (int t = 0; t < T; ++t) rmsnorm(&x[size_t(t) * d], w.attn_norm.data(), &h[size_t(t) * d], d, c.rms_eps);
        s.product(w.wq, h.data(), q.data(), T, d, qd, q8_from);
        s.product(w.wk, h.data(), k.data(), T, d, kvd, q8_from);
        s.product(w.wv, h.data(), v.data(), T, d, kvd, q8_from);
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
            std::memcpy(s.kv_row(e.blocks, l, 0, pos0 + t), kt, kvd * sizeof(float));
            std::memcpy(s.kv_row(e.blocks, l, 1, pos0 + t), vt, kvd * sizeof(float));
        }
        s.gather(e.blocks, l, 0, pos0 + T, k_seq);
        s.gather(e.blocks, l, 1, pos0 + T, v_seq);
        attention(s.pool, q.data(), k_seq.data(), v_seq.data(), att.data(), T, pos0, c.n_head, c.n_head_kv, hd);
        s.product(w.wo, att.data(), o.data(), T, qd, d, q8_from);
        for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];

        for (int t = 0; t < T; ++t) rmsnorm(&x[size_t(t) * d], w.ffn_norm.data(), &h[size_t(t) * d], d, c.rms_eps);
        s.product(w.w_gate, h.data(), gate.data(), T, d, ff, q8_from);
        s.product(w.w_up, h.data(), up.data(), T, d, ff, q8_from);
        swiglu(gate.data(), up.data(), act.data(), T * ff);
        s.product(w.w_down, act.data(), o.data(), T, ff, d, q8_from);
        for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
        if (observer) observer->on_layer_output(l, pos0, T, x.data());
    }

    for (int t = 0; t < T; ++t) rmsnorm(&x[size_t(t) * d], s.output_norm.data(), &h[size_t(t) * d], d, c.rms_eps);
    if (observer) observer->on_layer_output(c.n_layer, pos0, T, h.data());
    const float* head_in = all_logits ? h.data() : &h[size_t(T - 1) * d];
    matmul(s.pool, s.output_matrix().data(), head_in, logits_out, all_logits ? T : 1, d, c.n_vocab);
}

}  // namespace loom::engine::cpu
