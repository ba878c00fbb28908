// Philox4x32-10 counter-based RNG and the sampler's uniform draw; header-only, host and CUDA device.
#pragma once

// <cstdint> is usable from device code; nothing else is included so nvcc can take this header.
#include <cstdint>

#if defined(__CUDACC__)
#define LOOM_PHILOX_HD __host__ __device__
#else
#define LOOM_PHILOX_HD
#endif

namespace loom::philox {

// Four 32-bit counter words in, four out (word 0 first, as in Random123's kat_vectors).
struct Block {
    std::uint32_t w[4];
};

// Two 32-bit key words.
struct Key {
    std::uint32_t w[2];
};

// Constants of Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC'11).
inline constexpr std::uint32_t kMultiplier0 = 0xD2511F53u;
inline constexpr std::uint32_t kMultiplier1 = 0xCD9E8D57u;
inline constexpr std::uint32_t kWeyl0 = 0x9E3779B9u;  // golden ratio
inline constexpr std::uint32_t kWeyl1 = 0xBB67AE85u;  // sqrt(3) - 1
inline constexpr int kRounds = 10;

// One S-box round: two 32x32->64 multiplies, the high halves xor-ed with the other words and key.
LOOM_PHILOX_HD constexpr Block philox_round(Block x, Key k) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(kMultiplier0) * x.w[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(kMultiplier1) * x.w[2];
    const auto hi0 = static_cast<std::uint32_t>(p0 >> 32);
    const auto lo0 = static_cast<std::uint32_t>(p0);
    const auto hi1 = static_cast<std::uint32_t>(p1 >> 32);
    const auto lo1 = static_cast<std::uint32_t>(p1);
    return Block{{hi1 ^ x.w[1] ^ k.w[0], lo1, hi0 ^ x.w[3] ^ k.w[1], lo0}};
}

// Philox4x32-10: ten rounds, the key bumped by the Weyl constants between rounds.
LOOM_PHILOX_HD constexpr Block philox4x32_10(Block counter, Key key) {
    for (int round = 0; round < kRounds; ++round) {
        if (round > 0) {
            key.w[0] += kWeyl0;
            key.w[1] += kWeyl1;
        }
        counter = philox_round(counter, key);
    }
    return counter;
}

// 53 random bits from output words 0 and 1: all 32 bits of word 0 on top, the high 21 bits of
// word 1 below them (words 2 and 3 are unused).
LOOM_PHILOX_HD constexpr std::uint64_t bits53_from_block(Block out) {
    return (static_cast<std::uint64_t>(out.w[0]) << 21) | (out.w[1] >> 11);
}

// Those bits as u = bits * 2^-53 in [0, 1); exact, since every value is a multiple of 2^-53.
LOOM_PHILOX_HD constexpr double uniform_from_block(Block out) {
    return static_cast<double>(bits53_from_block(out)) * 0x1.0p-53;
}

// The block of step `step` of a request seeded with `seed`:
// key = (seed low 32 bits, seed high 32 bits), counter = (step low, step high, 0, 0).
LOOM_PHILOX_HD constexpr Block sampling_block(std::uint64_t seed, std::uint64_t step) {
    const Key key{{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)}};
    const Block counter{{static_cast<std::uint32_t>(step), static_cast<std::uint32_t>(step >> 32), 0u, 0u}};
    return philox4x32_10(counter, key);
}

// The sampler's 53 random bits, and its uniform u, for (seed, step).
LOOM_PHILOX_HD constexpr std::uint64_t sampling_bits(std::uint64_t seed, std::uint64_t step) {
    return bits53_from_block(sampling_block(seed, step));
}
LOOM_PHILOX_HD constexpr double sampling_uniform(std::uint64_t seed, std::uint64_t step) {
    return uniform_from_block(sampling_block(seed, step));
}

}  // namespace loom::philox

#undef LOOM_PHILOX_HD
