// Seeded random kernel inputs (never an exact zero) and random quantized matrices with their values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "gguf/tensor_type.h"

namespace loom::kcases {

// Uniform in [lo, hi); exact zeros are nudged to 1e-3, so no input is 0.
std::vector<float> random_uniform(size_t n, uint32_t seed, float lo, float hi);

// N(mean, stddev); exact zeros are nudged to 1e-3.
std::vector<float> random_normal(size_t n, uint32_t seed, float mean, float stddev);

// A matrix quantized to a GGUF type: its bytes and the CPU dequantizer's exact view of them.
struct QuantMatrix {
    std::vector<uint8_t> bytes;
    std::vector<float> values;
};

// n_rows rows of n_in N(0, stddev) weights quantized to `type` (n_in a whole number of its blocks).
QuantMatrix random_matrix(gguf::TensorType type, int64_t n_rows, int n_in, uint32_t seed, float stddev = 0.05f);

}  // namespace loom::kcases
