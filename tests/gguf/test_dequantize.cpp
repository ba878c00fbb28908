// Dequantization tests: hand-built blocks of every dequantizable type against independently computed values.
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch.hpp"
#include "gguf/errors.h"
#include "gguf/half.h"
#include "gguf/quantize.h"

using loom::gguf::TensorType;

namespace {

using Bytes = std::vector<uint8_t>;

// Deterministic, well-mixed byte pattern so every nibble/bit position sees varied values.
uint8_t pattern_byte(uint32_t seed, uint32_t k) {
    uint32_t x = seed * 0x9e3779b9u + k * 0x85ebca6bu + 0x27d4eb2fu;
    x ^= x >> 15;
    x *= 0x2c1b3c6du;
    x ^= x >> 12;
    return static_cast<uint8_t>(x >> 7);
}

void put_u16(Bytes& block, size_t offset, uint16_t v) {
    block[offset] = static_cast<uint8_t>(v & 0xFF);
    block[offset + 1] = static_cast<uint8_t>(v >> 8);
}

// fp16 field; the test only uses values that fp16 holds exactly.
void put_half(Bytes& block, size_t offset, float v) {
    const uint16_t h = loom::gguf::float_to_half(v);
    REQUIRE(loom::gguf::half_to_float(h) == v);
    put_u16(block, offset, h);
}

// Runs dequantize on a copy placed one byte past an aligned address (file data need not be aligned).
std::vector<float> dequant(TensorType type, const Bytes& raw, uint64_t n) {
    REQUIRE(raw.size() == loom::gguf::tensor_bytes(type, n));
    Bytes shifted(raw.size() + 1);
    std::memcpy(shifted.data() + 1, raw.data(), raw.size());
    std::vector<float> out(n, std::numeric_limits<float>::quiet_NaN());
    loom::gguf::dequantize(type, shifted.data() + 1, out.data(), n, "test.weight");
    return out;
}

// Every element must match bit-for-bit in value; reports the first mismatch only.
void check_all(const std::vector<float>& got, const std::vector<float>& want) {
    REQUIRE(got.size() == want.size());
    size_t mismatches = 0, first = 0;
    for (size_t i = 0; i < got.size(); ++i)
        if (!(got[i] == want[i]) && mismatches++ == 0) first = i;
    if (mismatches) {
        INFO("first mismatch at element " << first << ": got " << got[first] << ", want " << want[first]);
        CHECK(mismatches == 0);
    }
}

Bytes concat(const std::vector<Bytes>& blocks) {
    Bytes out;
    for (const auto& b : blocks) out.insert(out.end(), b.begin(), b.end());
    return out;
}

// Q3_K: 16 stored scales (0..63) -> 12 bytes, the inverse of the format's word-wise unpacking.
std::array<uint8_t, 12> pack_q3_k_scales(const std::array<int, 16>& stored) {
    std::array<uint8_t, 12> s{};
    for (int k = 0; k < 4; ++k) {
        s[k] = static_cast<uint8_t>((stored[k] & 0xF) | (stored[8 + k] & 0xF) << 4);
        s[4 + k] = static_cast<uint8_t>((stored[4 + k] & 0xF) | (stored[12 + k] & 0xF) << 4);
        s[8 + k] = static_cast<uint8_t>((stored[k] >> 4) | (stored[4 + k] >> 4) << 2 | (stored[8 + k] >> 4) << 4 |
                                        (stored[12 + k] >> 4) << 6);
    }
    return s;
}

// The format's own description: three little-endian words, four output words of scale bytes.
std::array<int, 16> unpack_q3_k_scales_by_words(const std::array<uint8_t, 12>& s) {
    uint32_t a[3];
    for (int w = 0; w < 3; ++w)
        a[w] = uint32_t{s[4 * w]} | uint32_t{s[4 * w + 1]} << 8 | uint32_t{s[4 * w + 2]} << 16 |
               uint32_t{s[4 * w + 3]} << 24;
    const uint32_t words[4] = {
        (a[0] & 0x0f0f0f0f) | (((a[2] >> 0) & 0x03030303) << 4),
        (a[1] & 0x0f0f0f0f) | (((a[2] >> 2) & 0x03030303) << 4),
        ((a[0] >> 4) & 0x0f0f0f0f) | (((a[2] >> 4) & 0x03030303) << 4),
        ((a[1] >> 4) & 0x0f0f0f0f) | (((a[2] >> 6) & 0x03030303) << 4),
    };
    std::array<int, 16> out{};
    for (int i = 0; i < 16; ++i) out[i] = static_cast<int>((words[i / 4] >> (8 * (i % 4))) & 0xFF);
    return out;
}

// Q4_K/Q5_K: 8 six-bit scales and mins -> 12 bytes, the inverse of the format's unpacking.
std::array<uint8_t, 12> pack_k4_scales(const std::array<int, 8>& sc, const std::array<int, 8>& m) {
    std::array<uint8_t, 12> s{};
    for (int j = 0; j < 4; ++j) {
        s[j] = static_cast<uint8_t>(sc[j] | (sc[j + 4] >> 4) << 6);
        s[j + 4] = static_cast<uint8_t>(m[j] | (m[j + 4] >> 4) << 6);
        s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | (m[j + 4] & 0xF) << 4);
    }
    return s;
}

