// Re-scoring generated tokens with the CPU reference backend.
#include "e2e/reference_scores.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "engine/cpu/cpu_backend.h"
#include "engine/kv_manager.h"
#include "gguf/reader.h"

namespace loom::test {

std::vector<double> reference_logprobs(const gguf::File& model, std::span<const int32_t> prompt,
                                       std::span<const int32_t> generated, double temperature) {
    if (prompt.empty() || generated.empty() || !(temperature > 0))
        throw std::invalid_argument("reference_logprobs: needs a prompt, generated tokens and temperature > 0");
    std::vector<int32_t> input(prompt.begin(), prompt.end());
    input.insert(input.end(), generated.begin(), generated.end() - 1);
    const int T = static_cast<int>(input.size());
    engine::cpu::CpuBackend cpu(model, T + 1, 0);
    const int V = cpu.config().n_vocab;
    std::vector<float> logits(static_cast<size_t>(T) * V);
    engine::KvManager(cpu).forward(input, logits, /*all_logits=*/true);

    std::vector<double> out;
    for (size_t i = 0; i < generated.size(); ++i) {
        const float* row = logits.data() + (prompt.size() - 1 + i) * static_cast<size_t>(V);
        double max_z = -INFINITY;
        for (int j = 0; j < V; ++j) max_z = std::max(max_z, row[j] / temperature);
        double sum = 0;
        for (int j = 0; j < V; ++j) sum += std::exp(row[j] / temperature - max_z);
        out.push_back(row[generated[i]] / temperature - max_z - std::log(sum));
    }
    return out;
}

}  // namespace loom::test
