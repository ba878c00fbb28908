// A request's row of the GPU sampler (kernels/sampling.h) from its parameters: what CudaSampler
// stages for the kernel and what kernel_bench times, packed in one place.
#pragma once

#include <cstdint>

#include "engine/sampler.h"
#include "kernels/sampling.h"

namespace loom::engine {

// The row of a request whose Philox draw is `step`, whose logits are row `logits_row`, whose penalty
// window (history_count ids) was staged at history_at and its logit biases (all of p.logit_bias) at
// bias_at, with n_top alternatives (-1: no log-probabilities).
inline kernels::SamplingRow sampling_row(const SamplingParams& p, uint64_t step, int32_t logits_row, int32_t history_at,
                                         int32_t history_count, int32_t bias_at, int32_t n_top) {
    return {p.temperature,
            p.top_p,
            p.min_p,
            p.repetition_penalty,
            p.presence_penalty,
            p.frequency_penalty,
            p.top_k,
            p.seed,
            step,
            logits_row,
            history_at,
            history_count,
            bias_at,
            static_cast<int32_t>(p.logit_bias.size()),
            n_top};
}

}  // namespace loom::engine
