// CudaBackend: weight upload, VRAM plan, and the chunked forward pass as a sequence of kernel launches.
#include "engine/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <numeric>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "engine/errors.h"
#include "kernels/attention.h"
#include "kernels/cuda_check.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/kv_cache.h"
#include "kernels/matvec.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/vram.h"

namespace loom::engine::cuda {

namespace {

using kernels::Purpose;

constexpr int kChunk = kernels::kMaxMatvecVectors;       // tokens per prefill pass
constexpr uint64_t kStagingBytes = uint64_t{32} << 20;   // pinned upload buffer
constexpr uint64_t kAlign = kernels::VramAllocator::kDefaultAlignment;

uint64_t round_up(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// A matrix in its file format: (n_out, n_in), rows tensor_bytes(type, n_in) apart.
struct Matrix {
    gguf::TensorType type = gguf::TensorType::F32;
    const void* data = nullptr;
    int n_in = 0, n_out = 0;
};

struct LayerWeights {
    const float *attn_norm = nullptr, *ffn_norm = nullptr, *q_norm = nullptr, *k_norm = nullptr;
    const float *bq = nullptr, *bk = nullptr, *bv = nullptr;
    Matrix wq, wk, wv, wo, gate, up, down;
};

// One tensor to upload: raw file bytes (matrices, F32 vectors) or a host f32 copy (other vectors).
struct Upload {
    const gguf::TensorInfo* info = nullptr;
    std::vector<float> f32;  // non-empty: upload this instead of the file bytes
    std::function<void(const void*)> place;  // stores the device address where the weight set wants it
    uint64_t bytes() const { return f32.empty() ? info->n_bytes : f32.size() * sizeof(float); }
    const uint8_t* src() const {
        return f32.empty() ? nullptr : reinterpret_cast<const uint8_t*>(f32.data());
    }
};

// A pinned host buffer, freed with cudaFreeHost.
struct PinnedDeleter {
    void operator()(void* p) const noexcept { cudaFreeHost(p); }
};
using PinnedPtr = std::unique_ptr<void, PinnedDeleter>;

PinnedPtr alloc_pinned(uint64_t bytes) {
    void* p = nullptr;
    LOOM_CUDA_CHECK(cudaMallocHost(&p, bytes));
    return PinnedPtr(p);
}

}  // namespace

struct CudaBackend::State {
    ModelConfig cfg;
    int device = 0;
    std::string device_name;
    int n_ctx = 0;
    int n_past = 0;
    cudaStream_t stream = nullptr;
    std::unique_ptr<kernels::VramAllocator> vram;

    gguf::TensorType embd_type = gguf::TensorType::F32;
    const void* token_embd = nullptr;
    const float* output_norm = nullptr;
    Matrix output;
    std::vector<LayerWeights> layers;

    kernels::KvCacheLayout kv_layout;
    uint16_t* kv = nullptr;
    // Device constants: identity block table, positions 0..n_ctx-1, sequence lengths 1..n_ctx, RoPE.
    int32_t *block_table = nullptr, *positions = nullptr, *seq_lens = nullptr;
    float* inv_freq = nullptr;
    // Scratch for one chunk (kChunk rows each) and the decode split workspace.
    int32_t* ids = nullptr;  // (n_ctx)
    float *x = nullptr, *h = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *att = nullptr, *o = nullptr;
    float *gate = nullptr, *up = nullptr, *logits = nullptr, *attn_ws = nullptr;
    PinnedPtr ids_host;              // (n_ctx) int32: staging for the token ids
    std::vector<float> observed;     // (kChunk, n_embd): a chunk's hidden states for an observer