void unpack_k4_scale_min_spec(const std::array<uint8_t, 12>& s, int j, int& sc, int& m) {
    if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

}  // namespace

TEST_CASE("F32 copies, F16 and BF16 widen bit-exactly", "[dequant]") {
    const std::vector<float> f = {0.0f,
                                  -0.0f,
                                  1.5f,
                                  -3.25e-20f,
                                  std::numeric_limits<float>::infinity(),
                                  std::numeric_limits<float>::denorm_min()};
    Bytes raw(f.size() * 4);
    std::memcpy(raw.data(), f.data(), raw.size());
    const auto out = dequant(TensorType::F32, raw, f.size());
    for (size_t i = 0; i < f.size(); ++i) CHECK(std::bit_cast<uint32_t>(out[i]) == std::bit_cast<uint32_t>(f[i]));

    // fp16 bits -> the value each one encodes (2^-24 is the smallest subnormal, 65504 the largest).
    const std::vector<std::pair<uint16_t, float>> halves = {
        {0x0000, 0.0f},
        {0x3c00, 1.0f},
        {0xc000, -2.0f},
        {0x3555, 0.333251953125f},
        {0x7bff, 65504.0f},
        {0x0001, std::ldexp(1.0f, -24)},
        {0x03ff, std::ldexp(1023.0f, -24)},
        {0x0400, std::ldexp(1.0f, -14)},
        {0x8001, -std::ldexp(1.0f, -24)},
        {0x7c00, std::numeric_limits<float>::infinity()},
        {0xfc00, -std::numeric_limits<float>::infinity()},
    };
    Bytes h(halves.size() * 2);
    for (size_t i = 0; i < halves.size(); ++i) put_u16(h, 2 * i, halves[i].first);
    const auto hout = dequant(TensorType::F16, h, halves.size());
    for (size_t i = 0; i < halves.size(); ++i) {
        INFO("fp16 bits " << halves[i].first);
        CHECK(hout[i] == halves[i].second);
    }
    Bytes special(6);
    put_u16(special, 0, 0x8000);  // -0
    put_u16(special, 2, 0x7e00);  // quiet nan
    put_u16(special, 4, 0xfc01);  // signalling-pattern nan with sign
    const auto sout = dequant(TensorType::F16, special, 3);
    CHECK(std::bit_cast<uint32_t>(sout[0]) == 0x80000000u);
    CHECK(std::isnan(sout[1]));
    CHECK(std::isnan(sout[2]));

    // bf16 is the top half of an f32.
    const std::vector<std::pair<uint16_t, float>> bfs = {
        {0x3f80, 1.0f},
        {0xbfc0, -1.5f},
        {0x7f7f, 3.3895313892515355e38f},
        {0x0001, std::ldexp(1.0f, -133)},
        {0x0080, std::ldexp(1.0f, -126)},
        {0x7f80, std::numeric_limits<float>::infinity()},
        {0x8000, -0.0f},
    };
    Bytes b(bfs.size() * 2);
    for (size_t i = 0; i < bfs.size(); ++i) put_u16(b, 2 * i, bfs[i].first);
    const auto bout = dequant(TensorType::BF16, b, bfs.size());
    for (size_t i = 0; i < bfs.size(); ++i) {
        INFO("bf16 bits " << bfs[i].first);
        CHECK(std::bit_cast<uint32_t>(bout[i]) == std::bit_cast<uint32_t>(bfs[i].second));
    }
    Bytes bnan(2);
    put_u16(bnan, 0, 0x7fc1);
    CHECK(std::isnan(dequant(TensorType::BF16, bnan, 1)[0]));
}

