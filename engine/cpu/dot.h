// f32 dot product for the CPU backend: AVX2+FMA when the processor has it, portable otherwise.
#pragma once

namespace loom::engine::cpu {

// a (n) . b (n) -> float, accumulated in several independent f32 lanes.
float dot(const float* a, const float* b, int n);

// y (n) += s * x (n)
void axpy(float s, const float* x, float* y, int n);

}  // namespace loom::engine::cpu
