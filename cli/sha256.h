// SHA-256 (FIPS 180-4), fed in pieces: `loom pull` checks a download against the Hub's digest.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace loom::cli {

class Sha256 {
public:
    Sha256();
    void update(std::span<const uint8_t> data);
    void update(std::span<const char> data) { update(std::as_bytes(data)); }
    // Lower-case hex of the digest; the object is spent afterwards.
    std::string hex_digest();

private:
    void update(std::span<const std::byte> data);
    void block(const uint8_t* p);

    std::array<uint32_t, 8> h_;
    std::array<uint8_t, 64> buf_{};
    size_t buf_len_ = 0;
    uint64_t total_ = 0;
};

}  // namespace loom::cli