TEST_CASE("F16 and BF16 round to nearest even, overflow to inf, keep nan", "[dequant][quant]") {
    using loom::gguf::float_to_bf16;
    using loom::gguf::float_to_half;
    const float one = 1.0f;
    // fp16 has 10 fraction bits: 1 + 2^-11 is the tie between 1 and 1 + 2^-10.
    CHECK(float_to_half(one + std::ldexp(1.0f, -11)) == 0x3c00);                          // tie -> even (down)
    CHECK(float_to_half(one + 3 * std::ldexp(1.0f, -11)) == 0x3c02);                      // tie -> even (up)
    CHECK(float_to_half(one + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)) == 0x3c01);  // above tie
    CHECK(float_to_half(65504.0f) == 0x7bff);
    CHECK(float_to_half(65519.0f) == 0x7bff);  // below the 65520 midpoint
    CHECK(float_to_half(65520.0f) == 0x7c00);  // rounds up past the largest finite -> inf
    CHECK(float_to_half(-1e10f) == 0xfc00);
    CHECK(float_to_half(std::ldexp(1.0f, -24)) == 0x0001);     // smallest subnormal
    CHECK(float_to_half(std::ldexp(1.0f, -25)) == 0x0000);     // tie with 0 -> even (0)
    CHECK(float_to_half(std::ldexp(1.5f, -25)) == 0x0001);     // above the tie
    CHECK(float_to_half(std::ldexp(3.0f, -25)) == 0x0002);     // 1.5 ulp tie -> even (2)
    CHECK(float_to_half(std::ldexp(1023.0f, -24)) == 0x03ff);  // largest subnormal
    CHECK(float_to_half(-std::ldexp(1.0f, -26)) == 0x8000);    // underflow keeps the sign
    CHECK((float_to_half(std::numeric_limits<float>::quiet_NaN()) & 0x7fff) > 0x7c00);
    CHECK(float_to_half(std::numeric_limits<float>::infinity()) == 0x7c00);

    // bf16 has 7 fraction bits.
    CHECK(float_to_bf16(one + std::ldexp(1.0f, -8)) == 0x3f80);         // tie -> even (down)
    CHECK(float_to_bf16(one + 3 * std::ldexp(1.0f, -8)) == 0x3f82);     // tie -> even (up)
    CHECK(float_to_bf16(std::numeric_limits<float>::max()) == 0x7f80);  // rounds up into inf
    CHECK(float_to_bf16(std::numeric_limits<float>::denorm_min()) == 0x0000);
    CHECK(float_to_bf16(std::ldexp(1.0f, -133)) == 0x0001);  // bf16 subnormal kept
    CHECK((float_to_bf16(std::numeric_limits<float>::quiet_NaN()) & 0x7fff) > 0x7f80);
    CHECK((float_to_bf16(std::bit_cast<float>(0x7f800001u)) & 0x7fff) > 0x7f80);  // low-payload nan stays nan

    // Through the public API: quantize to F16/BF16 then dequantize.
    const std::vector<float> x = {one + std::ldexp(1.0f, -11), 65520.0f, std::ldexp(1.0f, -24), -2.5f};
    Bytes h(x.size() * 2), b(x.size() * 2);
    loom::gguf::quantize(TensorType::F16, x.data(), h.data(), x.size());
    loom::gguf::quantize(TensorType::BF16, x.data(), b.data(), x.size());
    check_all(dequant(TensorType::F16, h, x.size()),
              {1.0f, std::numeric_limits<float>::infinity(), std::ldexp(1.0f, -24), -2.5f});
    check_all(dequant(TensorType::BF16, b, x.size()), {1.0f, 65536.0f, std::ldexp(1.0f, -24), -2.5f});
}

TEST_CASE("Q4_0: low nibbles first, offset 8", "[dequant]") {
    Bytes literal(18, 0);
    put_half(literal, 0, 1.0f);
    literal[2] = 0x1F;   // element 0 = 15-8, element 16 = 1-8
    literal[3] = 0x80;   // element 1 = 0-8, element 17 = 8-8
    literal[17] = 0xC3;  // element 15 = 3-8, element 31 = 12-8
    const auto l = dequant(TensorType::Q4_0, literal, 32);
    CHECK(l[0] == 7.0f);
    CHECK(l[16] == -7.0f);
    CHECK(l[1] == -8.0f);
    CHECK(l[17] == 0.0f);
    CHECK(l[15] == -5.0f);
    CHECK(l[31] == 4.0f);
    CHECK(l[2] == -8.0f);

    const float ds[3] = {0.5f, -1.25f, 0.0078125f};
    std::vector<Bytes> blocks;
    std::vector<float> want;
    for (int b = 0; b < 3; ++b) {
        Bytes blk(18);
        put_half(blk, 0, ds[b]);
        for (int j = 0; j < 16; ++j) blk[2 + j] = pattern_byte(b, j);
        for (int i = 0; i < 32; ++i) {
            const int nibble = (blk[2 + i % 16] >> (i < 16 ? 0 : 4)) & 0xF;
            want.push_back(static_cast<float>(nibble - 8) * ds[b]);
        }
        blocks.push_back(blk);
    }
    check_all(dequant(TensorType::Q4_0, concat(blocks), 96), want);
}

