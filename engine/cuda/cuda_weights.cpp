// The CUDA backend's weights: collecting the tensors to upload into arena regions, and the upload.
#include "engine/cuda/cuda_weights.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>

#include "engine/cuda/pinned_buffer.h"
#include "engine/errors.h"
#include "engine/q8_policy.h"
#include "kernels/cuda_check.h"
#include "kernels/embedding.h"
#include "kernels/matvec.h"
#include "kernels/q8_matmul.h"

namespace loom::engine::cuda {

namespace {

constexpr uint64_t kStagingBytes = uint64_t{32} << 20;  // pinned upload buffer

// Builds an Uploads: each tensor with the pointer it fills and the region it lands in.
class Collector {
public:
    Collector(const gguf::File& file, Uploads& out) : file_(file), out_(out) {}

    // A norm weight or bias: F32 as in the file, other types dequantized on the host.
    void vector(const std::string& name, const float** dst) {
        const gguf::TensorInfo* t = tensor(name);
        Upload u{t, {}, [dst](const void* p) { *dst = static_cast<const float*>(p); }};
        if (t->type != gguf::TensorType::F32) u.f32 = file_.dequantize_tensor(*t);
        own_region(std::move(u), name);
    }

    // A layer matrix, kept q8-repacked when q8_eligible.
    void matrix(const std::string& name, Matrix& m) {
        Upload u = matrix_upload(name, m);
        const bool repack = q8_eligible(m.type, m.n_in);
        if (repack) u.place = {};
        own_region(std::move(u), name);
        if (repack) mark_repacked(m);
    }

    // The logits' output projection: repacked for the f32-activation product (kernels::q8_product_f32) where
    // its type and width allow, a slice of rows at a time; else in its file format for kernels::matvec.
    void output(Matrix& m) {
        Upload u = matrix_upload("output.weight", m);
        const bool repack = kernels::q8_f32_supports(m.type) && q8_eligible(m.type, m.n_in);
        if (repack) u.place = {};
        own_region(std::move(u), "output.weight");
        if (repack) mark_repacked(m, /*by_rows=*/true);
    }

    // Stacks the named matrices into `fused` when they share one type (rows of a GGUF matrix are
    // independent, so stacking their bytes stacks the rows); else uploads each into its own.
    // pairs: gate and up (two parts of equal shape, an even number of rows) in the pair layout.
    void fused(Matrix& fused, std::initializer_list<std::pair<std::string, Matrix*>> parts, bool pairs = false) {
        if (!fusable(parts, pairs)) {
            for (const auto& [name, m] : parts) matrix(name, *m);
            return;
        }
        const gguf::TensorInfo* first_part = tensor(parts.begin()->first);
        const int region = static_cast<int>(out_.regions.size());
        out_.regions.push_back({parts.begin()->first + " (fused)", Elem::byte, 0});
        BufferSpec& spec = out_.regions.back();
        const uint64_t row_bytes = first_part->n_bytes / first_part->n_rows();
        bool first = true;
        for (const auto& [name, m] : parts) {
            // checks the type; sets type and n_in; the first part's address is fused.data
            Upload u = matrix_upload(name, fused);
            if (!first) u.place = {};
            u.region = region;
            u.region_offset = pairs ? (first ? 0 : kernels::kSwigluPairRows * row_bytes) : spec.bytes();
            if (pairs) u.pair_pitch = 2 * kernels::kSwigluPairRows * row_bytes;
            spec.count += static_cast<int64_t>(u.bytes());
            out_.list.push_back(std::move(u));
            first = false;
        }
        fused.n_out = 0;
        for (const auto& [name, m] : parts) fused.n_out += static_cast<int>(tensor(name)->n_rows());
        if (q8_eligible(fused.type, fused.n_in)) {
            for (size_t i = out_.list.size() - parts.size(); i < out_.list.size(); ++i) out_.list[i].place = {};
            mark_repacked(fused);
        }
    }

    // One upload of the concatenated f32 values of `parts` (a fused bias).
    void concatenated(std::initializer_list<std::string> parts, const float** dst) {
        Upload u{tensor(*parts.begin()), {}, [dst](const void* p) { *dst = static_cast<const float*>(p); }};
        for (const std::string& part : parts) {
            const std::vector<float> b = file_.dequantize_tensor(*tensor(part));
            u.f32.insert(u.f32.end(), b.begin(), b.end());
        }
        own_region(std::move(u), *parts.begin() + " (fused)");
    }

    void embedding(ModelWeights& w) {
        const gguf::TensorInfo* embd = tensor("token_embd.weight");
        if (!kernels::embedding_supports(embd->type))
            throw ModelError("cuda backend: no embedding kernel for token_embd.weight (type " +
                             std::string(gguf::tensor_type_name(embd->type)) + ")");
        w.embd_type = embd->type;
        own_region(Upload{embd, {}, [&w](const void* p) { w.token_embd = p; }}, embd->name);
    }

private:
    const gguf::TensorInfo* tensor(const std::string& name) const { return file_.find_tensor(name); }

