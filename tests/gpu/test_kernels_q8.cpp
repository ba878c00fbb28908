// The q8 family on the GPU (kernels/q8_matmul.h) against its CPU reference (kernels/q8_repack.h), bit for
// bit: x quantization (plain and normed; of SwiGLU against its two-kernel form, and the CPU reference within
// a step), and both product kernels for every type and n_vec from 1 to 512,
// on odd row counts and on Llama-3-8B shapes; outputs poisoned before each launch and guards checked after.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch.hpp"
#include "gguf/tensor_type.h"
#include "kernel_test_support.h"
#include "kernels/elementwise.h"
#include "kernels/matvec.h"
#include "kernels/q8_matmul.h"
#include "kernels/q8_repack.h"

using namespace loom;
using gguf::TensorType;
using kernels::Q8Kernel;
using test::DeviceBuffer;
namespace q8 = kernels::q8;

namespace {

constexpr int kBatches[] = {1, 3, 8, 13, 32, 64, 200, 512};
constexpr int kMaxBatch = 512;

const char* kernel_name(Q8Kernel k) { return k == Q8Kernel::dp4a ? "dp4a" : k == Q8Kernel::mma ? "mma" : "automatic"; }

// A (rows, n_in) matrix whose rows repeat `tile` distinct random rows, so the CPU reference covers the
// tile only: output row r equals tile row r % tile. On the device as q8_repack's bytes.
struct Matrix {
    kernels::Q8Layout layout, tile_layout;
    std::vector<uint8_t> tile_packed;
    DeviceBuffer<uint8_t> device;
    Matrix(TensorType t, int rows, int n_in, int tile, uint32_t seed)
        : layout(kernels::q8_layout(t, rows, n_in)),
          tile_layout(kernels::q8_layout(t, tile, n_in)),
          device(repacked(t, rows, n_in, tile, seed)) {
        const auto w = kcases::random_matrix(t, tile, n_in, seed);
        tile_packed = kernels::q8_repack(t, w.bytes.data(), tile, n_in);
    }
    kernels::Q8Matrix view() const { return {layout, device.get()}; }

    static std::vector<uint8_t> repacked(TensorType t, int rows, int n_in, int tile, uint32_t seed) {
        const auto w = kcases::random_matrix(t, tile, n_in, seed);
        const size_t row_bytes = w.bytes.size() / tile;
        std::vector<uint8_t> gguf(row_bytes * rows);
        for (int r = 0; r < rows; ++r)
            std::memcpy(gguf.data() + r * row_bytes, w.bytes.data() + (r % tile) * row_bytes, row_bytes);
        return kernels::q8_repack(t, gguf.data(), rows, n_in);
    }
};

// The device's x quantization of the first n_vec vectors of d_x, in buffers of exactly that size.
struct DeviceX {
    DeviceBuffer<int8_t> q;
    DeviceBuffer<q8::XMeta> meta;
    DeviceX(int n_vec, int n_in) : q(kernels::q8_xq_bytes(n_vec, n_in)), meta(kernels::q8_xmeta_count(n_vec, n_in)) {
        q.poison();
        meta.poison();
    }
};

// Bits that differ between got (n_vec, rows) and the reference want (n_vec, tile) expanded over rows.
size_t bit_mismatches(const std::vector<float>& got, const std::vector<float>& want, int n_vec, int rows, int tile,
                      int want_v0 = 0) {
    size_t bad = 0;
    for (int v = 0; v < n_vec; ++v)
        for (int r = 0; r < rows; ++r)
            bad += std::memcmp(&got[static_cast<size_t>(v) * rows + r],
                               &want[static_cast<size_t>(want_v0 + v) * tile + r % tile], 4) != 0;
    return bad;
}

// Runs one product into a fresh poisoned Y and returns it; checks every element written and the guard.
std::vector<float> run_product(const Matrix& m, const int8_t* xq, const q8::XMeta* xm, int n_vec, Q8Kernel k,
                               const test::TestStream& stream) {
    DeviceBuffer<float> y(static_cast<size_t>(n_vec) * m.layout.rows);
    y.poison();
    kernels::q8_product(m.view(), xq, xm, y.get(), n_vec, k, stream.get());
    const auto out = y.download();
    CHECK(test::count_unwritten(out) == 0);
    CHECK(y.guard_intact());
    return out;
}

// Both kernels and automatic, every batch size: device == CPU emulation bit for bit, so also batch
// invariant (vector v's bits do not depend on n_vec) and kernel invariant.
void check_batches(TensorType t, int rows, int n_in, int tile, const std::vector<int>& batches, uint32_t seed) {
    const Matrix m(t, rows, n_in, tile, seed);
    const int max_n = batches.back();
    const auto x = test::random_uniform(static_cast<size_t>(max_n) * n_in, seed + 1, -1.f, 1.f);
    const auto emu =
        kernels::q8_product_ref(m.tile_layout, m.tile_packed.data(), kernels::q8_quantize_x_ref(x.data(), max_n, n_in));
    DeviceBuffer<float> d_x(x);
    test::TestStream stream;
    for (const int n : batches) {
        DeviceX dx(n, n_in);
        kernels::q8_quantize_x(d_x.get(), dx.q.get(), dx.meta.get(), n, n_in, stream.get());
        for (const Q8Kernel k : {Q8Kernel::dp4a, Q8Kernel::mma, Q8Kernel::automatic}) {
            INFO(gguf::tensor_type_name(t) << " " << rows << "x" << n_in << " n_vec " << n << " " << kernel_name(k));
            const auto y = run_product(m, dx.q.get(), dx.meta.get(), n, k, stream);
            CHECK(bit_mismatches(y, emu, n, rows, tile) == 0);  // max |Δ| = 0
        }
        CHECK(dx.q.guard_intact());
        CHECK(dx.meta.guard_intact());
    }
}

}  // namespace

