// The sampling flags shared by the commands that generate (generate, run).
#pragma once

#include <CLI/CLI.hpp>

#include "engine/sampler.h"

namespace loom::cli {

// --temperature (--temp), --top-k, --top-p, --min-p, --repeat-penalty, --seed, writing into `params`.
void add_sampling_flags(CLI::App& cmd, engine::SamplingParams& params);

}  // namespace loom::cli