    Upload matrix_upload(const std::string& name, Matrix& m) const {
        const gguf::TensorInfo* t = tensor(name);
        if (!kernels::matvec_supports(t->type))
            throw ModelError("cuda backend: no matvec kernel for " + name + " (type " +
                             std::string(gguf::tensor_type_name(t->type)) + ")");
        m.type = t->type;
        m.n_in = static_cast<int>(t->row_length());
        m.n_out = static_cast<int>(t->n_rows());
        return Upload{t, {}, [&m](const void* p) { m.data = p; }};
    }

    bool fusable(std::initializer_list<std::pair<std::string, Matrix*>> parts, bool pairs) const {
        const gguf::TensorInfo* first_part = tensor(parts.begin()->first);
        bool ok = true;
        for (const auto& [name, m] : parts) {
            const gguf::TensorInfo* t = tensor(name);
            ok = ok && t->type == first_part->type &&
                 (!pairs || (t->n_bytes == first_part->n_bytes && t->n_rows() == first_part->n_rows() &&
                             t->n_rows() % kernels::kSwigluPairRows == 0));
        }
        return ok;
    }

    // The last region holds `m` repacked: sized for the q8 layout, its uploads staged (upload_weights).
    void mark_repacked(Matrix& m, bool by_rows = false) {
        const int region = static_cast<int>(out_.regions.size()) - 1;
        const kernels::Q8Layout layout = kernels::q8_layout(m.type, m.n_out, m.n_in);
        out_.regions.back().count = static_cast<int64_t>(layout.bytes);
        out_.repacks.push_back({region, layout, &m, by_rows});
    }

    void own_region(Upload u, const std::string& name) {
        u.region = static_cast<int>(out_.regions.size());
        out_.regions.push_back({name, Elem::byte, static_cast<int64_t>(u.bytes())});
        out_.list.push_back(std::move(u));
    }

    const gguf::File& file_;
    Uploads& out_;
};

void collect_layer(Collector& col, const ModelConfig& c, int l, LayerWeights& w) {
    col.vector(layer_tensor(l, "attn_norm.weight"), &w.attn_norm);
    col.vector(layer_tensor(l, "ffn_norm.weight"), &w.ffn_norm);
    const std::string q = layer_tensor(l, "attn_q.weight"), k = layer_tensor(l, "attn_k.weight"),
                      v = layer_tensor(l, "attn_v.weight");
    if (c.qk_norm) {
        col.matrix(q, w.wq);
        col.matrix(k, w.wk);
        col.matrix(v, w.wv);
    } else {
        col.fused(w.wqkv, {{q, &w.wq}, {k, &w.wk}, {v, &w.wv}});
    }
    col.matrix(layer_tensor(l, "attn_output.weight"), w.wo);
    col.fused(w.gate_up, {{layer_tensor(l, "ffn_gate.weight"), &w.gate}, {layer_tensor(l, "ffn_up.weight"), &w.up}},
              true);
    col.matrix(layer_tensor(l, "ffn_down.weight"), w.down);
    if (c.qkv_bias && w.wqkv.n_out > 0) {  // one bias over the fused rows: [bq; bk; bv]
        col.concatenated(
            {layer_tensor(l, "attn_q.bias"), layer_tensor(l, "attn_k.bias"), layer_tensor(l, "attn_v.bias")}, &w.bqkv);
    }
    std::vector<std::pair<const char*, const float**>> vectors;  // the optional ones, in upload order
    if (c.qkv_bias && w.wqkv.n_out == 0)
        vectors = {{"attn_q.bias", &w.bq}, {"attn_k.bias", &w.bk}, {"attn_v.bias", &w.bv}};
    if (c.qk_norm)
        vectors.insert(vectors.end(), {{"attn_q_norm.weight", &w.q_norm}, {"attn_k_norm.weight", &w.k_norm}});
    for (const auto& [suffix, dst] : vectors) col.vector(layer_tensor(l, suffix), dst);
}

// Copies `bytes` from src to dst through `staging`, a chunk at a time: row pairs land pair_pitch apart
// (one strided copy per chunk of whole pairs), else contiguously.
void copy_through(const uint8_t* src, uint64_t bytes, uint64_t pair_pitch, uint8_t* dst, void* staging,
                  uint64_t staging_bytes, kernels::Stream stream) {
    const uint64_t pair_bytes = pair_pitch / 2;
    const uint64_t chunk = pair_pitch > 0 ? staging_bytes / pair_bytes * pair_bytes : staging_bytes;
    for (uint64_t off = 0; off < bytes; off += chunk) {
        const uint64_t n = std::min(chunk, bytes - off);
        std::memcpy(staging, src + off, n);
        if (pair_pitch > 0)
            LOOM_CUDA_CHECK(cudaMemcpy2DAsync(dst + off / pair_bytes * pair_pitch, pair_pitch, staging, pair_bytes,
                                              pair_bytes, n / pair_bytes, cudaMemcpyHostToDevice, stream));
        else
            LOOM_CUDA_CHECK(cudaMemcpyAsync(dst + off, staging, n, cudaMemcpyHostToDevice, stream));
        LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));  // the staging buffer is reused next
    }
}