TEST_CASE("q8_quantize_x and q8_quantize_x_normed write the CPU reference's bytes", "[gpu][q8]") {
    test::TestStream stream;
    for (const int n_in : {384, 4096, 14336})
        for (const int n_vec : {1, 13, kMaxBatch}) {
            INFO("n_in " << n_in << " n_vec " << n_vec);
            const int n_partials = kernels::norm_partial_count(n_in);
            const auto x = test::random_uniform(static_cast<size_t>(n_vec) * n_in, 7 + n_in, -3.f, 3.f);
            const auto s = test::random_uniform(static_cast<size_t>(n_vec) * n_partials, 8 + n_in, 0.5f, 4.f);
            const float eps = 1e-5f;
            DeviceBuffer<float> d_x(x), d_s(s);
            for (const bool normed : {false, true}) {
                INFO((normed ? "normed" : "plain"));
                const auto want = normed ? kernels::q8_quantize_x_normed_ref(x.data(), s.data(), eps, n_vec, n_in)
                                         : kernels::q8_quantize_x_ref(x.data(), n_vec, n_in);
                DeviceX dx(n_vec, n_in);
                if (normed)
                    kernels::q8_quantize_x_normed(d_x.get(), d_s.get(), eps, dx.q.get(), dx.meta.get(), n_vec, n_in,
                                                  stream.get());
                else
                    kernels::q8_quantize_x(d_x.get(), dx.q.get(), dx.meta.get(), n_vec, n_in, stream.get());
                CHECK(dx.q.download() == kernels::q8_device_order(want));
                const auto meta = dx.meta.download();
                CHECK(std::memcmp(meta.data(), want.meta.data(), meta.size() * sizeof(q8::XMeta)) == 0);
                CHECK(dx.q.guard_intact());
                CHECK(dx.meta.guard_intact());
            }
        }
}

