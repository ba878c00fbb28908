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

// One forward pass of prompt + generated[0 .. n-2] on the CPU backend, all logits kept. Entry i is
// log softmax(logits / temperature)[generated[i]] at the position before generated[i], in double
// (the distribution the worker reports its logprobs from: after temperature, before top-k/top-p).
// temperature > 0.
std::vector<double> reference_logprobs(const gguf::File& model, std::span<const int32_t> prompt,
                                       std::span<const int32_t> generated, double temperature);

}  // namespace loom::test
