// CudaBackend: the load in stages (VRAM plan from the buffer tables), step staging, and the batched forward pass.
#include "engine/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <map>
#include <stdexcept>
#include <utility>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "engine/cuda/buffer_table.h"
#include "engine/cuda/cuda_sampler.h"
#include "engine/cuda/cuda_weights.h"
#include "engine/cuda/pinned_buffer.h"
#include "engine/cuda_support.h"
#include "engine/errors.h"
#include "engine/memory_budget.h"
#include "engine/q8_policy.h"
#include "kernels/attention.h"
#include "kernels/cuda_check.h"
#include "kernels/dequantize.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/kv_cache.h"
#include "kernels/launch.h"
#include "kernels/matvec.h"
#include "kernels/q8_matmul.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/vram.h"

namespace loom::engine::cuda {

namespace {

using kernels::Purpose;

constexpr uint64_t kAlign = kernels::VramAllocator::kDefaultAlignment;

// Rows of logits one projection produces: a step's sampled rows, or a slice of all_logits.
constexpr int kMinLogitsRows = 64;

// The int32 arrays one pass stages on the host and uploads in one copy. Offsets in ints. max_decode: the
// decode rows a pass may hold (max_seqs; max_tokens in batch-invariant mode, where every row is one).
struct StepLayout {
    int max_tokens = 0, max_decode = 0, max_updates = 0;
    int64_t ids() const { return 0; }                                  // (max_tokens) token ids
    int64_t positions() const { return max_tokens; }                   // (max_tokens) each token's position
    int64_t token_slot() const { return 2 * int64_t{max_tokens}; }     // (max_tokens) its sequence slot
    int64_t decode_slot() const { return 3 * int64_t{max_tokens}; }    // (max_decode) slot of decode row r
    int64_t decode_len() const { return decode_slot() + max_decode; }  // (max_decode) length incl. its token
    int64_t gather() const { return decode_len() + max_decode; }       // (max_tokens) rows whose logits are wanted
    int64_t updates() const { return gather() + max_tokens; }          // 1 + 2 * max_updates: block-table changes
    int64_t total() const { return updates() + 1 + 2 * int64_t{max_updates}; }
};

// One forward pass: rows 0 .. n_decode-1 are decode rows, the rest are prefill parts; the final hidden
// states of rows gather[0 .. n_gather-1] are normed and projected. A decode row is a sequence's one new
// token, or in batch-invariant mode any token, prefill ones included (prefill_rows: some are).
struct Pass {
    struct Part {
        int row0, n, pos0, slot;
    };
    int n_rows = 0, n_decode = 0, n_gather = 0;
    int attn_len = 0;     // decode attention's grid bound: a power of two >= every decode row's length
    bool project = true;  // compute the gathered rows' logits (n_gather <= the logits buffer's rows)
    bool prefill_rows = false;
    std::vector<Part> parts;
    // Only sequences' new tokens: a step a CUDA graph of its batch size may replay.
    bool decode_tokens_only() const { return parts.empty() && !prefill_rows; }
};

}  // namespace

struct CudaBackend::State {
    ModelConfig cfg;
    int device = 0;
    std::string device_name;
    int n_ctx = 0;
    int max_tokens = 0;  // per pass
    int max_seqs = 0;
    int logits_rows = 0;
    bool use_graphs = true;
    // Every token a decode row, prefill ones too: one product and attention order per row whatever its
    // step holds, so a position's logits do not depend on chunking or batch company (BackendOptions).
    bool batch_invariant = false;
    cudaStream_t stream = nullptr;
    std::unique_ptr<kernels::VramAllocator> vram;

    ModelWeights weights;

    KvTable kv_buffers;  // the KV-cache arena's buffers, as planned
    kernels::KvCacheLayout kv_layout;
    kernels::KvType kv_type = kernels::KvType::f16;
    void* kv = nullptr;
    int32_t* block_tables = nullptr;  // (max_seqs, table_stride) block ids by slot: the plans' tables
    int table_stride = 0;
    int kv_blocks = 0;

    StepLayout layout;
    WorkspaceTable workspace_buffers;  // every scratch buffer below, as planned
    int32_t* step_dev = nullptr;       // layout.total() ints, staged in step_host
    PinnedPtr step_host;
    float* inv_freq = nullptr;
    // The workspace buffers, bound from workspace_buffers (their shapes: Ws in engine/cuda/buffer_table.h).
    float *x = nullptr, *h = nullptr, *qkv = nullptr, *att = nullptr, *o = nullptr;
    float *gate_up = nullptr, *act = nullptr, *hg = nullptr, *logits = nullptr, *attn_ws = nullptr;
    // Decode rows' fused norm inputs: x ⊙ (the next norm's weight) and the square sums of x; see kernels/matvec.h.
    float *xw = nullptr, *norm_sums = nullptr;
    unsigned* attn_counters = nullptr;  // decode attention's split arrivals (zeroed at load, left zero)
    int8_t* q8_x = nullptr;             // rows quantized for the q8 products, and their scales
    kernels::q8::XMeta* q8_meta = nullptr;
    // What q8_x holds for the decode rows, so the products reading it skip their quantization: the normed
    // rows of a norm weight (the residual epilogue or a normed product quantized them; the weight's address),
    // or the attention output (decode attention quantized it; att's address); null for anything else.
    const void* q8_x_holds = nullptr;
    int q8_width = 0;                   // the widest input of a repacked matrix
    uint64_t repack_staging_bytes = 0;  // the gemm workspace doubles as the repack's staging at load
    void* gemm_ws = nullptr;
    uint64_t gemm_ws_bytes = 0;
    std::unique_ptr<kernels::GemmContext> gemm;
    std::unique_ptr<CudaSampler> sampler;
    std::vector<float> observed;   // (max_tokens, n_embd): a pass's hidden states for an observer
    bool device_resident = false;  // every arena, as cudaPointerGetAttributes said at load
    uint64_t upload_bytes = 0;
    double upload_seconds = 0;
    LoadCallback on_load_step;                         // the upload's progress, then graph captures
    std::map<int64_t, cudaGraphExec_t> decode_graphs;  // by (attention bound, decode batch size, logits projected)

