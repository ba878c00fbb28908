// Input checks shared by every backend's forward pass.
#include "engine/backend.h"

#include "engine/errors.h"

namespace loom::engine {

void check_forward_inputs(const ModelConfig& c, int n_ctx, int n_past, std::span<const int32_t> tokens,
                          size_t logits_size, bool all_logits) {
    const int T = static_cast<int>(tokens.size());
    if (T == 0) throw RequestError("forward: no tokens");
    if (n_past + T > n_ctx)
        throw RequestError("context full: " + std::to_string(n_past) + " positions used + " + std::to_string(T) +
                           " new tokens > context " + std::to_string(n_ctx));
    for (int32_t id : tokens)
        if (id < 0 || id >= c.n_vocab)
            throw RequestError("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                               std::to_string(c.n_vocab - 1) + ")");
    const size_t need = static_cast<size_t>(all_logits ? T : 1) * c.n_vocab;
    if (logits_size < need)
        throw RequestError("forward: logits buffer holds " + std::to_string(logits_size) + " floats, needs " +
                           std::to_string(need));
}

}  // namespace loom::engine
