// The q8 family on the GPU (kernels/q8_matmul.h) against its CPU reference (kernels/q8_repack.h), bit for
// bit: x quantization (plain and normed), and both product kernels for every type and n_vec from 1 to 512,
// on odd row counts and on Llama-3-8B shapes; outputs poisoned before each launch and guards checked after.
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch.hpp"
#include "gguf/tensor_type.h"
#include "kernel_test_support.h"
#include "kernels/matvec.h"
#include "kernels/q8_matmul.h"
#include "kernels/q8_repack.h"

using namespace loom;
using gguf::TensorType;
using kernels::Q8Kernel;
using test::DeviceBuffer;
namespace q8 = kernels::q8;

namespace {

constexpr TensorType kTypes[] = {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q8_0,
                                 TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K};
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

TEST_CASE("q8_product equals the CPU emulation bit for bit: every type, kernel and n_vec 1 to 512, 33 rows",
          "[gpu][q8]") {
    const std::vector<int> batches(std::begin(kBatches), std::end(kBatches));
    for (const TensorType t : kTypes) check_batches(t, 33, 1280, 33, batches, 50 + static_cast<uint32_t>(t));
}

TEST_CASE("q8_product equals the CPU emulation on Llama-3-8B shapes (4096x4096, 14336 -> 4096)", "[gpu][q8]") {
    for (const TensorType t : kTypes) {
        check_batches(t, 4096, 4096, 64, {1, 8, 64}, 70 + static_cast<uint32_t>(t));
        check_batches(t, 4096, 14336, 64, {1, 13}, 90 + static_cast<uint32_t>(t));
    }
}

TEST_CASE("q8_product gives vector j alone the bits it gets inside a batch of 512", "[gpu][q8]") {
    test::TestStream stream;
    const int rows = 77, n_in = 2048;
    for (const TensorType t : kTypes) {
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
    for (const TensorType t : kTypes)
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
}