    State(const ModelConfig& c, int ctx, const BatchLimits& limits)
        : cfg(c),
          n_ctx(ctx > 0 ? ctx : c.n_ctx_train),
          max_tokens(limits.max_batch_tokens),
          max_seqs(limits.max_seqs),
          logits_rows(std::max(limits.max_seqs, kMinLogitsRows)) {
        if (limits.max_seqs < 1 || limits.max_batch_tokens < 1)
            throw RequestError("max_seqs and max_batch_tokens must be positive");
    }
    ~State() {
        for (auto& [n, exec] : decode_graphs) cudaGraphExecDestroy(exec);
        gemm.reset();
        if (stream) cudaStreamDestroy(stream);
    }

    int32_t* host_ints() { return static_cast<int32_t*>(step_host.get()); }
    int decode_rows() const { return batch_invariant ? max_tokens : max_seqs; }

    // The products of a pass. Decode rows go through matvec in groups of kMaxMatvecVectors with
    // the norms and residual adds fused in; each prefill part goes by itself (matvec up to
    // kMaxPartMatvecRows rows, else the GEMM) on explicitly normed rows. A row's result then
    // depends only on its own part, never on what else shares the batch, so a sequence gets the
    // same tokens alone or batched (matvec sums each vector in the same order whatever the group).

    // Repacked matrices: Y (n, n_out) = W @ X rows, X quantized per 32 first (one order whatever n).
    void q8_rows(const Matrix& m, const float* X, float* Y, int n) {
        q8_x_holds = nullptr;
        kernels::q8_quantize_x(X, q8_x, q8_meta, n, m.n_in, stream);
        kernels::q8_product(m.q8, q8_x, q8_meta, Y, n, kernels::Q8Kernel::automatic, stream);
    }

    // Repacked matrices, prefill parts past kMaxPartMatvecRows: W dequantized to fp16 in the gemm
    // workspace and X rounded to fp16 after it ([W][X], gemm_workspace_bytes' layout), one cuBLAS
    // product, as kernels::gemm does for file-format weights.
    void q8_gemm(const Matrix& m, const float* X, float* Y, int n) {
        const uint64_t w_bytes = (uint64_t{2} * m.n_out * m.n_in + kAlign - 1) / kAlign * kAlign;
        auto* w16 = static_cast<uint16_t*>(gemm_ws);
        auto* x16 = reinterpret_cast<uint16_t*>(static_cast<char*>(gemm_ws) + w_bytes);
        kernels::q8_dequantize_f16(m.q8, w16, stream);
        kernels::dequantize_to_f16(gguf::TensorType::F32, X, x16, m.n_in, n, stream);
        kernels::gemm_half(*gemm, kernels::HalfType::f16, w16, x16, Y, m.n_in, m.n_out, n, false, stream);
    }

    // Decode rows: Y = W @ rmsnorm(x) * norm, from xw = x ⊙ norm and the square sums of x (or, for a
    // repacked W, from q8_x where it already holds those rows quantized).
    void mm_normed(const Matrix& m, const float* norm, float* Y, const Pass& pass) {
        if (m.q8.data) {
            if (pass.n_decode == 0) return;
            if (q8_x_holds != norm)
                kernels::q8_quantize_x_normed(xw, norm_sums, cfg.rms_eps, q8_x, q8_meta, pass.n_decode, m.n_in, stream);
            q8_x_holds = norm;
            kernels::q8_product(m.q8, q8_x, q8_meta, Y, pass.n_decode, kernels::Q8Kernel::automatic, stream);
            return;
        }
        const int n_sums = kernels::norm_partial_count(m.n_in);
        for (int r0 = 0; r0 < pass.n_decode; r0 += kernels::kMaxMatvecVectors)
            kernels::matvec_normed(m.type, m.data, xw + int64_t{r0} * m.n_in, norm_sums + int64_t{r0} * n_sums,
                                   cfg.rms_eps, Y + int64_t{r0} * m.n_out, m.n_in, m.n_out,
                                   std::min(kernels::kMaxMatvecVectors, pass.n_decode - r0), stream);
    }
    // What a residual product's decode rows read: plain rows of its input, or (swiglu_pairs) the rows of
    // the fused gate/up product in the pair layout, SwiGLU'd by the x quantization of the product itself.
    struct ResidualInput {
        enum class Kind { rows, swiglu_pairs } kind;
        const float* X;
    };
    // The down product's decode input. When gate_up and down are both repacked, down's quantization takes
    // gate_up's raw rows (kernels::q8_quantize_swiglu, bit for bit swiglu_pairs then q8_quantize_x): one
    // launch and one f32 round trip fewer per layer, and mm_normed_swiglu leaves act's decode rows unwritten.
    ResidualInput down_input(const LayerWeights& w) const {
        if (w.gate_up.q8.data && w.down.q8.data) return {ResidualInput::Kind::swiglu_pairs, gate_up};
        return {ResidualInput::Kind::rows, act};
    }