// The fused SwiGLU quantization against its two-kernel form (swiglu_pairs then q8_quantize_x), bit for bit:
// both inline kernels/swiglu.cuh. Against the CPU reference (std::exp where the device has expf, within 2
// ulp), x differs by a few ulp (~4e-7 relative) at most, so per unit d within 1e-6 relative, each value at
// most one step apart, and such steps rare (x / d within ~5e-5 of a rounding boundary): at most 0.1 %.
TEST_CASE("q8_quantize_swiglu equals swiglu_pairs then q8_quantize_x bit for bit, the CPU reference within a step",
          "[gpu][q8]") {
    test::TestStream stream;
    for (const int n_ff : {1408, 14336})
        for (const int n_vec : {1, 3, 8, 32}) {
            INFO("n_ff " << n_ff << " n_vec " << n_vec);
            const size_t n = static_cast<size_t>(n_vec) * n_ff;
            const auto gate_up = test::random_uniform(2 * n, 170 + n_ff + n_vec, -8.f, 8.f);
            DeviceBuffer<float> d_gate_up(gate_up), act(n);
            act.poison();
            DeviceX fused(n_vec, n_ff), split(n_vec, n_ff);
            kernels::q8_quantize_swiglu(d_gate_up.get(), fused.q.get(), fused.meta.get(), n_vec, n_ff, stream.get());
            kernels::swiglu_pairs(d_gate_up.get(), n_vec, n_ff, act.get(), stream.get());
            kernels::q8_quantize_x(act.get(), split.q.get(), split.meta.get(), n_vec, n_ff, stream.get());
            const auto q = fused.q.download();
            const auto meta = fused.meta.download();
            CHECK(test::count_unwritten(act.download()) == 0);
            CHECK(q == split.q.download());
            const auto split_meta = split.meta.download();
            CHECK(std::memcmp(meta.data(), split_meta.data(), meta.size() * sizeof(q8::XMeta)) == 0);
            for (const DeviceX* dx : {&fused, &split}) {
                CHECK(dx->q.guard_intact());
                CHECK(dx->meta.guard_intact());
            }
            CHECK(act.guard_intact());

            const auto ref = kernels::q8_quantize_swiglu_ref(gate_up.data(), n_vec, n_ff);
            size_t bad_d = 0, bad_q = 0, steps = 0;
            for (size_t u = 0; u < meta.size(); ++u)
                bad_d += std::fabs(meta[u].d - ref.meta[u].d) > 1e-6f * ref.meta[u].d;
            for (size_t e = 0; e < n; ++e) {  // ref in natural order, q in pos8 order per vector
                const int v = static_cast<int>(e / n_ff), i = static_cast<int>(e % n_ff);
                const int dq = q[static_cast<size_t>(v) * n_ff + q8::pos8(i / q8::kUnit, i % q8::kUnit)] - ref.q[e];
                bad_q += std::abs(dq) > 1;
                steps += dq != 0;
            }
            INFO(steps << " of " << n << " values one step from the CPU reference's");
            CHECK(bad_d == 0);
            CHECK(bad_q == 0);
            CHECK(steps <= n / 1000);
        }
}

TEST_CASE("q8_product equals the CPU emulation bit for bit: every type, kernel and n_vec 1 to 512, 33 rows",
          "[gpu][q8]") {
    const std::vector<int> batches(std::begin(kBatches), std::end(kBatches));
    for (const TensorType t : kernels::q8::kTypes)
        check_batches(t, 33, 1280, 33, batches, 50 + static_cast<uint32_t>(t));
}

TEST_CASE("q8_product equals the CPU emulation on Llama-3-8B shapes (4096x4096, 14336 -> 4096)", "[gpu][q8]") {
    for (const TensorType t : kernels::q8::kTypes) {
        check_batches(t, 4096, 4096, 64, {1, 8, 64}, 70 + static_cast<uint32_t>(t));
        check_batches(t, 4096, 14336, 64, {1, 13}, 90 + static_cast<uint32_t>(t));
    }
}

TEST_CASE("q8_product gives vector j alone the bits it gets inside a batch of 512", "[gpu][q8]") {
    test::TestStream stream;
    const int rows = 77, n_in = 2048;
    for (const TensorType t : kernels::q8::kTypes) {
        const Matrix m(t, rows, n_in, rows, 110 + static_cast<uint32_t>(t));
        const auto x = test::random_uniform(static_cast<size_t>(kMaxBatch) * n_in, 111, -1.f, 1.f);
        DeviceBuffer<float> d_x(x);
        DeviceX dx(kMaxBatch, n_in);
        kernels::q8_quantize_x(d_x.get(), dx.q.get(), dx.meta.get(), kMaxBatch, n_in, stream.get());
        for (const Q8Kernel batch_kernel : {Q8Kernel::dp4a, Q8Kernel::mma}) {
            const auto batch = run_product(m, dx.q.get(), dx.meta.get(), kMaxBatch, batch_kernel, stream);
            for (const int j : {0, 1, 255, 510, 511})
                for (const Q8Kernel k : {Q8Kernel::dp4a, Q8Kernel::mma}) {
                    INFO(gguf::tensor_type_name(t) << " vector " << j << " alone (" << kernel_name(k)
                                                   << ") vs in the batch (" << kernel_name(batch_kernel) << ")");
                    const size_t off = static_cast<size_t>(j) * n_in;
                    const auto alone = run_product(m, dx.q.get() + off, dx.meta.get() + off / q8::kUnit, 1, k, stream);
                    CHECK(bit_mismatches(alone, batch, 1, rows, rows, j) == 0);
                }
        }
    }
}

