// Layer dump files: appended per forward pass, so prefill and decode steps land in one sequence.
#include "engine/layer_dump.h"

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace loom::engine {

namespace {
std::string file_name(int layer) {
    char name[32];
    std::snprintf(name, sizeof name, "layer_%02d.f32", layer);
    return name;
}
}  // namespace

LayerDumpWriter::LayerDumpWriter(const std::filesystem::path& dir, const ModelConfig& config)
    : dir_(dir), n_layer_(config.n_layer), n_embd_(config.n_embd), positions_(config.n_layer + 1, 0) {
    std::filesystem::create_directories(dir_);
    for (int l = 0; l <= n_layer_; ++l) {
        const auto path = dir_ / file_name(l);
        std::FILE* f = std::fopen(path.c_str(), "wb");
        if (!f) {
            for (std::FILE* open : files_) std::fclose(open);
            throw std::runtime_error("cannot create " + path.string());
        }
        files_.push_back(f);
    }
}

LayerDumpWriter::~LayerDumpWriter() {
    for (std::FILE* f : files_) std::fclose(f);
}

void LayerDumpWriter::on_layer_output(int layer, int pos0, int T, const float* hidden) {
    if (pos0 != positions_[layer])
        throw std::runtime_error("layer dump: positions must arrive in order (layer " + std::to_string(layer) +
                                 " has " + std::to_string(positions_[layer]) + ", got " + std::to_string(pos0) + ")");
    const size_t n = static_cast<size_t>(T) * n_embd_;
    if (std::fwrite(hidden, sizeof(float), n, files_[layer]) != n)
        throw std::runtime_error("layer dump: cannot write " + (dir_ / file_name(layer)).string());
    positions_[layer] += T;
}

void LayerDumpWriter::finish(const std::string& model, const std::string& backend, const std::string& device) {
    for (std::FILE* f : files_)
        if (std::fflush(f) != 0) throw std::runtime_error("layer dump: cannot flush files in " + dir_.string());
    nlohmann::json files = nlohmann::json::array();
    for (int l = 0; l <= n_layer_; ++l)
        files.push_back({{"layer", l},
                         {"file", file_name(l)},
                         {"what", l < n_layer_ ? "output of block " + std::to_string(l) : "final RMSNorm output"},
                         {"positions", positions_[l]}});
    const nlohmann::json index = {{"model", model},    {"backend", backend},
                                  {"device", device},  {"n_layer", n_layer_},
                                  {"n_embd", n_embd_}, {"n_positions", positions_[0]},
                                  {"dtype", "f32"},    {"layout", "row-major (n_positions, n_embd), little-endian"},
                                  {"files", files}};
    std::ofstream out(dir_ / "index.json");
    out << index.dump(2) << "\n";
    if (!out) throw std::runtime_error("layer dump: cannot write " + (dir_ / "index.json").string());
}

}  // namespace loom::engine