    // Decode rows: Y = silu(gate) * up of the pair-layout gate_up @ rmsnorm(x) * w, or, for a down input
    // of swiglu_pairs, only the product into gate_up's rows (down's quantization applies SwiGLU).
    void mm_normed_swiglu(const Matrix& m, const float* norm, float* Y, const Pass& pass, const ResidualInput& down) {
        const bool swiglu_in_down = down.kind == ResidualInput::Kind::swiglu_pairs;
        if (swiglu_in_down && (!m.q8.data || down.X != gate_up))
            throw std::logic_error("mm_normed_swiglu: a swiglu_pairs down input needs gate_up repacked, read there");
        if (m.q8.data) {  // the pairs' products into gate_up's decode rows, then SwiGLU unless down does it
            mm_normed(m, norm, gate_up, pass);
            if (pass.n_decode > 0 && !swiglu_in_down)
                kernels::swiglu_pairs(gate_up, pass.n_decode, m.n_out / 2, Y, stream);
            return;
        }
        const int n_sums = kernels::norm_partial_count(m.n_in);
        for (int r0 = 0; r0 < pass.n_decode; r0 += kernels::kMaxMatvecVectors)
            kernels::matvec_normed_swiglu(m.type, m.data, xw + int64_t{r0} * m.n_in, norm_sums + int64_t{r0} * n_sums,
                                          cfg.rms_eps, Y + int64_t{r0} * (m.n_out / 2), m.n_in, m.n_out,
                                          std::min(kernels::kMaxMatvecVectors, pass.n_decode - r0), stream);
    }
    // Decode rows: x += W @ X, and the next norm's inputs (weight `next_norm`) into xw, norm_sums; or, when
    // every product reading them is repacked (next_q8) and no prefill part's q8_rows comes between, those
    // rows quantized into q8_x by the same launch (kernels::q8_residual_quantize_normed: the same bits, one
    // launch fewer, xw and norm_sums left unwritten). A swiglu_pairs input is quantized here, right before
    // its product, not after gate_up's: the prefill parts' q8_rows between the two reuse q8_x.
    void mm_residual(const Matrix& m, const ResidualInput& in, const float* next_norm, bool next_q8, const Pass& pass) {
        const float* X = in.X;
        const bool pairs = in.kind == ResidualInput::Kind::swiglu_pairs;
        if (pairs && !m.q8.data)
            throw std::logic_error("mm_residual: SwiGLU pair rows need a repacked matrix (q8_quantize_swiglu)");
        if (m.q8.data) {  // the product into o's decode rows, then x += it and the next norm's inputs
            const int D = pass.n_decode;
            if (D == 0) return;
            if (pairs)
                kernels::q8_quantize_swiglu(X, q8_x, q8_meta, D, m.n_in, stream);
            else if (q8_x_holds != X)
                kernels::q8_quantize_x(X, q8_x, q8_meta, D, m.n_in, stream);
            kernels::q8_product(m.q8, q8_x, q8_meta, o, D, kernels::Q8Kernel::automatic, stream);
            q8_x_holds = nullptr;
            if (next_q8 && pass.parts.empty() && m.n_out <= kernels::kQ8ResidualMaxN) {
                kernels::q8_residual_quantize_normed(x, o, next_norm, cfg.rms_eps, q8_x, q8_meta, D, m.n_out, stream);
                q8_x_holds = next_norm;
            } else {
                kernels::residual_norm_inputs(x, o, next_norm, xw, norm_sums, D, m.n_out, stream);
            }
            return;
        }
        const int n_sums = kernels::norm_partial_count(m.n_out);
        for (int r0 = 0; r0 < pass.n_decode; r0 += kernels::kMaxMatvecVectors)
            kernels::matvec_residual(m.type, m.data, X + int64_t{r0} * m.n_in, x + int64_t{r0} * m.n_out, next_norm,
                                     xw + int64_t{r0} * m.n_out, norm_sums + int64_t{r0} * n_sums, m.n_in, m.n_out,
                                     std::min(kernels::kMaxMatvecVectors, pass.n_decode - r0), stream);
    }
    // Whether every product of a layer's attention (ffn) norm is repacked: then the residual epilogue before
    // it may quantize their decode rows (mm_residual's next_q8).
    static bool attn_inputs_q8(const LayerWeights& w) {
        return w.wqkv.n_out > 0 ? w.wqkv.q8.data != nullptr : w.wq.q8.data && w.wk.q8.data && w.wv.q8.data;
    }
    static bool ffn_inputs_q8(const LayerWeights& w) {
        return w.gate_up.n_out > 0 ? w.gate_up.q8.data != nullptr : w.gate.q8.data && w.up.q8.data;
    }
    // A layer's attention of q (rows q_stride apart) into att. The decode grid covers pass.attn_len positions
    // (fixed while sequences grow inside it); where o is repacked (o_q8) its input is quantized by the decode
    // attention itself when that writes its rows directly (one split).
    void attention(const Pass& pass, const float* q, int64_t q_stride, const kernels::KvLayer& kvl, bool o_q8) {
        const int qd = cfg.q_dim(), D = pass.n_decode;
        if (D > 0) {
            const bool quantized = kernels::decode_attention(
                q, q_stride, att, qd, D, cfg.n_head, step_dev + layout.decode_len(), pass.attn_len,
                step_dev + layout.decode_slot(), block_tables, table_stride, kvl, attn_ws, attn_counters, stream,
                o_q8 ? q8_x : nullptr, o_q8 ? q8_meta : nullptr);
            q8_x_holds = quantized ? static_cast<const void*>(att) : nullptr;
        }
        for (const Pass::Part& p : pass.parts)
            kernels::prefill_attention(q + p.row0 * q_stride, q_stride, att + static_cast<int64_t>(p.row0) * qd, qd,
                                       p.n, p.pos0, cfg.n_head,
                                       block_tables + static_cast<int64_t>(p.slot) * table_stride, kvl, stream);
    }
    // Prefill parts: W (n_out, n_in) @ X rows^T -> Y rows, X and Y indexed by pass row.
    void mm_parts(const Matrix& m, const float* X, float* Y, const Pass& pass) {
        for (const Pass::Part& p : pass.parts) {
            const float* x_rows = X + static_cast<int64_t>(p.row0) * m.n_in;
            float* y_rows = Y + static_cast<int64_t>(p.row0) * m.n_out;
            if (m.q8.data && p.n <= kMaxPartMatvecRows)
                q8_rows(m, x_rows, y_rows, p.n);
            else if (m.q8.data)
                q8_gemm(m, x_rows, y_rows, p.n);
            else if (p.n <= kMaxPartMatvecRows)
                kernels::matvec(m.type, m.data, x_rows, y_rows, m.n_in, m.n_out, p.n, stream);
            else
                kernels::gemm(*gemm, m.type, m.data, x_rows, y_rows, m.n_in, m.n_out, p.n, gemm_ws, gemm_ws_bytes,
                              stream);
        }
    }

