// add_sampling_flags: one definition of the sampling flags; the engine checks the values' ranges.
#include "cli/sampling_flags.h"

namespace loom::cli {

void add_sampling_flags(CLI::App& cmd, engine::SamplingParams& params) {
    cmd.add_option("--temperature,--temp", params.temperature, "0 = greedy");
    cmd.add_option("--top-k", params.top_k, "0 = off");
    cmd.add_option("--top-p", params.top_p, "1 = off");
    cmd.add_option("--min-p", params.min_p, "0 = off");
    cmd.add_option("--repeat-penalty", params.repetition_penalty, "1 = off");
    cmd.add_option("--seed", params.seed, "Sampling seed");
}

}  // namespace loom::cli