TEST_CASE("Q4_1: nibbles times d plus m", "[dequant]") {
    Bytes literal(20, 0);
    put_half(literal, 0, 0.5f);
    put_half(literal, 2, -1.0f);
    literal[4] = 0xF0;  // element 0 = 0*0.5-1, element 16 = 15*0.5-1
    const auto l = dequant(TensorType::Q4_1, literal, 32);
    CHECK(l[0] == -1.0f);
    CHECK(l[16] == 6.5f);
    CHECK(l[5] == -1.0f);

    const float ds[3] = {0.25f, 3.0f, -0.125f};
    const float ms[3] = {-2.0f, 0.5f, 1024.0f};
    std::vector<Bytes> blocks;
    std::vector<float> want;
    for (int b = 0; b < 3; ++b) {
        Bytes blk(20);
        put_half(blk, 0, ds[b]);
        put_half(blk, 2, ms[b]);
        for (int j = 0; j < 16; ++j) blk[4 + j] = pattern_byte(10 + b, j);
        for (int i = 0; i < 32; ++i) {
            const int nibble = (blk[4 + i % 16] >> (i < 16 ? 0 : 4)) & 0xF;
            want.push_back(static_cast<float>(nibble) * ds[b] + ms[b]);
        }
        blocks.push_back(blk);
    }
    check_all(dequant(TensorType::Q4_1, concat(blocks), 96), want);
}

TEST_CASE("Q5_0: bit i of qh is the fifth bit of element i", "[dequant]") {
    Bytes literal(22, 0);
    put_half(literal, 0, 1.0f);
    literal[2] = 0x01;   // qh bit 0
    literal[5] = 0x80;   // qh bit 31
    literal[6] = 0x21;   // element 0 nibble 1, element 16 nibble 2
    literal[21] = 0xF0;  // element 15 nibble 0, element 31 nibble 15
    const auto l = dequant(TensorType::Q5_0, literal, 32);
    CHECK(l[0] == 1.0f);     // 17 - 16
    CHECK(l[16] == -14.0f);  // 2 - 16
    CHECK(l[15] == -16.0f);
    CHECK(l[31] == 15.0f);  // 31 - 16

    const float ds[3] = {0.5f, -2.0f, 0.03125f};
    std::vector<Bytes> blocks;
    std::vector<float> want;
    for (int b = 0; b < 3; ++b) {
        Bytes blk(22);
        put_half(blk, 0, ds[b]);
        for (int k = 0; k < 20; ++k) blk[2 + k] = pattern_byte(20 + b, k);
        const uint32_t qh = uint32_t{blk[2]} | uint32_t{blk[3]} << 8 | uint32_t{blk[4]} << 16 | uint32_t{blk[5]} << 24;
        for (int i = 0; i < 32; ++i) {
            const int nibble = (blk[6 + i % 16] >> (i < 16 ? 0 : 4)) & 0xF;
            const int q = nibble + 16 * static_cast<int>((qh >> i) & 1);
            want.push_back(static_cast<float>(q - 16) * ds[b]);
        }
        blocks.push_back(blk);
    }
    check_all(dequant(TensorType::Q5_0, concat(blocks), 96), want);
}

TEST_CASE("Q5_1: five-bit quants times d plus m", "[dequant]") {
    Bytes literal(24, 0);
    put_half(literal, 0, 0.25f);
    put_half(literal, 2, 1.0f);
    literal[4] = 0x01;  // qh bit 0
    literal[6] = 0x01;  // qh bit 16
    literal[8] = 0x0F;  // element 0 nibble 15, element 16 nibble 0
    const auto l = dequant(TensorType::Q5_1, literal, 32);
    CHECK(l[0] == 8.75f);  // 31 * 0.25 + 1
    CHECK(l[16] == 5.0f);  // 16 * 0.25 + 1
    CHECK(l[1] == 1.0f);

    const float ds[3] = {0.125f, 1.5f, -0.5f};
    const float ms[3] = {-3.0f, 0.0f, 7.25f};
    std::vector<Bytes> blocks;
    std::vector<float> want;
    for (int b = 0; b < 3; ++b) {
        Bytes blk(24);
        put_half(blk, 0, ds[b]);
        put_half(blk, 2, ms[b]);
        for (int k = 0; k < 20; ++k) blk[4 + k] = pattern_byte(30 + b, k);
        const uint32_t qh = uint32_t{blk[4]} | uint32_t{blk[5]} << 8 | uint32_t{blk[6]} << 16 | uint32_t{blk[7]} << 24;
        for (int i = 0; i < 32; ++i) {
            const int nibble = (blk[8 + i % 16] >> (i < 16 ? 0 : 4)) & 0xF;
            const int q = nibble + 16 * static_cast<int>((qh >> i) & 1);
            want.push_back(static_cast<float>(q) * ds[b] + ms[b]);
        }
        blocks.push_back(blk);
    }
    check_all(dequant(TensorType::Q5_1, concat(blocks), 96), want);
}