    // Stages the block-table rows of `slot` that positions from .. to-1 reach first (the blocks a
    // plan added for them); `blocks` is the slot's table from the plan.
    void stage_blocks(int slot, std::span<const int32_t> blocks, int from, int to, int& n_updates) {
        constexpr int B = kernels::kKvBlockTokens;
        int32_t* up = host_ints() + layout.updates();
        for (int i = (from + B - 1) / B; i < (to + B - 1) / B; ++i) {
            up[1 + 2 * n_updates] = slot * table_stride + i;
            up[2 + 2 * n_updates] = blocks[static_cast<size_t>(i)];
            ++n_updates;
        }
    }

    // Stages row r of `pass` as a decode row: `token` at `pos` of the sequence in `slot`.
    void stage_decode_row(Pass& pass, int r, int32_t token, int pos, int slot) {
        int32_t* host = host_ints();
        host[layout.ids() + r] = token;
        host[layout.positions() + r] = pos;
        host[layout.token_slot() + r] = slot;
        host[layout.decode_slot() + r] = slot;
        host[layout.decode_len() + r] = pos + 1;
        pass.attn_len = std::max(pass.attn_len, attention_bound(pos + 1));
    }

    void upload_step(int n_updates) {
        host_ints()[layout.updates()] = n_updates;
        LOOM_CUDA_CHECK(cudaMemcpyAsync(step_dev, step_host.get(), workspace_buffers[index(Ws::step)].bytes(),
                                        cudaMemcpyHostToDevice, stream));
        kernels::update_block_tables(block_tables, step_dev + layout.updates(), layout.max_updates, stream);
    }

    // Decode attention's grid bound for rows up to max_len long: the next power of two from one
    // split up, so a graph captured for it serves the sequences' growth until the next doubling.
    int attention_bound(int max_len) const {
        int bound = kernels::kDecodeSplitTokens;
        while (bound < max_len) bound *= 2;
        return std::min(bound, n_ctx);
    }

    // The constructor's stages, in order, after collect_uploads (engine/cuda/cuda_weights.h).
    void plan_arenas(const Uploads& up, const BatchLimits& limits);
    void upload(const gguf::File& file, const Uploads& up);
    void bind_workspace();
    void fill_initial_buffers();
    WorkspaceShape workspace_shape() const;
    uint64_t largest_gemm_workspace() const;