    explicit State(const ModelConfig& c) : cfg(c) {}
    ~State() {
        if (stream) cudaStreamDestroy(stream);
    }
};

CudaBackend::CudaBackend(const gguf::File& file, int n_ctx, int device)
    : s_(std::make_unique<State>(ModelConfig::from_gguf(file))) {
    State& s = *s_;
    const ModelConfig& c = s.cfg;
    s.device = device;
    s.n_ctx = n_ctx > 0 ? n_ctx : c.n_ctx_train;
    if (c.rope_dim != c.head_dim)
        throw ModelError("cuda backend: rope_dim " + std::to_string(c.rope_dim) + " != head_dim " +
                         std::to_string(c.head_dim) + " is not supported");
    LOOM_CUDA_CHECK(cudaSetDevice(device));
    cudaDeviceProp prop{};
    LOOM_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    s.device_name = prop.name;

    // Every tensor, with the pointer it will fill; matrices stay in their file format.
    std::vector<Upload> uploads;
    const auto tensor = [&](const std::string& name) { return file.find_tensor(name); };
    const auto add_vector = [&](const std::string& name, const float** dst) {
        const gguf::TensorInfo* t = tensor(name);
        Upload u{t, {}, [dst](const void* p) { *dst = static_cast<const float*>(p); }};
        if (t->type != gguf::TensorType::F32) u.f32 = file.dequantize_tensor(*t);
        uploads.push_back(std::move(u));
    };
    const auto add_matrix = [&](const std::string& name, Matrix& m) {
        const gguf::TensorInfo* t = tensor(name);
        if (!kernels::matvec_supports(t->type))
            throw ModelError("cuda backend: no matvec kernel for " + name + " (type " +
                             std::string(gguf::tensor_type_name(t->type)) + ")");
        m.type = t->type;
        m.n_in = static_cast<int>(t->row_length());
        m.n_out = static_cast<int>(t->n_rows());
        uploads.push_back(Upload{t, {}, [&m](const void* p) { m.data = p; }});
    };

    const gguf::TensorInfo* embd = tensor("token_embd.weight");
    if (!kernels::embedding_supports(embd->type))
        throw ModelError("cuda backend: no embedding kernel for token_embd.weight (type " +
                         std::string(gguf::tensor_type_name(embd->type)) + ")");
    s.embd_type = embd->type;
    uploads.push_back(Upload{embd, {}, [&s](const void* p) { s.token_embd = p; }});
    add_vector("output_norm.weight", &s.output_norm);
    if (!c.tied_embeddings) add_matrix("output.weight", s.output);
    s.layers.resize(c.n_layer);
    for (int l = 0; l < c.n_layer; ++l) {
        LayerWeights& w = s.layers[l];
        add_vector(layer_tensor(l, "attn_norm.weight"), &w.attn_norm);
        add_vector(layer_tensor(l, "ffn_norm.weight"), &w.ffn_norm);
        add_matrix(layer_tensor(l, "attn_q.weight"), w.wq);
        add_matrix(layer_tensor(l, "attn_k.weight"), w.wk);
        add_matrix(layer_tensor(l, "attn_v.weight"), w.wv);
        add_matrix(layer_tensor(l, "attn_output.weight"), w.wo);
        add_matrix(layer_tensor(l, "ffn_gate.weight"), w.gate);
        add_matrix(layer_tensor(l, "ffn_up.weight"), w.up);
        add_matrix(layer_tensor(l, "ffn_down.weight"), w.down);
        if (c.qkv_bias) {
            add_vector(layer_tensor(l, "attn_q.bias"), &w.bq);
            add_vector(layer_tensor(l, "attn_k.bias"), &w.bk);
            add_vector(layer_tensor(l, "attn_v.bias"), &w.bv);
        }
        if (c.qk_norm) {
            add_vector(layer_tensor(l, "attn_q_norm.weight"), &w.q_norm);
            add_vector(layer_tensor(l, "attn_k_norm.weight"), &w.k_norm);
        }
    }

    // The plan: every arena sized up front, with each sub-allocation's alignment padding.
    const int d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim(), ff = c.n_ff;
    s.kv_layout = {c.n_layer, (s.n_ctx + kernels::kKvBlockTokens - 1) / kernels::kKvBlockTokens, c.n_head_kv,
                   c.head_dim};
    const int64_t attn_ws_floats = kernels::decode_attention_workspace_floats(1, c.n_head, c.head_dim, s.n_ctx);
    const uint64_t n_ctx_ints = round_up(static_cast<uint64_t>(s.n_ctx) * sizeof(int32_t));
    const auto floats = [](int64_t n) { return round_up(static_cast<uint64_t>(std::max<int64_t>(n, 1)) * sizeof(float)); };
    kernels::VramPlan plan;
    for (const Upload& u : uploads) plan[Purpose::weights] += round_up(u.bytes());
    plan[Purpose::kv_cache] = round_up(static_cast<uint64_t>(s.kv_layout.arena_elems()) * sizeof(uint16_t)) +
                              round_up(static_cast<uint64_t>(s.kv_layout.n_blocks) * sizeof(int32_t));
    plan[Purpose::workspace] = 3 * n_ctx_ints + floats(c.head_dim / 2) + 3 * floats(int64_t{kChunk} * d) +
                               2 * floats(int64_t{kChunk} * qd) + 2 * floats(int64_t{kChunk} * kvd) +
                               2 * floats(int64_t{kChunk} * ff) + floats(int64_t{kChunk} * c.n_vocab) +
                               floats(attn_ws_floats);
    s.vram = std::make_unique<kernels::VramAllocator>(device, plan);  // verifies residency
    LOOM_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));