TEST_CASE("Q8_0: signed bytes times d", "[dequant]") {
    const float ds[3] = {0.5f, -0.0625f, 96.0f};
    std::vector<Bytes> blocks;
    std::vector<float> want;
    for (int b = 0; b < 3; ++b) {
        Bytes blk(34);
        put_half(blk, 0, ds[b]);
        for (int i = 0; i < 32; ++i) {
            blk[2 + i] = pattern_byte(40 + b, i);
            want.push_back(static_cast<float>(static_cast<int8_t>(blk[2 + i])) * ds[b]);
        }
        blocks.push_back(blk);
    }
    blocks[0][2] = 0x80;  // -128
    blocks[0][3] = 0x7F;  // 127
    blocks[0][4] = 0xFF;  // -1
    want[0] = -64.0f;
    want[1] = 63.5f;
    want[2] = -0.5f;
    check_all(dequant(TensorType::Q8_0, concat(blocks), 96), want);
}

TEST_CASE("Q2_K: four 2-bit planes per half, scale and min nibbles", "[dequant]") {
    // Layout: scales[0..15] at 0, qs[0..63] at 16, d at 80, dmin at 82.
    Bytes literal(84, 0);
    literal[0] = 0x21;   // group 0: scale 1, min 2
    literal[2] = 0x13;   // group 2: scale 3, min 1
    literal[4] = 0x05;   // group 4: scale 5, min 0
    literal[6] = 0xF1;   // group 6: scale 1, min 15
    literal[1] = 0x02;   // group 1: scale 2
    literal[8] = 0x04;   // group 8: scale 4
    literal[16] = 0xE4;  // qs[0]: planes 0,1,2,3 = 0,1,2,3
    literal[32] = 0x03;  // qs[16]: plane 0 = 3 -> element 16 (group 1)
    literal[48] = 0x02;  // qs[32]: plane 0 = 2 -> element 128 (group 8)
    put_half(literal, 80, 1.0f);
    put_half(literal, 82, 0.5f);
    const auto l = dequant(TensorType::Q2_K, literal, 256);
    CHECK(l[0] == -1.0f);   // 1*0 - 0.5*2
    CHECK(l[32] == 2.5f);   // 3*1 - 0.5*1
    CHECK(l[64] == 10.0f);  // 5*2 - 0
    CHECK(l[96] == -4.5f);  // 1*3 - 0.5*15
    CHECK(l[16] == 6.0f);   // 2*3
    CHECK(l[128] == 8.0f);  // 4*2
    CHECK(l[1] == -1.0f);

    const float ds[2] = {0.5f, -0.25f};
    const float dmins[2] = {0.125f, 2.0f};
    std::vector<Bytes> blocks;
    std::vector<float> want;
    for (int b = 0; b < 2; ++b) {
        Bytes blk(84);
        for (int k = 0; k < 80; ++k) blk[k] = pattern_byte(50 + b, k);
        put_half(blk, 80, ds[b]);
        put_half(blk, 82, dmins[b]);
        // Element i: half h, shift index s, group g (A/B), position l.
        for (int i = 0; i < 256; ++i) {
            const int h = i / 128, s = (i % 128) / 32, g = (i % 32) / 16, l = i % 16;
            const int q = (blk[16 + 32 * h + 16 * g + l] >> (2 * s)) & 3;
            const int sc = blk[8 * h + 2 * s + g];
            want.push_back(ds[b] * static_cast<float>((sc & 0xF) * q) - dmins[b] * static_cast<float>(sc >> 4));
        }
        blocks.push_back(blk);
    }
    check_all(dequant(TensorType::Q2_K, concat(blocks), 512), want);
}

TEST_CASE("Q3_K: scale packing helper inverts the format's word formula", "[dequant]") {
    std::array<int, 16> stored{};
    for (int i = 0; i < 16; ++i) stored[i] = (i * 37 + 11) % 64;
    stored[3] = 63;
    stored[12] = 0;
    CHECK(unpack_q3_k_scales_by_words(pack_q3_k_scales(stored)) == stored);
}

