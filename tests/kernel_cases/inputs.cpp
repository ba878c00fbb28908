// Seeded random kernel inputs and random quantized matrices.
#include "kernel_cases/inputs.h"

#include <random>

#include "gguf/quantize.h"

namespace loom::kcases {

namespace {

template <class Dist>
std::vector<float> draw(size_t n, uint32_t seed, Dist dist) {
    std::mt19937 rng(seed);
    std::vector<float> v(n);
    for (auto& x : v) {
        x = dist(rng);
        if (x == 0.f) x = 1e-3f;  // a kernel that ignores an input must not pass by luck
    }
    return v;
}

}  // namespace

std::vector<float> random_uniform(size_t n, uint32_t seed, float lo, float hi) {
    return draw(n, seed, std::uniform_real_distribution<float>(lo, hi));
}

std::vector<float> random_normal(size_t n, uint32_t seed, float mean, float stddev) {
    return draw(n, seed, std::normal_distribution<float>(mean, stddev));
}

QuantMatrix random_matrix(gguf::TensorType type, int64_t n_rows, int n_in, uint32_t seed, float stddev) {
    const auto n = static_cast<uint64_t>(n_rows) * static_cast<uint64_t>(n_in);
    const auto weights = random_normal(n, seed, 0.f, stddev);
    QuantMatrix m{std::vector<uint8_t>(gguf::tensor_bytes(type, n)), std::vector<float>(n)};
    gguf::quantize(type, weights.data(), m.bytes.data(), n);
    gguf::dequantize(type, m.bytes.data(), m.values.data(), n);
    return m;
}

}  // namespace loom::kcases
