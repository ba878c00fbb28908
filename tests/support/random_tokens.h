// Seeded random token ids for tests that feed a model arbitrary prompts.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace loom::test {

// n ids drawn uniformly from 3 .. n_vocab - 1 (0-2 are the usual unk/bos/eos, which a prompt avoids).
inline std::vector<int32_t> random_tokens(int n, uint32_t seed, int32_t n_vocab) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> id(3, n_vocab - 1);
    std::vector<int32_t> p(static_cast<size_t>(n));
    for (auto& t : p) t = id(rng);
    return p;
}

}  // namespace loom::test