    // Upload through a pinned buffer, one chunk at a time (file pages -> pinned -> VRAM).
    const uint64_t biggest = std::max_element(uploads.begin(), uploads.end(), [](const Upload& a, const Upload& b) {
                                 return a.bytes() < b.bytes();
                             })->bytes();
    const uint64_t staging_bytes = std::min(kStagingBytes, biggest);
    PinnedPtr staging = alloc_pinned(staging_bytes);
    for (Upload& u : uploads) {
        auto* dst = static_cast<uint8_t*>(s.vram->allocate(Purpose::weights, u.bytes()));
        const uint8_t* src = u.src() ? u.src() : file.tensor_data(*u.info).data();
        for (uint64_t off = 0; off < u.bytes(); off += staging_bytes) {
            const uint64_t n = std::min(staging_bytes, u.bytes() - off);
            std::memcpy(staging.get(), src + off, n);
            LOOM_CUDA_CHECK(cudaMemcpyAsync(dst + off, staging.get(), n, cudaMemcpyHostToDevice, s.stream));
            LOOM_CUDA_CHECK(cudaStreamSynchronize(s.stream));  // the staging buffer is reused next
        }
        u.place(dst);
    }
    if (c.tied_embeddings) s.output = Matrix{s.embd_type, s.token_embd, d, c.n_vocab};
    if (!kernels::matvec_supports(s.output.type))
        throw ModelError("cuda backend: no matvec kernel for the tied output projection (type " +
                         std::string(gguf::tensor_type_name(s.output.type)) + ")");

    s.kv = static_cast<uint16_t*>(s.vram->allocate(
        Purpose::kv_cache, static_cast<uint64_t>(s.kv_layout.arena_elems()) * sizeof(uint16_t)));
    s.block_table = static_cast<int32_t*>(
        s.vram->allocate(Purpose::kv_cache, static_cast<uint64_t>(s.kv_layout.n_blocks) * sizeof(int32_t)));
    const auto ws_floats = [&](int64_t n) {
        return static_cast<float*>(s.vram->allocate(Purpose::workspace, static_cast<uint64_t>(std::max<int64_t>(n, 1)) * sizeof(float)));
    };
    const auto ws_ints = [&] {
        return static_cast<int32_t*>(s.vram->allocate(Purpose::workspace, static_cast<uint64_t>(s.n_ctx) * sizeof(int32_t)));
    };
    s.positions = ws_ints();
    s.seq_lens = ws_ints();
    s.ids = ws_ints();
    s.inv_freq = ws_floats(c.head_dim / 2);
    s.x = ws_floats(int64_t{kChunk} * d);
    s.h = ws_floats(int64_t{kChunk} * d);
    s.o = ws_floats(int64_t{kChunk} * d);
    s.q = ws_floats(int64_t{kChunk} * qd);
    s.att = ws_floats(int64_t{kChunk} * qd);
    s.k = ws_floats(int64_t{kChunk} * kvd);
    s.v = ws_floats(int64_t{kChunk} * kvd);
    s.gate = ws_floats(int64_t{kChunk} * ff);
    s.up = ws_floats(int64_t{kChunk} * ff);
    s.logits = ws_floats(int64_t{kChunk} * c.n_vocab);
    s.attn_ws = ws_floats(attn_ws_floats);

