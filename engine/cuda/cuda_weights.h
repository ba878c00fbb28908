// The CUDA backend's weights: the tensors a model uploads (fused where their types agree), the
// weights arena's regions they fill, and the upload file -> pinned staging -> VRAM.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/cuda/buffer_table.h"
#include "engine/model_config.h"
#include "gguf/reader.h"
#include "kernels/q8_matmul.h"
#include "kernels/stream.h"
#include "kernels/vram.h"

namespace loom::engine::cuda {

// A matrix (n_out, n_in): in its file format at `data` (rows tensor_bytes(type, n_in) apart), or, for
// the q8 family's types and widths (engine/q8_policy.h), only repacked at q8.data (data then null).
struct Matrix {
    gguf::TensorType type = gguf::TensorType::F32;
    const void* data = nullptr;
    int n_in = 0, n_out = 0;
    kernels::Q8Matrix q8;
};

// A layer's weights. Matrices that share a type are fused at load: [wq; wk; wv] stacked into wqkv
// (not with Q/K norms, which need each head's rows contiguous), gate and up into gate_up in the pair
// layout of kernels/matvec.h (decode applies SwiGLU inside the product), so a decode step launches
// one product where it would launch three or two. Unfused parts keep their own matrices (fused ones
// then have n_out 0).
struct LayerWeights {
    const float *attn_norm = nullptr, *ffn_norm = nullptr, *q_norm = nullptr, *k_norm = nullptr;
    const float *bq = nullptr, *bk = nullptr, *bv = nullptr, *bqkv = nullptr;
    Matrix wqkv, wq, wk, wv, wo, gate_up, gate, up, down;
};

// Where the forward pass finds every weight in VRAM.
struct ModelWeights {
    gguf::TensorType embd_type = gguf::TensorType::F32;
    const void* token_embd = nullptr;
    const float* output_norm = nullptr;
    Matrix output;
    std::vector<LayerWeights> layers;
};

// One tensor to upload: raw file bytes (matrices, F32 vectors) or a host f32 copy (other vectors).
struct Upload {
    const gguf::TensorInfo* info = nullptr;
    std::vector<float> f32;                  // non-empty: upload this instead of the file bytes
    std::function<void(const void*)> place;  // stores the device address where the weight set wants it
    int region = 0;                          // the weights-arena region it lands in ...
    uint64_t region_offset = 0;              // ... this many bytes in ...
    uint64_t pair_pitch = 0;                 // ... or, when > 0, its row pairs this many bytes apart (gate_up)
    uint64_t bytes() const { return f32.empty() ? info->n_bytes : f32.size() * sizeof(float); }
    const uint8_t* src() const { return f32.empty() ? nullptr : reinterpret_cast<const uint8_t*>(f32.data()); }
};

// A region that holds a q8-repacked matrix: its uploads land in file format in a device staging
// buffer, which is then repacked into the region (q8_layout(...).bytes) and `matrix` told where.
struct Repack {
    int region = 0;
    kernels::Q8Layout layout;
    Matrix* matrix = nullptr;
    bool by_rows =
        false;  // staged and repacked a slice of rows at a time (the output projection: larger than the staging)
};

// Every tensor to upload, and the weights arena's regions in allocation order: one per unfused
// tensor, one per fused matrix (its parts' bytes together). The plan sums the regions.
struct Uploads {
    std::vector<Upload> list;
    std::vector<BufferSpec> regions;
    std::vector<Repack> repacks;  // by region, increasing
    // The device staging the repacks need: the largest file-format region repacked whole, 256 rows of one by rows.
    uint64_t staging_bytes() const;
};

// Every tensor of the model's forward pass, each with the pointer of `w` it fills (`w` must outlive
// the upload); matrices stay in their file format. Throws ModelError for a type no kernel handles.
Uploads collect_uploads(const gguf::File& file, const ModelConfig& c, ModelWeights& w);

// Told after each tensor: bytes copied so far of `total`, seconds since the upload began.
using UploadProgress = std::function<void(uint64_t done, uint64_t total, double seconds)>;

// Allocates the regions from vram's weights arena, copies every tensor through a pinned staging
// buffer on `stream` and places it; repacked regions go through `device_staging` (at least
// up.staging_bytes() bytes, 256-byte aligned). Returns the seconds the copies took.
double upload_weights(const gguf::File& file, const Uploads& up, kernels::VramAllocator& vram, kernels::Stream stream,
                      void* device_staging, uint64_t device_staging_bytes, const UploadProgress& progress);

}  // namespace loom::engine::cuda
