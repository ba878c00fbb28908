// The one place that knows which backends this build holds: builds the named one with the model
// resident. The CLI, the worker, tests and benches all construct backends through it.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/backend.h"
#include "engine/load_step.h"
#include "gguf/reader.h"

namespace loom::engine {

struct BackendOptions {
    int n_ctx = 0;            // positions per sequence; <= 0: the model's training context
    BatchLimits limits = {};  // sequences, KV positions, tokens per step, VRAM budget (cuda)
    int threads = 0;          // cpu: matrix-product threads; <= 0: one per hardware thread
    int device = 0;           // cuda: the device index
    bool cuda_graphs = true;  // cuda: replay decode-only steps from CUDA graphs
    // Told each load step as it happens (engine/load_step.h); cuda keeps it for its graph captures,
    // so what it captures must outlive the backend.
    LoadCallback on_load_step{};
};

// "cpu", then "cuda" when this build has the CUDA backend.
std::vector<std::string> built_backends();
bool backend_built(std::string_view kind);

// RequestError("backend") for a kind this build lacks; DeviceError when the device cannot run or
// hold the model; ModelError for a model no kernel handles; MemoryBudgetError for a budget too small.
std::unique_ptr<Backend> make_backend(std::string_view kind, const gguf::File& file, const BackendOptions& options = {});

}  // namespace loom::engine