TEST_CASE("q8 normed quantization then q8_product equals the CPU reference bit for bit", "[gpu][q8]") {
    test::TestStream stream;
    const int rows = 40, n_in = 1536, n_partials = kernels::norm_partial_count(n_in);
    const float eps = 1e-6f;
    for (const TensorType t : kernels::q8::kTypes)
        for (const int n_vec : {1, 13, 200}) {
            INFO(gguf::tensor_type_name(t) << " n_vec " << n_vec);
            const Matrix m(t, rows, n_in, rows, 130 + static_cast<uint32_t>(t));
            const auto xw = test::random_normal(static_cast<size_t>(n_vec) * n_in, 131, 0.f, 2.f);
            const auto s = test::random_uniform(static_cast<size_t>(n_vec) * n_partials, 132, 0.1f, 8.f);
            const auto want =
                kernels::q8_product_ref(m.tile_layout, m.tile_packed.data(),
                                        kernels::q8_quantize_x_normed_ref(xw.data(), s.data(), eps, n_vec, n_in));
            DeviceBuffer<float> d_xw(xw), d_s(s);
            DeviceX dx(n_vec, n_in);
            kernels::q8_quantize_x_normed(d_xw.get(), d_s.get(), eps, dx.q.get(), dx.meta.get(), n_vec, n_in,
                                          stream.get());
            for (const Q8Kernel k : {Q8Kernel::dp4a, Q8Kernel::mma}) {
                const auto y = run_product(m, dx.q.get(), dx.meta.get(), n_vec, k, stream);
                CHECK(bit_mismatches(y, want, n_vec, rows, rows) == 0);
            }
        }
}

TEST_CASE("q8 launch functions reject what they cannot do, naming the value", "[gpu][q8]") {
    test::TestStream stream;
    const int rows = 16, n_in = 256;
    const Matrix m(TensorType::Q4_0, rows, n_in, rows, 150);
    DeviceX dx(2, n_in);
    DeviceBuffer<float> y(static_cast<size_t>(2) * rows), x(static_cast<size_t>(2) * n_in);
    const auto product = [&](const kernels::Q8Matrix& w, const int8_t* xq, const q8::XMeta* xm, float* out, int n) {
        kernels::q8_product(w, xq, xm, out, n, Q8Kernel::automatic, stream.get());
    };
    CHECK_THROWS_WITH(product(m.view(), dx.q.get(), dx.meta.get(), y.get(), 0), test::contains("n_vec 0"));
    CHECK_THROWS_WITH(product(m.view(), dx.q.get(), dx.meta.get(), y.get(), kernels::kQ8MaxVectors + 1),
                      test::contains("n_vec 65536"));
    CHECK_THROWS_WITH(product(m.view(), dx.q.get() + 1, dx.meta.get(), y.get(), 1), test::contains("xq"));
    kernels::Q8Matrix shifted = m.view();
    shifted.data = m.device.get() + 16;
    CHECK_THROWS_WITH(product(shifted, dx.q.get(), dx.meta.get(), y.get(), 1), test::contains("W.data"));
    CHECK_THROWS_WITH(product(m.view(), dx.q.get(), dx.meta.get(), reinterpret_cast<float*>(dx.q.get()), 1),
                      test::contains("overlaps"));
    CHECK_THROWS_WITH(kernels::q8_quantize_x(x.get(), dx.q.get(), dx.meta.get(), 1, 200, stream.get()),
                      test::contains("n_in 200"));
    CHECK_THROWS_WITH(kernels::q8_quantize_swiglu(x.get(), dx.q.get(), dx.meta.get(), 1, 200, stream.get()),
                      test::contains("n_ff 200"));
    CHECK_THROWS_WITH(kernels::q8_quantize_swiglu(x.get(), dx.q.get(), dx.meta.get(), 0, 128, stream.get()),
                      test::contains("n_vec 0"));
    CHECK_THROWS_WITH(kernels::q8_quantize_swiglu(x.get(), dx.q.get() + 1, dx.meta.get(), 1, 128, stream.get()),
                      test::contains("xq"));
    const auto* unaligned = reinterpret_cast<const float*>(reinterpret_cast<const char*>(x.get()) + 2);
    CHECK_THROWS_WITH(kernels::q8_quantize_swiglu(unaligned, dx.q.get(), dx.meta.get(), 1, 128, stream.get()),
                      test::contains("gate_up"));
}