    std::vector<BatchOutput> run_step(const StepPlan& plan);
    void run_logits(const StepPlan& plan);
    void run_pass(const Pass& pass, LayerObserver* observer);
    void enqueue_layers(const Pass& pass, LayerObserver* observer);
    void project(int first, int n);
    void observe(LayerObserver* observer, int layer, const Pass& pass, const float* rows);
};

// The largest GEMM workspace any matrix of the model needs at max_tokens rows, and at least the
// repack's staging, which it doubles as at load.
uint64_t CudaBackend::State::largest_gemm_workspace() const {
    uint64_t bytes = repack_staging_bytes;
    for (const LayerWeights& w : weights.layers)
        for (const Matrix* m : {&w.wqkv, &w.wq, &w.wk, &w.wv, &w.wo, &w.gate_up, &w.gate, &w.up, &w.down})
            if (m->n_out > 0) bytes = std::max(bytes, kernels::gemm_workspace_bytes(m->n_in, m->n_out, max_tokens));
    return bytes;
}

// What the workspace table's sizes depend on, the kernels' and the sampler's scratch included.
WorkspaceShape CudaBackend::State::workspace_shape() const {
    const int S = max_seqs;
    return {
        .max_tokens = max_tokens,
        .max_seqs = S,
        .decode_rows = decode_rows(),
        .logits_rows = logits_rows,
        .step_ints = layout.total(),
        .attn_ws_floats = kernels::decode_attention_workspace_floats(decode_rows(), cfg.n_head, cfg.head_dim, n_ctx),
        .gemm_bytes = largest_gemm_workspace(),
        .cublas_bytes = kernels::GemmContext::cublas_workspace_bytes(),
        .sampler_bytes = CudaSampler::device_bytes(cfg.n_vocab, S, S * n_ctx, S * kMaxLogitBiasEntries),
        .q8_width = q8_width};
}

// Stage 2: every arena sized from its buffer table (the weights' regions, the workspace table, the
// KV table), the KV cache last: with a budget it gets what weights and workspace leave (checked
// before any allocation); then the arenas reserved.
void CudaBackend::State::plan_arenas(const Uploads& up, const BatchLimits& limits) {
    const ModelConfig& c = cfg;
    const int M = max_tokens, S = max_seqs;
    table_stride = (n_ctx + kernels::kKvBlockTokens - 1) / kernels::kKvBlockTokens;
    layout = StepLayout{M, decode_rows(), M / kernels::kKvBlockTokens + 2 * S + 1};
    repack_staging_bytes = up.staging_bytes();
    for (const Repack& r : up.repacks) q8_width = std::max(q8_width, r.layout.n_in);
    workspace_buffers = workspace_table(c, workspace_shape());
    kernels::VramPlan plan;
    plan[Purpose::weights] = lay_out(up.regions, kAlign).reserved;
    plan[Purpose::workspace] = lay_out(workspace_buffers, kAlign).reserved;
    const KvCost per_block = kv_cost({c.n_layer, 1, c.n_head_kv, c.head_dim, kv_type}, S, table_stride, kAlign);
    kv_blocks = kv_blocks_within({plan[Purpose::weights], 0, plan[Purpose::workspace]}, per_block,
                                 {limits.kv_tokens, S, n_ctx}, limits.vram_budget);
    kv_layout = {c.n_layer, kv_blocks, c.n_head_kv, c.head_dim, kv_type};
    kv_buffers = kv_table(kv_layout, S, table_stride);
    plan[Purpose::kv_cache] = lay_out(kv_buffers, kAlign).reserved;
    check_memory_budget({plan[Purpose::weights], plan[Purpose::kv_cache], plan[Purpose::workspace]},
                        limits.vram_budget);
    vram = std::make_unique<kernels::VramAllocator>(device, plan);  // verifies residency
    LOOM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
}

// Stage 4: the weights, file pages -> pinned staging -> VRAM, one chunk at a time (repacked
// matrices through the gemm workspace and kernels::q8_repack_device).
void CudaBackend::State::upload(const gguf::File& file, const Uploads& up) {
    const ModelConfig& c = cfg;
    const std::string where = "GPU " + std::to_string(device) + " (" + device_name + ")";
    upload_seconds = upload_weights(file, up, *vram, stream, gemm_ws, gemm_ws_bytes,
                                    [&](uint64_t done, uint64_t total, double seconds) {
                                        upload_bytes = done;
                                        if (on_load_step)
                                            on_load_step({.kind = LoadStep::Kind::weights,
                                                          .what = where,
                                                          .bytes = done,
                                                          .total = total,
                                                          .seconds = seconds});
                                    });
    if (c.tied_embeddings) weights.output = Matrix{weights.embd_type, weights.token_embd, c.n_embd, c.n_vocab, {}};
    if (!kernels::matvec_supports(weights.output.type))
        throw ModelError("cuda backend: no matvec kernel for the tied output projection (type " +
                         std::string(gguf::tensor_type_name(weights.output.type)) + ")");
}

// Stage 3: the KV cache, block tables and every workspace buffer bound inside their arenas, in
// their tables' order, then the buffers that start with values filled.
void CudaBackend::State::bind_workspace() {
    const ModelConfig& c = cfg;
    const auto kv_spec = [&](Kv b) -> const BufferSpec& { return kv_buffers[static_cast<size_t>(b)]; };
    kv = vram->allocate(Purpose::kv_cache, kv_spec(Kv::cache).extent());
    block_tables = static_cast<int32_t*>(vram->allocate(Purpose::kv_cache, kv_spec(Kv::block_tables).extent()));
    std::array<void*, kWorkspaceBuffers> at{};
    for (size_t i = 0; i < kWorkspaceBuffers; ++i)
        at[i] = vram->allocate(Purpose::workspace, workspace_buffers[i].extent());
    // The plan placed the table as the allocator does; a difference would make the plan's bytes wrong.
    const uint64_t placed = vram->usage(Purpose::workspace).used, planned = lay_out(workspace_buffers, kAlign).used;
    if (placed != planned)
        throw kernels::VramError("cuda backend: the workspace arena holds " + std::to_string(placed) +
                                 " bytes of buffers, its plan " + std::to_string(planned));
    step_dev = static_cast<int32_t*>(at[index(Ws::step)]);
    const std::pair<float * State::*, Ws> floats[] = {{&State::inv_freq, Ws::inv_freq},
                                                      {&State::x, Ws::x},
                                                      {&State::h, Ws::h},
                                                      {&State::o, Ws::o},
                                                      {&State::hg, Ws::hg},
                                                      {&State::qkv, Ws::qkv},
                                                      {&State::att, Ws::att},
                                                      {&State::gate_up, Ws::gate_up},
                                                      {&State::act, Ws::act},
                                                      {&State::logits, Ws::logits},
                                                      {&State::attn_ws, Ws::attn_ws},
                                                      {&State::xw, Ws::xw},
                                                      {&State::norm_sums, Ws::norm_sums}};
    for (const auto& [member, b] : floats) this->*member = static_cast<float*>(at[index(b)]);
    attn_counters = static_cast<unsigned*>(at[index(Ws::attn_counters)]);
    q8_x = static_cast<int8_t*>(at[index(Ws::q8_x)]);
    q8_meta = static_cast<kernels::q8::XMeta*>(at[index(Ws::q8_meta)]);
    gemm_ws = at[index(Ws::gemm)];
    gemm_ws_bytes = workspace_buffers[index(Ws::gemm)].bytes();
    gemm = std::make_unique<kernels::GemmContext>(at[index(Ws::cublas)], workspace_buffers[index(Ws::cublas)].bytes(),
                                                  stream);
    sampler =
        std::make_unique<CudaSampler>(at[index(Ws::sampler)], workspace_buffers[index(Ws::sampler)].bytes(), c.n_vocab,
                                      max_seqs, max_seqs * n_ctx, max_seqs * kMaxLogitBiasEntries, stream);
    fill_initial_buffers();
}

// The buffers that start with values: RoPE frequencies, zeroed block tables, split counters and step staging.
void CudaBackend::State::fill_initial_buffers() {
    const ModelConfig& c = cfg;
    const uint64_t step_bytes = workspace_buffers[index(Ws::step)].bytes();
    LOOM_CUDA_CHECK(cudaMemset(attn_counters, 0, workspace_buffers[index(Ws::attn_counters)].bytes()));
    const std::vector<float> freqs = cpu::rope_inv_freq(c.rope_dim, c.rope_base, c.rope_freq_divisors);
    LOOM_CUDA_CHECK(cudaMemcpy(inv_freq, freqs.data(), freqs.size() * sizeof(float), cudaMemcpyHostToDevice));
    LOOM_CUDA_CHECK(cudaMemset(block_tables, 0, kv_buffers[static_cast<size_t>(Kv::block_tables)].bytes()));
    step_host = alloc_pinned(step_bytes);
    std::memset(step_host.get(), 0, step_bytes);
    observed.resize(static_cast<size_t>(max_tokens) * c.n_embd);
    device_resident = vram->verify_residency().all_device_resident();
    if (!device_resident) throw kernels::VramError("cuda backend: an arena is not device-resident");
}

CudaBackend::CudaBackend(const gguf::File& file, int n_ctx, int device, const BatchLimits& limits, bool cuda_graphs,
                         bool kv_f32, bool batch_invariant, LoadCallback on_load_step)
    : s_(std::make_unique<State>(ModelConfig::from_gguf(file), n_ctx, limits)) {
    State& s = *s_;
    s.on_load_step = std::move(on_load_step);
    const ModelConfig& c = s.cfg;
    s.device = device;
    s.use_graphs = cuda_graphs;
    s.batch_invariant = batch_invariant;
    s.kv_type = kv_f32 ? kernels::KvType::f32 : kernels::KvType::f16;
    if (c.rope_dim != c.head_dim)
        throw ModelError("cuda backend: rope_dim " + std::to_string(c.rope_dim) + " != head_dim " +
                         std::to_string(c.head_dim) + " is not supported");
    check_cuda_attention_heads(file, c);  // before any device work: refused at load, not at warm-up
    LOOM_CUDA_CHECK(cudaSetDevice(device));
    cudaDeviceProp prop{};
    LOOM_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    s.device_name = prop.name;
    const Uploads uploads = collect_uploads(file, c, s.weights);
    s.plan_arenas(uploads, limits);
    s.bind_workspace();  // first: the gemm workspace stages the repacked matrices during the upload
    s.upload(file, uploads);
}

CudaBackend::~CudaBackend() = default;

std::string CudaBackend::device() const { return s_->device_name; }
const ModelConfig& CudaBackend::config() const { return s_->cfg; }
int CudaBackend::n_ctx() const { return s_->n_ctx; }
int CudaBackend::max_batch_tokens() const { return s_->max_tokens; }
KvCapacity CudaBackend::kv_capacity() const {
    return {s_->kv_blocks, kernels::kKvBlockTokens, s_->max_seqs, kernels::kv_type_name(s_->kv_type)};
}
bool CudaBackend::batch_invariant() const { return s_->batch_invariant; }
int CudaBackend::cuda_graphs_captured() const { return static_cast<int>(s_->decode_graphs.size()); }
uint64_t CudaBackend::upload_bytes() const { return s_->upload_bytes; }
double CudaBackend::upload_seconds() const { return s_->upload_seconds; }

std::vector<BatchOutput> CudaBackend::execute(const StepPlan& plan) {
    State& s = *s_;
    check_plan(plan, kv_capacity(), s.cfg.n_vocab, s.n_ctx, s.max_tokens);
    LOOM_CUDA_CHECK(cudaSetDevice(s.device));
    if (plan.logits.empty()) return s.run_step(plan);
    s.run_logits(plan);
    return std::vector<BatchOutput>(1);
}

void CudaBackend::State::observe(LayerObserver* observer, int layer, const Pass& pass, const float* rows) {
    LOOM_CUDA_CHECK(cudaMemcpyAsync(observed.data(), rows,
                                    static_cast<size_t>(pass.n_rows) * cfg.n_embd * sizeof(float),
                                    cudaMemcpyDeviceToHost, stream));
    LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
    const int pos0 = pass.parts.empty() ? host_ints()[layout.positions()] : pass.parts.front().pos0;
    observer->on_layer_output(layer, pos0, pass.n_rows, observed.data());
}

// Every launch of one pass, from the staged ids to the normed hidden states of the gathered rows
// in hg and, when the gathered rows fit the logits buffer, their logits. Launch shapes depend on
// the pass's row counts only, so a decode pass can be captured once per batch size.
void CudaBackend::State::enqueue_layers(const Pass& pass, LayerObserver* observer) {
    const ModelConfig& c = cfg;
    cudaStream_t st = stream;
    const int n = pass.n_rows, D = pass.n_decode;
    const int d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim(), hd = c.head_dim, ff = c.n_ff;
    const auto style = c.rope_mode == RopeMode::NeoX ? kernels::RopeStyle::NeoX : kernels::RopeStyle::Normal;
    const int32_t* ids = step_dev + layout.ids();
    const int32_t* pos = step_dev + layout.positions();
    const int32_t* slot = step_dev + layout.token_slot();
    q8_x_holds = nullptr;  // the previous pass's rows are not this one's

    kernels::embedding_lookup(weights.embd_type, weights.token_embd, c.n_vocab, d, ids, n, x, st);
    // Decode rows (0 .. D-1) carry their norms inside the products (xw, norm_sums); prefill rows
    // (D .. n-1) are normed into h by kernels of their own, the residual add fused into the norm.
    const int P = n - D;
    float* x_p = x + int64_t{D} * d;
    float* h_p = h + int64_t{D} * d;
    const float* o_p = o + int64_t{D} * d;
    const std::vector<LayerWeights>& layers = weights.layers;
    const float* output_norm = weights.output_norm;
    if (D > 0) kernels::norm_inputs(x, layers[0].attn_norm, xw, norm_sums, D, d, st);
    if (P > 0) kernels::rmsnorm(x_p, layers[0].attn_norm, h_p, P, d, c.rms_eps, st);
    for (int l = 0; l < c.n_layer; ++l) {
        const LayerWeights& w = layers[l];
        const bool last = l + 1 == c.n_layer;
        const float* next_norm = last ? output_norm : layers[l + 1].attn_norm;
        const kernels::KvLayer kvl = kernels::kv_layer(kv, kv_layout, l);
        // Q, K, V: one row of the fused product (stride F), or three separate blocks.
        const bool fused_qkv = w.wqkv.n_out > 0;
        const int64_t F = qd + 2 * kvd;
        float* q = qkv;
        float* k = fused_qkv ? qkv + qd : qkv + int64_t{max_tokens} * qd;
        float* v = fused_qkv ? qkv + qd + kvd : k + int64_t{max_tokens} * kvd;
        const int64_t q_stride = fused_qkv ? F : qd, kv_stride = fused_qkv ? F : kvd;
        // A product of the normed hidden states: decode rows fused, prefill rows from h.
        const auto normed_product = [&](const Matrix& m, const float* norm, float* y) {
            mm_normed(m, norm, y, pass);
            mm_parts(m, h, y, pass);
        };
        if (fused_qkv) {
            normed_product(w.wqkv, w.attn_norm, qkv);
            if (c.qkv_bias) kernels::add_bias(qkv, w.bqkv, n, static_cast<int>(F), st);
        } else {
            normed_product(w.wq, w.attn_norm, q);
            normed_product(w.wk, w.attn_norm, k);
            normed_product(w.wv, w.attn_norm, v);
            if (c.qkv_bias) {
                kernels::add_bias(q, w.bq, n, qd, st);
                kernels::add_bias(k, w.bk, n, kvd, st);
                kernels::add_bias(v, w.bv, n, kvd, st);
            }
        }
        if (c.qk_norm) {  // per head: rows = tokens * heads (Q, K unfused, so rows are contiguous)
            kernels::rmsnorm(q, w.q_norm, q, n * c.n_head, hd, c.rms_eps, st);
            kernels::rmsnorm(k, w.k_norm, k, n * c.n_head_kv, hd, c.rms_eps, st);
        }
        kernels::rope_kv_cache_write(q, k, v, n, c.n_head, q_stride, kv_stride, kv_stride, pos, slot, inv_freq, style,
                                     block_tables, table_stride, kvl, st);
        attention(pass, q, q_stride, kvl, w.wo.q8.data != nullptr);
        mm_residual(w.wo, {ResidualInput::Kind::rows, att}, w.ffn_norm, ffn_inputs_q8(w), pass);
        mm_parts(w.wo, att, o, pass);
        if (P > 0) kernels::add_rmsnorm(x_p, o_p, w.ffn_norm, h_p, P, d, c.rms_eps, st);
        const ResidualInput down_in = down_input(w);
        if (w.gate_up.n_out > 0) {  // decode rows get SwiGLU inside the product, or inside down's quantization
            mm_normed_swiglu(w.gate_up, w.ffn_norm, act, pass, down_in);
            mm_parts(w.gate_up, h, gate_up, pass);
            if (P > 0) kernels::swiglu_pairs(gate_up + int64_t{D} * 2 * ff, P, ff, act + int64_t{D} * ff, st);
        } else {
            float* gate = gate_up;
            float* up = gate_up + int64_t{max_tokens} * ff;
            normed_product(w.gate, w.ffn_norm, gate);
            normed_product(w.up, w.ffn_norm, up);
            kernels::swiglu(gate, up, act, int64_t{n} * ff, st);
        }
        mm_residual(w.down, down_in, next_norm, !last && attn_inputs_q8(layers[l + 1]), pass);
        mm_parts(w.down, act, o, pass);
        if (P > 0 && !last) kernels::add_rmsnorm(x_p, o_p, next_norm, h_p, P, d, c.rms_eps, st);
        if (P > 0 && last) kernels::add(x_p, o_p, x_p, int64_t{P} * d, st);
        if (observer) observe(observer, l, pass, x);
    }
    if (observer) {  // every row's final norm, whatever rows the logits need
        kernels::rmsnorm(x, output_norm, h, n, d, c.rms_eps, st);
        observe(observer, c.n_layer, pass, h);
    }
    if (pass.n_gather == 0) return;
    kernels::gather_rows(x, d, step_dev + layout.gather(), pass.n_gather, hg, st);
    kernels::rmsnorm(hg, output_norm, hg, pass.n_gather, d, c.rms_eps, st);
    if (pass.project) project(0, pass.n_gather);
}

// logits (n, n_vocab) = output @ hg rows first .. first+n-1 (n <= logits_rows): a repacked output by the
// f32 family (reads the matrix once per 8 rows), else matvec (once per kMaxMatvecVectors rows); a GEMM
// would need the whole vocabulary matrix dequantized to fp16.
void CudaBackend::State::project(int first, int n) {
    if (weights.output.q8.data) {
        kernels::q8_product_f32(weights.output.q8, hg + static_cast<int64_t>(first) * cfg.n_embd, logits, n, stream);
        return;
    }
    for (int r0 = 0; r0 < n; r0 += kernels::kMaxMatvecVectors)
        kernels::matvec(weights.output.type, weights.output.data, hg + static_cast<int64_t>(first + r0) * cfg.n_embd,
                        logits + static_cast<int64_t>(r0) * cfg.n_vocab, cfg.n_embd, cfg.n_vocab,
                        std::min(kernels::kMaxMatvecVectors, n - r0), stream);
}

// Uploads the staged step and enqueues the pass: decode-only passes replay their batch size's
// CUDA graph (captured on first use); others launch eagerly.
void CudaBackend::State::run_pass(const Pass& pass, LayerObserver* observer) {
    const bool graphable = use_graphs && !observer && pass.decode_tokens_only() && pass.n_gather == pass.n_decode;
    if (!graphable) {
        enqueue_layers(pass, observer);
        return;
    }
    const int64_t key = (int64_t{pass.attn_len} * (max_seqs + 1) + pass.n_decode) * 2 + (pass.project ? 1 : 0);
    auto it = decode_graphs.find(key);
    if (it == decode_graphs.end()) {
        cudaGraph_t graph = nullptr;
        const auto capture_start = std::chrono::steady_clock::now();
        LOOM_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
        try {
            const kernels::ProgrammaticLaunchScope programmatic;  // decode's small kernels overlap their launches
            enqueue_layers(pass, nullptr);
        } catch (...) {
            cudaStreamEndCapture(stream, &graph);
            if (graph) cudaGraphDestroy(graph);
            throw;
        }
        LOOM_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
        cudaGraphExec_t exec = nullptr;
        const cudaError_t rc = cudaGraphInstantiate(&exec, graph, 0);
        cudaGraphDestroy(graph);
        LOOM_CUDA_CHECK(rc);
        it = decode_graphs.emplace(key, exec).first;
        if (on_load_step)
            on_load_step(
                {.kind = LoadStep::Kind::graph_capture,
                 .tokens = pass.n_decode,
                 .seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - capture_start).count()});
    }
    LOOM_CUDA_CHECK(cudaGraphLaunch(it->second, stream));
}

