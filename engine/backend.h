// The interface a generation loop drives: one sequence, a KV cache, logits out. Implemented by the
// CPU reference backend (and by the CUDA backend).
#pragma once

#include <span>
#include <string>

#include "engine/model_config.h"

namespace loom::engine {

// Receives each layer's output hidden state during a forward pass (for --dump-layers).
class LayerObserver {
public:
    virtual ~LayerObserver() = default;
    // hidden (T, n_embd) for positions pos0 .. pos0+T-1 after layer `layer` (n_layer = final norm).
    virtual void on_layer_output(int layer, int pos0, int T, const float* hidden) = 0;
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual std::string name() const = 0;    // "cpu" or "cuda"
    virtual std::string device() const = 0;  // what ran it, e.g. "NVIDIA H100 80GB HBM3" or "CPU, 2 threads"
    virtual const ModelConfig& config() const = 0;
    virtual int n_ctx() const = 0;   // positions the KV cache holds
    virtual int n_past() const = 0;  // positions filled so far
    virtual void reset() = 0;        // empties the KV cache

    // Runs tokens at positions n_past .. n_past+T-1 and appends their K/V. logits receives
    // (n_vocab) floats for the last token, or (T, n_vocab) when all_logits. Throws RequestError
    // when the tokens do not fit the context or an id is out of range.
    virtual void forward(std::span<const int32_t> tokens, std::span<float> logits, bool all_logits,
                         LayerObserver* observer = nullptr) = 0;
};

// The checks every Backend::forward makes before computing: tokens present, room in the context,
// ids inside the vocabulary, a logits buffer large enough. Throws RequestError naming what is wrong.
void check_forward_inputs(const ModelConfig& config, int n_ctx, int n_past, std::span<const int32_t> tokens,
                          size_t logits_size, bool all_logits);

}  // namespace loom::engine
