// Steps of loading a model onto a backend, reported as they happen through BackendOptions'
// on_load_step: the `loom` commands show them on a terminal, the worker logs them.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace loom::engine {

struct LoadStep {
    enum class Kind {
        parse,          // the model's description read from GGUF (what: architecture, layers, ...)
        weights,        // the weights made resident: `bytes` of `total` so far (done once bytes == total)
        kv_cache,       // the KV cache reserved: `bytes`, for `tokens` positions
        graph_capture,  // a decode batch size's CUDA graph captured (at its first use, after loading)
        ready,          // the backend is built; `seconds` since make_backend began
    };
    Kind kind = Kind::parse;
    std::string what{};  // parse: the summary; weights: where ("GPU 0 (NVIDIA H100 ...)", "host RAM")
    uint64_t bytes = 0;
    uint64_t total = 0;
    int64_t tokens = 0;  // kv_cache: positions; graph_capture: the decode batch size
    double seconds = 0;  // weights: since the upload began; graph_capture: the capture; ready: the load
};

using LoadCallback = std::function<void(const LoadStep&)>;

// One line for a person: "uploaded 1.2 GB to GPU 0 (…) in 0.41 s (2.9 GB/s)", "KV cache 64.0 MB for 4096 tokens".
std::string describe(const LoadStep& step);

}  // namespace loom::engine