TEST_CASE("Q3_K: low 2 bits, inverted high bit in hmask, signed 6-bit scales", "[dequant]") {
    // Layout: hmask[0..31] at 0, qs[0..63] at 32, scales[0..11] at 96, d at 108.
    Bytes literal(110, 0);
    literal[96 + 0] = 0x05;   // group 0 low nibble 5 (group 8 low nibble 0)
    literal[96 + 8] = 0x02;   // group 0 top bits 2 -> 37 - 32 = 5; groups 4, 8, 12 top bits 0
    literal[96 + 2] = 0x0F;   // group 2 low nibble 15
    literal[96 + 10] = 0x03;  // group 2 top bits 3 -> 63 - 32 = 31
    literal[32] = 0x03;       // qs[0]: plane 0 = 3, plane 1 = 0
    literal[0] = 0x11;        // hmask[0]: bit 0 (element 0), bit 4 (element 128)
    literal[64] = 0x01;       // qs[32]: plane 0 = 1 -> element 128
    put_half(literal, 108, 0.5f);
    const auto l = dequant(TensorType::Q3_K, literal, 256);
    CHECK(l[0] == 7.5f);      // 0.5 * 5 * (3 - 0)
    CHECK(l[1] == -10.0f);    // 0.5 * 5 * (0 - 4)
    CHECK(l[32] == -62.0f);   // 0.5 * 31 * (0 - 4)
    CHECK(l[128] == -16.0f);  // 0.5 * -32 * (1 - 0)
    CHECK(l[144] == 64.0f);   // group 9: all-zero scale bits -> -32; 0.5 * -32 * (0 - 4)
    CHECK(l[64] == 64.0f);    // group 4: 0.5 * -32 * (0 - 4)

    const float ds[2] = {0.25f, -0.5f};
    std::vector<Bytes> blocks;
    std::vector<float> want;
    for (int b = 0; b < 2; ++b) {
        Bytes blk(110);
        for (int k = 0; k < 96; ++k) blk[k] = pattern_byte(60 + b, k);
        std::array<int, 16> scale{};  // signed -32..31, both extremes present
        for (int g = 0; g < 16; ++g) scale[g] = ((g * 23 + 7 * b) % 64) - 32;
        scale[5] = -32;
        scale[10] = 31;
        std::array<int, 16> stored{};
        for (int g = 0; g < 16; ++g) stored[g] = scale[g] + 32;
        const auto packed = pack_q3_k_scales(stored);
        std::memcpy(blk.data() + 96, packed.data(), 12);
        put_half(blk, 108, ds[b]);
        for (int i = 0; i < 256; ++i) {
            const int h = i / 128, s = (i % 128) / 32, g = (i % 32) / 16, l = i % 16;
            const int low2 = (blk[32 + 32 * h + 16 * g + l] >> (2 * s)) & 3;
            const bool high = (blk[16 * g + l] >> (4 * h + s)) & 1;
            const int q = low2 - (high ? 0 : 4);
            want.push_back(ds[b] * static_cast<float>(scale[8 * h + 2 * s + g] * q));
        }
        blocks.push_back(blk);
    }
    check_all(dequant(TensorType::Q3_K, concat(blocks), 512), want);
}

TEST_CASE("Q4_K/Q5_K: scale packing helper inverts the format's unpacking", "[dequant]") {
    const std::array<int, 8> sc = {1, 63, 32, 17, 48, 0, 31, 63};
    const std::array<int, 8> m = {63, 0, 16, 33, 21, 62, 15, 1};
    const auto packed = pack_k4_scales(sc, m);
    for (int j = 0; j < 8; ++j) {
        int s = -1, mm = -1;
        unpack_k4_scale_min_spec(packed, j, s, mm);
        CHECK(s == sc[j]);
        CHECK(mm == m[j]);
    }
}

TEST_CASE("Q4_K: 6-bit scales/mins, low nibbles then high nibbles per 64", "[dequant]") {
    // Layout: d at 0, dmin at 2, scales[0..11] at 4, qs[0..127] at 16.
    const uint8_t literal_scales[12] = {0xC1, 2, 3, 4, 0x45, 6, 7, 8, 0x52, 0, 0, 0};
    Bytes literal(144, 0);
    put_half(literal, 0, 0.5f);
    put_half(literal, 2, 0.25f);
    std::memcpy(literal.data() + 4, literal_scales, 12);
    literal[16] = 0x3A;  // qs[0]: element 0 nibble 10, element 32 nibble 3
    literal[80] = 0x07;  // qs[64]: element 128 nibble 7, element 160 nibble 0
    const auto l = dequant(TensorType::Q4_K, literal, 256);
    CHECK(l[0] == 3.75f);      // sc0 = 1, m0 = 5: 0.5*1*10 - 0.25*5
    CHECK(l[32] == 1.5f);      // sc1 = 2, m1 = 6: 0.5*2*3 - 0.25*6
    CHECK(l[128] == 169.75f);  // sc4 = 2|3<<4 = 50, m4 = 5|1<<4 = 21: 0.5*50*7 - 0.25*21
    CHECK(l[160] == 0.0f);     // sc5 = m5 = 0
    CHECK(l[1] == -1.25f);     // nibble 0 in sub-block 0

    const float ds[2] = {0.25f, 0.125f};
    const float dmins[2] = {0.5f, -0.0625f};
    std::vector<Bytes> blocks;
    std::vector<float> want;
    for (int b = 0; b < 2; ++b) {
        std::array<int, 8> sc{}, m{};
        for (int j = 0; j < 8; ++j) {
            sc[j] = (j * 29 + 13 * b + 5) % 64;
            m[j] = (j * 41 + 7 * b + 60) % 64;
        }
        sc[6] = 63;
        m[7] = 63;
        Bytes blk(144);
        put_half(blk, 0, ds[b]);
        put_half(blk, 2, dmins[b]);
        const auto packed = pack_k4_scales(sc, m);
        std::memcpy(blk.data() + 4, packed.data(), 12);
        for (int k = 0; k < 128; ++k) blk[16 + k] = pattern_byte(70 + b, k);
        for (int i = 0; i < 256; ++i) {
            const int j = i / 32, l = i % 32;
            const int q = (blk[16 + 32 * (j / 2) + l] >> (4 * (j % 2))) & 0xF;
            want.push_back(ds[b] * static_cast<float>(sc[j] * q) - dmins[b] * static_cast<float>(m[j]));
        }
        blocks.push_back(blk);
    }
    check_all(dequant(TensorType::Q4_K, concat(blocks), 512), want);
}