    // Constants: block b of the table is block b of the arena; positions p; lengths p + 1.
    std::vector<int32_t> table(s.kv_layout.n_blocks), positions(s.n_ctx), lens(s.n_ctx);
    std::iota(table.begin(), table.end(), 0);
    std::iota(positions.begin(), positions.end(), 0);
    std::iota(lens.begin(), lens.end(), 1);
    const std::vector<float> inv_freq = cpu::rope_inv_freq(c.rope_dim, c.rope_base, c.rope_freq_divisors);
    LOOM_CUDA_CHECK(cudaMemcpy(s.block_table, table.data(), table.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    LOOM_CUDA_CHECK(cudaMemcpy(s.positions, positions.data(), positions.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    LOOM_CUDA_CHECK(cudaMemcpy(s.seq_lens, lens.data(), lens.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    LOOM_CUDA_CHECK(cudaMemcpy(s.inv_freq, inv_freq.data(), inv_freq.size() * sizeof(float), cudaMemcpyHostToDevice));
    s.ids_host = alloc_pinned(static_cast<uint64_t>(s.n_ctx) * sizeof(int32_t));
    s.observed.resize(static_cast<size_t>(kChunk) * d);
    if (!s.vram->verify_residency().all_device_resident())
        throw kernels::VramError("cuda backend: an arena is not device-resident");
}

CudaBackend::~CudaBackend() = default;

std::string CudaBackend::device() const { return s_->device_name; }
const ModelConfig& CudaBackend::config() const { return s_->cfg; }
int CudaBackend::n_ctx() const { return s_->n_ctx; }
int CudaBackend::n_past() const { return s_->n_past; }
void CudaBackend::reset() { s_->n_past = 0; }

void CudaBackend::forward(std::span<const int32_t> tokens, std::span<float> logits, bool all_logits,
                          LayerObserver* observer) {
    State& s = *s_;
    const ModelConfig& c = s.cfg;
    const int T = static_cast<int>(tokens.size());
    const int pos0 = s.n_past;
    check_forward_inputs(c, s.n_ctx, pos0, tokens, logits.size(), all_logits);

    LOOM_CUDA_CHECK(cudaSetDevice(s.device));
    cudaStream_t st = s.stream;
    const int d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim(), hd = c.head_dim, ff = c.n_ff;
    const auto style = c.rope_mode == RopeMode::NeoX ? kernels::RopeStyle::NeoX : kernels::RopeStyle::Normal;
    std::memcpy(s.ids_host.get(), tokens.data(), static_cast<size_t>(T) * sizeof(int32_t));
    LOOM_CUDA_CHECK(cudaMemcpyAsync(s.ids, s.ids_host.get(), static_cast<size_t>(T) * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, st));
    const auto mv = [&](const Matrix& m, const float* X, float* Y, int n) {
        kernels::matvec(m.type, m.data, X, Y, m.n_in, m.n_out, n, st);
    };

    for (int t0 = 0; t0 < T; t0 += kChunk) {
        const int n = std::min(kChunk, T - t0), p0 = pos0 + t0;
        const int32_t* pos = s.positions + p0;  // (n): this chunk's positions
        kernels::embedding_lookup(s.embd_type, s.token_embd, c.n_vocab, d, s.ids + t0, n, s.x, st);
        for (int l = 0; l < c.n_layer; ++l) {
            const LayerWeights& w = s.layers[l];
            const kernels::KvLayer kv = kernels::kv_layer(s.kv, s.kv_layout, l);
            kernels::rmsnorm(s.x, w.attn_norm, s.h, n, d, c.rms_eps, st);
            mv(w.wq, s.h, s.q, n);
            mv(w.wk, s.h, s.k, n);
            mv(w.wv, s.h, s.v, n);
            if (c.qkv_bias) {
                kernels::add_bias(s.q, w.bq, n, qd, st);
                kernels::add_bias(s.k, w.bk, n, kvd, st);
                kernels::add_bias(s.v, w.bv, n, kvd, st);
            }
            if (c.qk_norm) {  // per head: rows = tokens * heads
                kernels::rmsnorm(s.q, w.q_norm, s.q, n * c.n_head, hd, c.rms_eps, st);
                kernels::rmsnorm(s.k, w.k_norm, s.k, n * c.n_head_kv, hd, c.rms_eps, st);
            }
            kernels::rope(s.q, s.k, n, c.n_head, c.n_head_kv, hd, qd, kvd, pos, s.inv_freq, style, st);
            kernels::kv_cache_write(s.k, s.v, n, kvd, kvd, pos, nullptr, s.block_table, s.kv_layout.n_blocks, kv, st);
            if (n == 1)
                kernels::decode_attention(s.q, qd, s.att, qd, 1, c.n_head, s.seq_lens + p0, p0 + 1, s.block_table,
                                          s.kv_layout.n_blocks, kv, s.attn_ws, st);
            else
                kernels::prefill_attention(s.q, qd, s.att, qd, n, p0, c.n_head, s.block_table, kv, st);
            mv(w.wo, s.att, s.o, n);
            kernels::add(s.x, s.o, s.x, int64_t{n} * d, st);

            kernels::rmsnorm(s.x, w.ffn_norm, s.h, n, d, c.rms_eps, st);
            mv(w.gate, s.h, s.gate, n);
            mv(w.up, s.h, s.up, n);
            kernels::swiglu(s.gate, s.up, s.gate, int64_t{n} * ff, st);
            mv(w.down, s.gate, s.o, n);
            kernels::add(s.x, s.o, s.x, int64_t{n} * d, st);
            if (observer) {
                LOOM_CUDA_CHECK(cudaMemcpyAsync(s.observed.data(), s.x, static_cast<size_t>(n) * d * sizeof(float),
                                                cudaMemcpyDeviceToHost, st));
                LOOM_CUDA_CHECK(cudaStreamSynchronize(st));
                observer->on_layer_output(l, p0, n, s.observed.data());
            }
        }
        kernels::rmsnorm(s.x, s.output_norm, s.h, n, d, c.rms_eps, st);
        if (observer) {
            LOOM_CUDA_CHECK(cudaMemcpyAsync(s.observed.data(), s.h, static_cast<size_t>(n) * d * sizeof(float),
                                            cudaMemcpyDeviceToHost, st));
            LOOM_CUDA_CHECK(cudaStreamSynchronize(st));
            observer->on_layer_output(c.n_layer, p0, n, s.observed.data());
        }
        // Logits: every row of the chunk when all_logits, else only the last token's.
        if (all_logits) {
            mv(s.output, s.h, s.logits, n);
            LOOM_CUDA_CHECK(cudaMemcpyAsync(logits.data() + static_cast<size_t>(t0) * c.n_vocab, s.logits,
                                            static_cast<size_t>(n) * c.n_vocab * sizeof(float),
                                            cudaMemcpyDeviceToHost, st));
        } else if (t0 + n == T) {
            mv(s.output, s.h + static_cast<size_t>(n - 1) * d, s.logits, 1);
            LOOM_CUDA_CHECK(cudaMemcpyAsync(logits.data(), s.logits, static_cast<size_t>(c.n_vocab) * sizeof(float),
                                            cudaMemcpyDeviceToHost, st));
        }
    }
    LOOM_CUDA_CHECK(cudaStreamSynchronize(st));
    s.n_past += T;
}

}  // namespace loom::engine::cuda