// A by-rows repack: slices of as many rows as the device staging holds, each staged, then repacked into
// its rows of the region.
void repack_by_rows(const Repack& r, const uint8_t* src, uint8_t* region, void* device_staging,
                    uint64_t device_staging_bytes, void* staging, uint64_t staging_bytes, kernels::Stream stream) {
    const kernels::Q8Layout& l = r.layout;
    const uint64_t row_bytes = gguf::tensor_bytes(l.type, static_cast<uint64_t>(l.n_in));
    const int slice = static_cast<int>(std::min<uint64_t>(device_staging_bytes / row_bytes, l.rows));
    if (slice < 1) throw std::invalid_argument("upload_weights: the device staging holds no row of a repacked matrix");
    for (int r0 = 0; r0 < l.rows; r0 += slice) {
        const int n = std::min(slice, l.rows - r0);
        copy_through(src + r0 * row_bytes, n * row_bytes, 0, static_cast<uint8_t*>(device_staging), staging,
                     staging_bytes, stream);
        kernels::q8_repack_device_rows(l.type, device_staging, r0, n, l.rows, l.n_in, region, stream);
        LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));  // the staging is reused by the next slice
    }
}

}  // namespace

Uploads collect_uploads(const gguf::File& file, const ModelConfig& c, ModelWeights& w) {
    Uploads out;
    Collector col(file, out);
    col.embedding(w);
    col.vector("output_norm.weight", &w.output_norm);
    if (!c.tied_embeddings) col.output(w.output);
    w.layers.resize(c.n_layer);
    for (int l = 0; l < c.n_layer; ++l) collect_layer(col, c, l, w.layers[l]);
    return out;
}

uint64_t Uploads::staging_bytes() const {
    uint64_t most = 0;
    for (const Repack& r : repacks) {
        if (r.by_rows) {  // slices of up to 256 rows: a few MiB at most
            const uint64_t row = gguf::tensor_bytes(r.layout.type, static_cast<uint64_t>(r.layout.n_in));
            most = std::max(most, row * static_cast<uint64_t>(std::min(r.layout.rows, 256)));
            continue;
        }
        uint64_t bytes = 0;
        for (const Upload& u : list)
            if (u.region == r.region) bytes += u.bytes();
        most = std::max(most, bytes);
    }
    return most;
}

double upload_weights(const gguf::File& file, const Uploads& up, kernels::VramAllocator& vram, kernels::Stream stream,
                      void* device_staging, uint64_t device_staging_bytes, const UploadProgress& progress) {
    if (device_staging_bytes < up.staging_bytes())
        throw std::invalid_argument("upload_weights: the repacked matrices need " + std::to_string(up.staging_bytes()) +
                                    " bytes of device staging, not " + std::to_string(device_staging_bytes));
    const uint64_t biggest = std::max_element(up.list.begin(), up.list.end(), [](const Upload& a, const Upload& b) {
                                 return a.bytes() < b.bytes();
                             })->bytes();
    const uint64_t staging_bytes = std::min(kStagingBytes, biggest);
    PinnedPtr staging = alloc_pinned(staging_bytes);
    const auto start = std::chrono::steady_clock::now();
    const auto seconds = [&] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    std::vector<uint8_t*> base;
    for (const BufferSpec& r : up.regions)
        base.push_back(static_cast<uint8_t*>(vram.allocate(kernels::Purpose::weights, r.extent())));
    uint64_t total = 0, done = 0;
    for (const Upload& u : up.list) total += u.bytes();
    std::vector<const Repack*> repack_of(up.regions.size(), nullptr);
    for (const Repack& r : up.repacks) repack_of[static_cast<size_t>(r.region)] = &r;
    for (size_t i = 0; i < up.list.size(); ++i) {
        const Upload& u = up.list[i];
        done += u.bytes();
        uint8_t* region = base[static_cast<size_t>(u.region)];
        const Repack* repack = repack_of[static_cast<size_t>(u.region)];
        const uint8_t* src = u.src() ? u.src() : file.tensor_data(*u.info).data();
        if (repack && repack->by_rows) {  // one upload per by-rows region
            repack_by_rows(*repack, src, region, device_staging, device_staging_bytes, staging.get(), staging_bytes,
                           stream);
            repack->matrix->q8 = {repack->layout, region};
            if (progress) progress(done, total, seconds());
            continue;
        }
        uint8_t* dst = (repack ? static_cast<uint8_t*>(device_staging) : region) + u.region_offset;
        copy_through(src, u.bytes(), u.pair_pitch, dst, staging.get(), staging_bytes, stream);
        if (u.place) u.place(dst);
        if (repack && (i + 1 == up.list.size() || up.list[i + 1].region != u.region)) {
            kernels::q8_repack_device(repack->layout.type, device_staging, repack->layout.rows, repack->layout.n_in,
                                      region, stream);
            LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));  // the staging is reused by the next region
            repack->matrix->q8 = {repack->layout, region};
        }
        if (progress) progress(done, total, seconds());
    }
    return seconds();
}

}  // namespace loom::engine::cuda