void CudaBackend::State::run_logits(const StepPlan& plan) {
    State& s = *this;
    const ModelConfig& c = s.cfg;
    const PlanEntry& e = plan.entries.front();
    const std::span<const int32_t> tokens = e.tokens;
    const int T = static_cast<int>(tokens.size()), slot = e.seq;
    const bool all_logits = plan.all_logits;
    LayerObserver* observer = plan.observer;
    int32_t* host = s.host_ints();
    for (int t0 = 0; t0 < T; t0 += s.max_tokens) {
        const int n = std::min(s.max_tokens, T - t0);
        int n_updates = 0;
        const int pos0 = e.pos0 + t0;
        s.stage_blocks(slot, e.blocks, pos0, pos0 + n, n_updates);
        // A single token is a decode row (decode attention, and a graph replay); longer runs are a
        // prefill part, or decode rows in batch-invariant mode. Every row is gathered when all_logits,
        // else the last row only.
        Pass pass;
        pass.n_rows = n;
        pass.project = false;
        if (n == 1 || s.batch_invariant) {
            for (int i = 0; i < n; ++i)
                s.stage_decode_row(pass, i, tokens[static_cast<size_t>(t0 + i)], pos0 + i, slot);
            pass.n_decode = n;
            pass.prefill_rows = n > 1;
        } else {
            for (int i = 0; i < n; ++i) {
                host[s.layout.ids() + i] = tokens[static_cast<size_t>(t0 + i)];
                host[s.layout.positions() + i] = pos0 + i;
                host[s.layout.token_slot() + i] = slot;
            }
            pass.parts.push_back({0, n, pos0, slot});
        }
        const bool last_chunk = t0 + n == T;
        pass.n_gather = all_logits ? n : (last_chunk ? 1 : 0);
        for (int i = 0; i < pass.n_gather; ++i) host[s.layout.gather() + i] = all_logits ? i : n - 1;
        s.upload_step(n_updates);
        s.run_pass(pass, observer);
        // The gathered rows' logits, logits_rows at a time.
        float* dst = plan.logits.data() + (all_logits ? static_cast<size_t>(t0) * c.n_vocab : 0);
        for (int r0 = 0; r0 < pass.n_gather; r0 += s.logits_rows) {
            const int rows = std::min(s.logits_rows, pass.n_gather - r0);
            s.project(r0, rows);
            LOOM_CUDA_CHECK(cudaMemcpyAsync(dst + static_cast<size_t>(r0) * c.n_vocab, s.logits,
                                            static_cast<size_t>(rows) * c.n_vocab * sizeof(float),
                                            cudaMemcpyDeviceToHost, s.stream));
            if (r0 + rows < pass.n_gather)
                LOOM_CUDA_CHECK(cudaStreamSynchronize(s.stream));  // the buffer is reused next
        }
        LOOM_CUDA_CHECK(cudaStreamSynchronize(s.stream));  // the staging buffer is rewritten next
    }
}

