// Greedy token choice: the index of the largest logit of each row.
#pragma once

#include <cstdint>

#include "kernels/stream.h"

namespace loom::kernels {

// X (rows, n) -> out (rows) int32: the index of each row's largest value; ties go to the lowest
// index, and -0 ties +0. A NaN ranks above +inf, so a broken forward pass yields the first NaN's
// index rather than a plausible token. One thread block per row. n >= 1; device pointers;
// asynchronous on `stream`.
void argmax(const float* X, int rows, int n, int32_t* out, Stream stream);

}  // namespace loom::kernels
