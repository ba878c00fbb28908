// q8_dequantize_f16 (kernels/q8_matmul.h) bit for bit against its CPU reference (q8_dequantize_f16_ref) and
// against dequantize_to_f16 of the GGUF rows the matrix was repacked from: every q8 type, 1 and 33 rows, the
// 8B shapes 4096x4096 and (Q6_K, Q4_K_M's ffn_down) 4096 rows of 14336; outputs poisoned (0xFFFF, a NaN no
// weight decodes to) before each launch and the guards after them checked untouched; and the rejects.
#include <cstdint>
#include <string>
#include <vector>

#include "catch.hpp"
#include "gguf/tensor_type.h"
#include "kernel_test_support.h"
#include "kernels/dequantize.h"
#include "kernels/q8_matmul.h"
#include "kernels/q8_repack.h"

using namespace loom;
using gguf::TensorType;
using test::DeviceBuffer;

namespace {

constexpr uint16_t kPoisonHalf = 0xFFFF;

struct Diff {
    size_t count = 0, first = 0;
};

Diff differ(const std::vector<uint16_t>& got, const std::vector<uint16_t>& want) {
    Diff d;
    for (size_t i = 0; i < got.size(); ++i)
        if (got[i] != want[i] && d.count++ == 0) d.first = i;
    return d;
}

size_t unwritten(const std::vector<uint16_t>& out) {
    size_t n = 0;
    for (const uint16_t h : out) n += h == kPoisonHalf;
    return n;
}

// The two device paths are expected to agree exactly, not within an ulp: q8_dequantize_f16 computes
// q8::weight_value (gguf::dequantize's float operations, in its order), and dequantize_to_f16's decoders
// (kernels/quant_formats.cuh) compute the same products and sums, each rounded on its own (__fmul_rn,
// __fadd_rn, __fsub_rn: nvcc contracts neither into an FMA); fp16 scales widen exactly and both round the
// f32 value to fp16 with __float2half_rn.
void check_dequantize(TensorType t, int rows, int n_in, uint32_t seed) {
    INFO(gguf::tensor_type_name(t) << " " << rows << "x" << n_in);
    const auto w = kcases::random_matrix(t, rows, n_in, seed);
    const kernels::Q8Layout layout = kernels::q8_layout(t, rows, n_in);
    const auto packed = kernels::q8_repack(t, w.bytes.data(), rows, n_in);
    const auto want = kernels::q8_dequantize_f16_ref(layout, packed.data());
    DeviceBuffer<uint8_t> d_packed(packed), d_gguf(w.bytes);
    DeviceBuffer<uint16_t> out(want.size()), from_gguf(want.size());
    test::TestStream stream;
    out.poison();
    from_gguf.poison();
    kernels::q8_dequantize_f16({layout, d_packed.get()}, out.get(), stream.get());
    kernels::dequantize_to_f16(t, d_gguf.get(), from_gguf.get(), n_in, rows, stream.get());
    const auto got = out.download(), gguf_path = from_gguf.download();
    const Diff vs_ref = differ(got, want), vs_gguf = differ(got, gguf_path);
    INFO("vs reference: " << vs_ref.count << " differ, first at " << vs_ref.first);
    INFO("vs dequantize_to_f16: " << vs_gguf.count << " differ, first at " << vs_gguf.first);
    CHECK(unwritten(got) == 0);
    CHECK(vs_ref.count == 0);
    CHECK(vs_gguf.count == 0);
    CHECK(out.guard_intact());
    CHECK(from_gguf.guard_intact());
    CHECK(d_packed.guard_intact());
}

}  // namespace

TEST_CASE("q8_dequantize_f16 equals its reference and dequantize_to_f16 bit for bit: every type, 1 and 33 rows",
          "[gpu][q8]") {
    uint32_t seed = 500;
    for (const TensorType t : kernels::q8::kTypes) {
        const int block = kernels::q8::is_k_quant(t) ? 256 : 128;  // the narrowest width the layout takes
        for (const int rows : {1, 33})
            for (const int n_in : {block, 3 * block, 4096}) check_dequantize(t, rows, n_in, seed++);
    }
}

TEST_CASE("q8_dequantize_f16 equals its reference and dequantize_to_f16 bit for bit on the 8B shapes", "[gpu][q8]") {
    uint32_t seed = 600;
    for (const TensorType t : kernels::q8::kTypes) check_dequantize(t, 4096, 4096, seed++);
    check_dequantize(TensorType::Q6_K, 4096, 14336, seed++);
}

TEST_CASE("q8_dequantize_f16 rejects what it cannot do, naming the value", "[gpu][q8]") {
    test::TestStream stream;
    const int rows = 8, n_in = 256;
    const auto w = kcases::random_matrix(TensorType::Q4_0, rows, n_in, 650);
    const kernels::Q8Layout layout = kernels::q8_layout(TensorType::Q4_0, rows, n_in);
    DeviceBuffer<uint8_t> packed(kernels::q8_repack(TensorType::Q4_0, w.bytes.data(), rows, n_in));
    DeviceBuffer<uint16_t> out(static_cast<size_t>(rows) * n_in + 8);
    const auto run = [&](const kernels::Q8Layout& l, const void* data, uint16_t* dst) {
        kernels::q8_dequantize_f16({l, data}, dst, stream.get());
    };
    auto bad = layout;
    bad.sm_off += 256;
    CHECK_THROWS_WITH(run(bad, packed.get(), out.get()), test::contains("q8_layout's"));
    bad = layout;
    bad.rows = 0;
    CHECK_THROWS_WITH(run(bad, packed.get(), out.get()), test::contains("rows 0"));
    bad = layout;
    bad.n_in = 200;
    CHECK_THROWS_WITH(run(bad, packed.get(), out.get()), test::contains("n_in 200"));
    bad = layout;
    bad.type = TensorType::F16;
    CHECK_THROWS_WITH(run(bad, packed.get(), out.get()), test::contains("F16"));
    CHECK_THROWS_WITH(run(layout, packed.get() + 8, out.get()), test::contains("W.data is not 16-byte aligned"));
    CHECK_THROWS_WITH(run(layout, packed.get(), out.get() + 4), test::contains("out is not 16-byte aligned"));
    CHECK_THROWS_WITH(run(layout, packed.get(), reinterpret_cast<uint16_t*>(packed.get())), test::contains("overlaps"));
    CHECK(out.guard_intact());
}
