// --dump-layers: every layer's output hidden state for every position, as raw f32 files plus an
// index, so another backend can be compared with the CPU reference layer by layer.
#pragma once

#include <cstdio>
#include <filesystem>
#include <vector>

#include "engine/backend.h"

namespace loom::engine {

// Files in `dir`: layer_NN.f32 for blocks 0 .. n_layer-1 and the final RMSNorm (NN = n_layer), each
// (n_positions, n_embd) little-endian f32 rows in position order; index.json describes them.
class LayerDumpWriter : public LayerObserver {
public:
    LayerDumpWriter(const std::filesystem::path& dir, const ModelConfig& config);  // creates dir
    ~LayerDumpWriter() override;
    void on_layer_output(int layer, int pos0, int T, const float* hidden) override;
    // Writes index.json (call after the last forward pass). Throws std::runtime_error on I/O errors.
    void finish(const std::string& model, const std::string& backend, const std::string& device);

private:
    std::filesystem::path dir_;
    int n_layer_, n_embd_;
    std::vector<std::FILE*> files_;
    std::vector<int> positions_;  // rows written per file
};

}  // namespace loom::engine
