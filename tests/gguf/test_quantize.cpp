// Quantizer tests: round trips through dequantize against per-block error bounds and RMS thresholds.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch.hpp"
#include "gguf/errors.h"
#include "gguf/half.h"
#include "gguf/quant_blocks.h"
#include "gguf/quantize.h"

using loom::gguf::half_to_float;
using loom::gguf::TensorType;

namespace {

// splitmix64 plus Box-Muller: the same numbers on every standard library.
class Rng {
public:
    explicit Rng(uint64_t seed) : state_(seed) {}
    uint64_t next() {
        uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
    double normal() {
        const double u1 = 1.0 - uniform(), u2 = uniform();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }

private:
    uint64_t state_;
};

constexpr uint64_t kElems = 256 * 64;  // whole blocks of every type

enum class Dist { Normal, NormalSmall, UniformOffset, Outliers };
constexpr Dist kDists[] = {Dist::Normal, Dist::NormalSmall, Dist::UniformOffset, Dist::Outliers};

const char* dist_name(Dist d) {
    switch (d) {
        case Dist::Normal: return "N(0,1)";
        case Dist::NormalSmall: return "N(0,0.02)";
        case Dist::UniformOffset: return "U(0.5,1.5)";
        case Dist::Outliers: return "N(0,1)+outliers";
    }
    return "?";
}

std::vector<float> make_data(Dist dist, uint64_t seed) {
    Rng rng(seed);
    std::vector<float> x(kElems);
    for (uint64_t i = 0; i < kElems; ++i) {
        switch (dist) {
            case Dist::Normal: x[i] = static_cast<float>(rng.normal()); break;
            case Dist::NormalSmall: x[i] = static_cast<float>(0.02 * rng.normal()); break;
            case Dist::UniformOffset: x[i] = static_cast<float>(0.5 + rng.uniform()); break;
            case Dist::Outliers:
                // One element in ~100 is 20..60 sigma, like the outlier channels of real weights.
                x[i] = static_cast<float>(rng.normal());
                if (rng.uniform() < 0.01)
                    x[i] = static_cast<float>((rng.uniform() < 0.5 ? -1 : 1) * (20 + 40 * rng.uniform()));
                break;
        }
    }
    return x;
}

std::vector<uint8_t> quantize(TensorType type, const std::vector<float>& x) {
    std::vector<uint8_t> raw(loom::gguf::tensor_bytes(type, x.size()));
    loom::gguf::quantize(type, x.data(), raw.data(), x.size());
    return raw;
}

std::vector<float> dequantize(TensorType type, const std::vector<uint8_t>& raw, uint64_t n) {
    std::vector<float> y(n);
    loom::gguf::dequantize(type, raw.data(), y.data(), n);
    return y;
}

double relative_rms(const std::vector<float>& x, const std::vector<float>& y) {
    double err = 0, ref = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        err += (static_cast<double>(y[i]) - x[i]) * (static_cast<double>(y[i]) - x[i]);
        ref += static_cast<double>(x[i]) * x[i];
    }
    return std::sqrt(err / ref);
}

template <typename Block>
Block block_at(const std::vector<uint8_t>& raw, uint64_t index) {
    Block b;
    std::memcpy(&b, raw.data() + index * sizeof(Block), sizeof(Block));
    return b;
}

float abs_max(const float* x, int n) {
    float m = 0;
    for (int i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
    return m;
}

// Float rounding in the quantizer and in dequantize: a few ulps of the block's largest value.
float slack(float amax) { return 4e-6f * amax + 1e-30f; }

// Counts elements whose error breaks the bound; remembers the first for the report.
struct BoundCheck {
    uint64_t failures = 0;
    std::string first;
    void element(uint64_t i, float x, float y, float bound) {
        if (std::fabs(y - x) <= bound) return;
        if (failures++ == 0)
            first = "element " + std::to_string(i) + ": x=" + std::to_string(x) + " y=" + std::to_string(y) +
                    " bound=" + std::to_string(bound);
    }
    void scale(uint64_t block, bool ok, const char* what) {
        if (ok) return;
        if (failures++ == 0) first = "block " + std::to_string(block) + ": " + what;
    }
};

// 6-bit scale and min of Q4_K/Q5_K sub-block j, straight from the format description.
void k4_scale_min(const uint8_t* s, int j, int& sc, int& m) {
    if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Per-block bounds, by type:
//  Q8_0        |err| <= d/2, with d <= amax/127 (+ fp16 rounding up).
//  Q4_0, Q5_0  |err| <= |d|/2, except elements beyond the top level (x/d > L - 1/2, L = 8 or 16:
//              the side opposite the block's extreme, which has one level fewer) where |err| <= |d|;
//              |d| <= amax/L.
//  Q4_1, Q5_1  |err| <= d/2 (levels span [min, max] with m <= min), d <= (max - min)/M, M = 15 or 31.
//  Q4_K, Q5_K  |err| <= d*sc_j/2 in sub-block j, with step d*sc_j <= (max_j - min(0, min_j) + dmin)/M + d.
//  Q6_K        |err| <= |d*sc_g|/2, or |d*sc_g| beyond the top level as Q4_0 (L = 32);
//              |d*sc_g| <= amax_g/32 + d.
// fp16 rounding of d and dmin adds a relative 2^-10 to the step bounds.
// The signed levels of Q4_0/Q5_0/Q6_K: |err| <= |d|/2, or |d| beyond the top level (x/d > L - 1/2).
void check_signed_levels(BoundCheck& c, const std::vector<float>& x, const std::vector<float>& y, uint64_t base, int n,
                         float d, float levels, float amax) {
    for (int j = 0; j < n; ++j) {
        const float t = d != 0 ? x[base + j] / d : 0.0f;
        const float bound = (t > levels - 0.5f ? std::fabs(d) : std::fabs(d) / 2) + slack(amax);
        c.element(base + j, x[base + j], y[base + j], bound);
    }
}

constexpr float kFp16Up = 1.0f + 0x1.0p-10f;
constexpr float kTiny = 0x1.0p-24f;  // smallest fp16 subnormal: the floor of any stored d

void check_q8_0(BoundCheck& c, const std::vector<float>& x, const std::vector<float>& y,
                const std::vector<uint8_t>& raw) {
    using namespace loom::gguf;
    for (uint64_t b = 0; b < x.size() / 32; ++b) {
        const float d = half_to_float(block_at<BlockQ8_0>(raw, b).d);
        const float amax = abs_max(&x[32 * b], 32);
        c.scale(b, d <= amax / 127 * kFp16Up + kTiny, "d too large");
        for (int j = 0; j < 32; ++j) c.element(32 * b + j, x[32 * b + j], y[32 * b + j], d / 2 + slack(amax));
    }
}

void check_q4_0_q5_0(BoundCheck& c, TensorType type, const std::vector<float>& x, const std::vector<float>& y,
                     const std::vector<uint8_t>& raw) {
    using namespace loom::gguf;
    const float levels = type == TensorType::Q4_0 ? 8 : 16;
    for (uint64_t b = 0; b < x.size() / 32; ++b) {
        const float d = type == TensorType::Q4_0 ? half_to_float(block_at<BlockQ4_0>(raw, b).d)
                                                 : half_to_float(block_at<BlockQ5_0>(raw, b).d);
        const float amax = abs_max(&x[32 * b], 32);
        c.scale(b, std::fabs(d) <= amax / levels * kFp16Up + kTiny, "|d| too large");
        check_signed_levels(c, x, y, 32 * b, 32, d, levels, amax);
    }
}

void check_q4_1_q5_1(BoundCheck& c, TensorType type, const std::vector<float>& x, const std::vector<float>& y,
                     const std::vector<uint8_t>& raw) {
    using namespace loom::gguf;
    const float max_q = type == TensorType::Q4_1 ? 15 : 31;
    for (uint64_t b = 0; b < x.size() / 32; ++b) {
        uint16_t d_bits, m_bits;
        if (type == TensorType::Q4_1) {
            const auto blk = block_at<BlockQ4_1>(raw, b);
            d_bits = blk.d, m_bits = blk.m;
        } else {
            const auto blk = block_at<BlockQ5_1>(raw, b);
            d_bits = blk.d, m_bits = blk.m;
        }
        const float d = half_to_float(d_bits), m = half_to_float(m_bits);
        const float lo = *std::min_element(&x[32 * b], &x[32 * b] + 32);
        const float hi = *std::max_element(&x[32 * b], &x[32 * b] + 32);
        const float amax = abs_max(&x[32 * b], 32);
        c.scale(b, m <= lo, "m above the block minimum");
        c.scale(b, d <= (hi - lo + std::fabs(lo) * 0x1.0p-10f) / max_q * kFp16Up + kTiny, "d too large");
        for (int j = 0; j < 32; ++j) c.element(32 * b + j, x[32 * b + j], y[32 * b + j], d / 2 + slack(amax));
    }
}

void check_q4_k_q5_k(BoundCheck& c, TensorType type, const std::vector<float>& x, const std::vector<float>& y,
                     const std::vector<uint8_t>& raw) {
    using namespace loom::gguf;
    const float max_q = type == TensorType::Q4_K ? 15 : 31;
    for (uint64_t b = 0; b < x.size() / 256; ++b) {
        uint16_t d_bits, dmin_bits;
        uint8_t scales[12];
        if (type == TensorType::Q4_K) {
            const auto blk = block_at<BlockQ4_K>(raw, b);
            d_bits = blk.d, dmin_bits = blk.dmin;
            std::memcpy(scales, blk.scales, 12);
        } else {
            const auto blk = block_at<BlockQ5_K>(raw, b);
            d_bits = blk.d, dmin_bits = blk.dmin;
            std::memcpy(scales, blk.scales, 12);
        }
        const float d = half_to_float(d_bits), dmin = half_to_float(dmin_bits);
        const float amax = abs_max(&x[256 * b], 256);
        c.scale(b, d >= 0 && dmin >= 0, "negative d or dmin");
        for (int j = 0; j < 8; ++j) {
            int sc, m;
            k4_scale_min(scales, j, sc, m);
            const float* xs = &x[256 * b + 32 * j];
            const float lo = std::min(0.0f, *std::min_element(xs, xs + 32));
            const float hi = *std::max_element(xs, xs + 32);
            const float step = d * static_cast<float>(sc);
            c.scale(b, step <= ((hi - lo + dmin) / max_q + d) * kFp16Up + kTiny, "sub-block step too large");
            for (int l = 0; l < 32; ++l) {
                const uint64_t i = 256 * b + 32 * j + l;
                c.element(i, x[i], y[i], step / 2 + slack(amax));
            }
        }
    }
}

void check_q6_k(BoundCheck& c, const std::vector<float>& x, const std::vector<float>& y,
                const std::vector<uint8_t>& raw) {
    using namespace loom::gguf;
    for (uint64_t b = 0; b < x.size() / 256; ++b) {
        const auto blk = block_at<BlockQ6_K>(raw, b);
        const float d = half_to_float(blk.d);
        const float amax = abs_max(&x[256 * b], 256);
        for (int g = 0; g < 16; ++g) {
            const float step = d * static_cast<float>(blk.scales[g]);
            const float group_amax = abs_max(&x[256 * b + 16 * g], 16);
            c.scale(b, std::fabs(step) <= (group_amax / 32 + d) * kFp16Up + kTiny, "group step too large");
            check_signed_levels(c, x, y, 256 * b + 16 * g, 16, step, 32, amax);
        }
    }
}

BoundCheck check_bounds(TensorType type, const std::vector<float>& x, const std::vector<float>& y,
                        const std::vector<uint8_t>& raw) {
    BoundCheck c;
    switch (type) {
        case TensorType::Q8_0: check_q8_0(c, x, y, raw); break;
        case TensorType::Q4_0:
        case TensorType::Q5_0: check_q4_0_q5_0(c, type, x, y, raw); break;
        case TensorType::Q4_1:
        case TensorType::Q5_1: check_q4_1_q5_1(c, type, x, y, raw); break;
        case TensorType::Q4_K:
        case TensorType::Q5_K: check_q4_k_q5_k(c, type, x, y, raw); break;
        case TensorType::Q6_K: check_q6_k(c, x, y, raw); break;
        default: FAIL("no bound for this type");
    }
    return c;
}

const TensorType kBlockTypes[] = {TensorType::Q8_0, TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0,
                                  TensorType::Q5_1, TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K};

// Relative RMS error ceilings per type on {N(0,1), N(0,0.02), U(0.5,1.5), N(0,1)+outliers}:
// the measured values (run the [report] test) plus about 10%.
//          N(0,1)  N(0,0.02)  U(0.5,1.5)  outliers   (measured)
//   Q8_0   0.53%   0.54%      0.32%       1.17%
//   Q4_0   8.54%   8.68%      4.92%       11.9%
//   Q4_1   7.72%   7.91%      1.70%       11.4%
//   Q5_0   4.21%   4.33%      2.53%       8.81%
//   Q5_1   3.75%   3.82%      0.82%       5.33%
//   Q4_K   7.85%   8.10%      2.73%       11.5%
//   Q5_K   3.89%   3.97%      1.32%       5.47%
//   Q6_K   1.90%   1.93%      1.23%       3.40%
struct RmsLimit {
    TensorType type;
    double limits[4];
};
constexpr RmsLimit kRmsLimits[] = {
    {TensorType::Q8_0, {0.0060, 0.0060, 0.0035, 0.0130}}, {TensorType::Q4_0, {0.0950, 0.0950, 0.0550, 0.1300}},
    {TensorType::Q4_1, {0.0850, 0.0870, 0.0190, 0.1250}}, {TensorType::Q5_0, {0.0470, 0.0480, 0.0280, 0.0970}},
    {TensorType::Q5_1, {0.0410, 0.0420, 0.0090, 0.0590}}, {TensorType::Q4_K, {0.0870, 0.0890, 0.0300, 0.1260}},
    {TensorType::Q5_K, {0.0430, 0.0440, 0.0150, 0.0600}}, {TensorType::Q6_K, {0.0210, 0.0210, 0.0135, 0.0375}},
};

}  // namespace

TEST_CASE("can_quantize lists exactly the types with a quantizer", "[quant]") {
    const TensorType yes[] = {TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q4_0,
                              TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0,
                              TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K};
    for (const auto t : yes) CHECK(loom::gguf::can_quantize(t));
    const TensorType no[] = {TensorType::Q2_K,   TensorType::Q3_K,   TensorType::Q8_1,  TensorType::Q8_K,
                             TensorType::IQ2_XS, TensorType::IQ4_NL, TensorType::TQ1_0, TensorType::MXFP4,
                             TensorType::I8,     TensorType::F64};
    for (const auto t : no) {
        CHECK_FALSE(loom::gguf::can_quantize(t));
        float x[256] = {};
        uint8_t out[512];
        CHECK_THROWS_AS(loom::gguf::quantize(t, x, out, 256), loom::gguf::UnsupportedTypeError);
    }
    float x[64] = {};
    uint8_t out[64];
    CHECK_THROWS_AS(loom::gguf::quantize(TensorType::Q8_0, x, out, 33), std::invalid_argument);
    CHECK_THROWS_AS(loom::gguf::quantize(TensorType::Q4_K, x, out, 64), std::invalid_argument);
}

TEST_CASE("F32, F16 and BF16 round trips", "[quant]") {
    const auto x = make_data(Dist::Normal, 1);
    CHECK(dequantize(TensorType::F32, quantize(TensorType::F32, x), kElems) == x);
    const auto h = dequantize(TensorType::F16, quantize(TensorType::F16, x), kElems);
    const auto b = dequantize(TensorType::BF16, quantize(TensorType::BF16, x), kElems);
    for (uint64_t i = 0; i < kElems; ++i) {
        // Round to nearest: half an ulp, 2^-11 relative for fp16 (normal range), 2^-8 for bf16.
        REQUIRE(std::fabs(h[i] - x[i]) <= std::fabs(x[i]) * 0x1.0p-11f + 0x1.0p-25f);
        REQUIRE(std::fabs(b[i] - x[i]) <= std::fabs(x[i]) * 0x1.0p-8f);
    }
}

TEST_CASE("Quantizers stay within their per-block error bounds", "[quant]") {
    for (const auto type : kBlockTypes) {
        for (const auto dist : kDists) {
            for (uint64_t seed = 1; seed <= 3; ++seed) {
                const auto x = make_data(dist, seed * 1000 + static_cast<uint64_t>(dist));
                const auto raw = quantize(type, x);
                const auto y = dequantize(type, raw, kElems);
                const auto c = check_bounds(type, x, y, raw);
                INFO(loom::gguf::tensor_type_name(type)
                     << " on " << dist_name(dist) << " seed " << seed << ": " << c.first);
                CHECK(c.failures == 0);
            }
        }
    }
}

TEST_CASE("Quantizers keep the relative RMS error under each type's ceiling", "[quant]") {
    for (const auto& limit : kRmsLimits) {
        for (size_t k = 0; k < 4; ++k) {
            const auto x = make_data(kDists[k], 77 + k);
            const double rms = relative_rms(x, dequantize(limit.type, quantize(limit.type, x), kElems));
            INFO(loom::gguf::tensor_type_name(limit.type) << " on " << dist_name(kDists[k]) << ": " << rms);
            CHECK(rms < limit.limits[k]);
        }
    }
}

// Absolute error a constant block may show once its fp16 d is subnormal (a 2^-24 grid): the grid
// step times the largest product of quant and sub-block scale that multiplies d.
float subnormal_floor(TensorType type) {
    switch (type) {
        case TensorType::Q8_0: return 127 * 0x1.0p-24f;
        case TensorType::Q4_0: return 8 * 0x1.0p-24f;
        case TensorType::Q4_1: return 15 * 0x1.0p-24f;
        case TensorType::Q5_0: return 16 * 0x1.0p-24f;
        case TensorType::Q5_1: return 31 * 0x1.0p-24f;
        case TensorType::Q4_K: return 15 * 63 * 0x1.0p-24f;
        case TensorType::Q5_K: return 31 * 63 * 0x1.0p-24f;
        case TensorType::Q6_K: return 32 * 127 * 0x1.0p-24f;
        default: return 0;
    }
}

TEST_CASE("Zero and constant blocks come back finite and (nearly) exact", "[quant]") {
    const float constants[] = {0.0f, 1.0f, -1.0f, 0.3f, -2.75f, 1e-3f, -7e-6f, 1e-9f, 1234.5f, -60000.0f};
    for (const auto type : kBlockTypes) {
        const float floor = subnormal_floor(type);
        for (const float v : constants) {
            const std::vector<float> x(512, v);
            const auto raw = quantize(type, x);
            const auto y = dequantize(type, raw, x.size());
            INFO(loom::gguf::tensor_type_name(type) << " constant " << v);
            for (const float yi : y) {
                REQUIRE(std::isfinite(yi));
                // A normal fp16 scale holds the constant to ~2^-10 relative.
                REQUIRE(std::fabs(yi - v) <= std::fabs(v) * 0x1.0p-9f + floor);
                if (v == 0.0f) REQUIRE(yi == 0.0f);
            }
        }
    }
    // A zero block between non-zero ones, and zero sub-blocks inside a K-quant super-block.
    for (const auto type : kBlockTypes) {
        auto x = make_data(Dist::Normal, 5);
        std::fill(x.begin() + 256, x.begin() + 512, 0.0f);
        std::fill(x.begin() + 32, x.begin() + 64, 0.0f);
        std::fill(x.begin() + 1024 + 16, x.begin() + 1024 + 48, -1.5f);
        const auto raw = quantize(type, x);
        const auto y = dequantize(type, raw, kElems);
        INFO(loom::gguf::tensor_type_name(type));
        for (uint64_t i = 0; i < kElems; ++i) REQUIRE(std::isfinite(y[i]));
        for (uint64_t i = 256; i < 512; ++i) REQUIRE(y[i] == 0.0f);
        CHECK(check_bounds(type, x, y, raw).failures == 0);
    }
}

TEST_CASE("Quantization is deterministic", "[quant]") {
    for (const auto type : kBlockTypes) {
        const auto x = make_data(Dist::Outliers, 9);
        INFO(loom::gguf::tensor_type_name(type));
        CHECK(quantize(type, x) == quantize(type, x));
    }
}

TEST_CASE("Representable inputs round-trip exactly", "[quant]") {
    Rng rng(42);
    // Q8_0: x = q*d with |q| <= 127 and one |q| = 127 per block, d an fp16 value of either sign.
    std::vector<float> x8(kElems);
    for (uint64_t b = 0; b < kElems / 32; ++b) {
        const float d =
            half_to_float(loom::gguf::float_to_half(static_cast<float>((0.001 + rng.uniform()) * (b % 2 ? -1 : 1))));
        for (int j = 0; j < 32; ++j) x8[32 * b + j] = static_cast<float>(static_cast<int>(rng.next() % 255) - 127) * d;
        x8[32 * b + rng.next() % 32] = (rng.uniform() < 0.5 ? -127.0f : 127.0f) * d;
    }
    CHECK(dequantize(TensorType::Q8_0, quantize(TensorType::Q8_0, x8), kElems) == x8);

    // Q4_0: x = (q-8)*d with q in 0..15 and one q = 0 per block (the extreme, -8d).
    std::vector<float> x4(kElems);
    for (uint64_t b = 0; b < kElems / 32; ++b) {
        const float d =
            half_to_float(loom::gguf::float_to_half(static_cast<float>((0.01 + rng.uniform()) * (b % 3 ? 1 : -1))));
        for (int j = 0; j < 32; ++j) x4[32 * b + j] = static_cast<float>(static_cast<int>(rng.next() % 16) - 8) * d;
        x4[32 * b + rng.next() % 32] = -8.0f * d;
    }
    CHECK(dequantize(TensorType::Q4_0, quantize(TensorType::Q4_0, x4), kElems) == x4);

    // Requantizing a dequantized tensor reproduces its bytes for the signed legacy types.
    for (const auto type : {TensorType::Q8_0, TensorType::Q4_0, TensorType::Q5_0}) {
        const auto raw = quantize(type, make_data(Dist::Normal, 11));
        INFO(loom::gguf::tensor_type_name(type));
        CHECK(quantize(type, dequantize(type, raw, kElems)) == raw);
    }
}

TEST_CASE("Report relative RMS errors", "[.][report]") {
    std::printf("%-6s", "type");
    for (const auto dist : kDists) std::printf(" %16s", dist_name(dist));
    std::printf("\n");
    for (const auto type : kBlockTypes) {
        std::printf("%-6s", std::string(loom::gguf::tensor_type_name(type)).c_str());
        for (size_t k = 0; k < 4; ++k) {
            const auto x = make_data(kDists[k], 77 + k);
            std::printf(" %15.3f%%", 100 * relative_rms(x, dequantize(type, quantize(type, x), kElems)));
        }
        std::printf("\n");
    }
}