TEST_CASE("Q5_K: Q4_K plus bit j of qh[l] as the fifth bit", "[dequant]") {
    // Layout: d at 0, dmin at 2, scales at 4, qh[0..31] at 16, qs[0..127] at 48.
    const uint8_t literal_scales[12] = {0xC1, 2, 3, 4, 0x45, 6, 7, 8, 0x52, 0, 0, 0};
    Bytes literal(176, 0);
    put_half(literal, 0, 0.5f);
    put_half(literal, 2, 0.25f);
    std::memcpy(literal.data() + 4, literal_scales, 12);
    literal[16] = 0x11;   // qh[0]: bit 0 (sub-block 0), bit 4 (sub-block 4)
    literal[48] = 0x3A;   // qs[0]
    literal[112] = 0x07;  // qs[64]
    const auto l = dequant(TensorType::Q5_K, literal, 256);
    CHECK(l[0] == 11.75f);     // 0.5*1*26 - 0.25*5
    CHECK(l[32] == 1.5f);      // qh bit 1 clear: 0.5*2*3 - 0.25*6
    CHECK(l[128] == 569.75f);  // 0.5*50*23 - 0.25*21
    CHECK(l[160] == 0.0f);

    const float ds[2] = {0.125f, 0.5f};
    const float dmins[2] = {0.25f, 1.0f};
    std::vector<Bytes> blocks;
    std::vector<float> want;
    for (int b = 0; b < 2; ++b) {
        std::array<int, 8> sc{}, m{};
        for (int j = 0; j < 8; ++j) {
            sc[j] = (j * 19 + 11 * b + 40) % 64;
            m[j] = (j * 53 + 3 * b + 9) % 64;
        }
        Bytes blk(176);
        put_half(blk, 0, ds[b]);
        put_half(blk, 2, dmins[b]);
        const auto packed = pack_k4_scales(sc, m);
        std::memcpy(blk.data() + 4, packed.data(), 12);
        for (int k = 0; k < 160; ++k) blk[16 + k] = pattern_byte(80 + b, k);
        for (int i = 0; i < 256; ++i) {
            const int j = i / 32, l = i % 32;
            const int nibble = (blk[48 + 32 * (j / 2) + l] >> (4 * (j % 2))) & 0xF;
            const int q = nibble + 16 * ((blk[16 + l] >> j) & 1);
            want.push_back(ds[b] * static_cast<float>(sc[j] * q) - dmins[b] * static_cast<float>(m[j]));
        }
        blocks.push_back(blk);
    }
    check_all(dequant(TensorType::Q5_K, concat(blocks), 512), want);
}