std::vector<BatchOutput> CudaBackend::State::run_step(const StepPlan& plan) {
    State& s = *this;
    const std::vector<PlanEntry>& batch = plan.entries;
    int32_t* host = s.host_ints();
    const StepLayout& L = s.layout;

    // Rows: decode entries (one token) first, in batch order, then the prefill entries.
    std::vector<int> row_of_last(batch.size());
    Pass pass;
    int n_updates = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
        const PlanEntry& e = batch[i];
        if (e.tokens.size() != 1) continue;
        const int r = pass.n_decode++;
        s.stage_blocks(e.seq, e.blocks, e.pos0, e.pos0 + 1, n_updates);
        s.stage_decode_row(pass, r, e.tokens[0], e.pos0, e.seq);
        row_of_last[i] = r;
    }
    pass.n_rows = pass.n_decode;
    for (size_t i = 0; i < batch.size(); ++i) {
        const PlanEntry& e = batch[i];
        if (e.tokens.size() == 1) continue;
        const int n = static_cast<int>(e.tokens.size()), row0 = pass.n_rows;
        const int pos0 = e.pos0;
        s.stage_blocks(e.seq, e.blocks, pos0, pos0 + n, n_updates);
        pass.n_rows += n;
        row_of_last[i] = row0 + n - 1;
        if (s.batch_invariant) {  // the prefill tokens as decode rows, after the decode entries'
            for (int t = 0; t < n; ++t)
                s.stage_decode_row(pass, row0 + t, e.tokens[static_cast<size_t>(t)], pos0 + t, e.seq);
            pass.n_decode += n;
            pass.prefill_rows = true;
            continue;
        }
        for (int t = 0; t < n; ++t) {
            host[L.ids() + row0 + t] = e.tokens[static_cast<size_t>(t)];
            host[L.positions() + row0 + t] = pos0 + t;
            host[L.token_slot() + row0 + t] = e.seq;
        }
        pass.parts.push_back({row0, n, pos0, e.seq});
    }

    // Logits rows: every decode row when the pass can replay a graph, else the sampled rows only.
    std::vector<SampleRequest> requests;
    std::vector<size_t> requested;  // batch index of each request
    const bool decode_only = pass.decode_tokens_only();
    if (decode_only) {
        pass.n_gather = pass.n_decode;
        for (int r = 0; r < pass.n_decode; ++r) host[L.gather() + r] = r;
    }
    for (size_t i = 0; i < batch.size(); ++i) {
        const PlanEntry& e = batch[i];
        if (!e.sampling) continue;
        int row = row_of_last[i];
        if (!decode_only) {
            host[L.gather() + pass.n_gather] = row;
            row = pass.n_gather++;
        }
        requests.push_back(SampleRequest{e.sampling, e.history, e.sample_step, e.top_logprobs, row});
        requested.push_back(i);
    }
    s.upload_step(n_updates);
    s.run_pass(pass, plan.observer);
    if (!requests.empty()) s.sampler->enqueue(s.logits, s.cfg.n_vocab, requests);
    LOOM_CUDA_CHECK(cudaStreamSynchronize(s.stream));

    std::vector<BatchOutput> out(batch.size());
    if (!requests.empty()) {
        const std::vector<SampleOutcome> results = s.sampler->results();
        for (size_t j = 0; j < results.size(); ++j) {
            BatchOutput& o = out[requested[j]];
            o.sampled = results[j].error.empty();
            o.token = results[j].token;
            o.error = results[j].error;
        }
    }
    return out;
}

MemoryReport CudaBackend::memory() const {
    const State& s = *s_;
    MemoryReport report;
    report.where = "device " + std::to_string(s.device) + " (" + s.device_name + ")";
    report.device_resident = s.device_resident;  // no CUDA call: memory() runs on any thread (a /health poll)
    for (const kernels::PurposeUsage& u : s.vram->usage())
        report.uses.push_back({kernels::purpose_name(u.purpose), u.capacity, u.used});
    return report;
}

}  // namespace loom::engine::cuda
