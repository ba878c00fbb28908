// Teacher-forced re-scoring with the CPU reference backend: the log-probability the model gives each
// generated token after the prompt and the tokens before it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace loom::gguf {
class File;
}

namespace loom::test {

// prompt + generated[0 .. n-2] on the CPU backend, all logits kept. Entry i is log softmax(logits /
// temperature)[generated[i]] at the position before generated[i], in double (the distribution the
// worker reports its logprobs from: after temperature, before top-k/top-p). temperature > 0.
// q8_activations: the CPU backend emulates the CUDA backend's int8 activations (cpu_q8_emulation),
// and the path is the worker's: the prompt as one prefill, then each generated token as a decode
// step (which rows are quantized depends on it). Otherwise one forward pass (the plain CPU backend
// gives the same values however the positions are split).
std::vector<double> reference_logprobs(const gguf::File& model, std::span<const int32_t> prompt,
                                       std::span<const int32_t> generated, double temperature, bool q8_activations);

}  // namespace loom::test