TEST_CASE("Q6_K: ql nibbles, qh 2-bit pairs, int8 group scales", "[dequant]") {
    // Layout: ql[0..127] at 0, qh[0..63] at 128, scales[0..15] (int8) at 192, d at 208.
    Bytes literal(210, 0);
    literal[0] = 0x5A;    // ql[0]: element 0 low 10, element 64 low 5
    literal[32] = 0xC3;   // ql[32]: element 32 low 3, element 96 low 12
    literal[128] = 0xE4;  // qh[0]: pairs 0,1,2,3 for elements 0, 32, 64, 96
    literal[192 + 0] = 3;
    literal[192 + 2] = static_cast<uint8_t>(-2);
    literal[192 + 4] = 1;
    literal[192 + 6] = static_cast<uint8_t>(-1);
    literal[64] = 0x01;   // ql[64]: element 128 low 1
    literal[160] = 0x03;  // qh[32]: element 128 top 3 -> 49 - 32 = 17
    literal[192 + 8] = static_cast<uint8_t>(-128);
    put_half(literal, 208, 0.5f);
    const auto l = dequant(TensorType::Q6_K, literal, 256);
    CHECK(l[0] == -33.0f);      // 0.5 * 3 * (10 - 32)
    CHECK(l[32] == 13.0f);      // 0.5 * -2 * (19 - 32)
    CHECK(l[64] == 2.5f);       // 0.5 * 1 * (37 - 32)
    CHECK(l[96] == -14.0f);     // 0.5 * -1 * (60 - 32)
    CHECK(l[128] == -1088.0f);  // 0.5 * -128 * 17
    CHECK(l[16] == 0.0f);       // group 1 scale 0

    const float ds[2] = {0.0625f, -0.25f};
    std::vector<Bytes> blocks;
    std::vector<float> want;
    for (int b = 0; b < 2; ++b) {
        Bytes blk(210);
        for (int k = 0; k < 208; ++k) blk[k] = pattern_byte(90 + b, k);
        blk[192] = 0x80;  // -128
        blk[193] = 0x7F;  // 127
        put_half(blk, 208, ds[b]);
        // Element i: half h, quarter k (which nibble/ql byte/qh pair), position l within 32.
        for (int i = 0; i < 256; ++i) {
            const int h = i / 128, k = (i % 128) / 32, l = i % 32;
            const int low = (blk[64 * h + l + 32 * (k % 2)] >> (4 * (k / 2))) & 0xF;
            const int top = (blk[128 + 32 * h + l] >> (2 * k)) & 3;
            const int scale = static_cast<int8_t>(blk[192 + 8 * h + l / 16 + 2 * k]);
            want.push_back(ds[b] * static_cast<float>(scale * ((low | top << 4) - 32)));
        }
        blocks.push_back(blk);
    }
    check_all(dequant(TensorType::Q6_K, concat(blocks), 512), want);
}

TEST_CASE("Unsupported types throw UnsupportedTypeError naming the tensor", "[dequant]") {
    Bytes raw(1024, 0);
    std::vector<float> out(256);
    try {
        loom::gguf::dequantize(TensorType::IQ2_XS, raw.data(), out.data(), 256, "blk.0.attn_q.weight");
        FAIL("no exception");
    } catch (const loom::gguf::UnsupportedTypeError& e) {
        CHECK(std::string(e.what()).find("unsupported tensor type IQ2_XS in blk.0.attn_q.weight") != std::string::npos);
        CHECK(e.type() == TensorType::IQ2_XS);
    }
    try {
        loom::gguf::dequantize(TensorType::IQ4_NL, raw.data(), out.data(), 32);
        FAIL("no exception");
    } catch (const loom::gguf::UnsupportedTypeError& e) {
        CHECK(std::string(e.what()) == "unsupported tensor type IQ4_NL");
    }
    const TensorType unsupported[] = {
        TensorType::Q8_1,  TensorType::Q8_K,   TensorType::IQ2_XXS, TensorType::IQ2_XS, TensorType::IQ3_XXS,
        TensorType::IQ1_S, TensorType::IQ4_NL, TensorType::IQ3_S,   TensorType::IQ2_S,  TensorType::IQ4_XS,
        TensorType::I8,    TensorType::I16,    TensorType::I32,     TensorType::I64,    TensorType::F64,
        TensorType::IQ1_M, TensorType::TQ1_0,  TensorType::TQ2_0,   TensorType::MXFP4,
    };
    for (const auto type : unsupported) {
        INFO(loom::gguf::tensor_type_name(type));
        CHECK_THROWS_AS(loom::gguf::dequantize(type, raw.data(), out.data(), 256, "t"),
                        loom::gguf::UnsupportedTypeError);
    }
}

TEST_CASE("Element counts that are not whole blocks are rejected", "[dequant]") {
    Bytes raw(1024, 0);
    std::vector<float> out(300);
    CHECK_THROWS_AS(loom::gguf::dequantize(TensorType::Q4_0, raw.data(), out.data(), 33), std::invalid_argument);
    CHECK_THROWS_AS(loom::gguf::dequantize(TensorType::Q6_K, raw.data(), out.data(), 128), std::invalid_argument);
    CHECK_THROWS_AS(loom::gguf::dequantize(TensorType::Q2_K, raw.data(), out.data(), 257), std::invalid_argument);
    CHECK_NOTHROW(loom::gguf::dequantize(TensorType::Q4_K, raw.data(), out.data(), 0));
    CHECK_NOTHROW(loom::gguf::dequantize(TensorType::F16, raw.data(), out.data(), 7));
}
