// q8_repack_device (kernels/q8_matmul.h) against the host's q8_repack, byte for byte: every q8 type, odd row
// counts and the 8B-like 4096x4096, whole or (q8_repack_device_rows) a slice of rows at a time; the output poisoned
// with two patterns before each launch (a byte left unwritten differs from the host's under one of them) and the guard
// after it checked untouched.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "gguf/tensor_type.h"
#include "kernel_test_support.h"
#include "kernels/q8_matmul.h"
#include "kernels/q8_repack.h"

using namespace loom;
using gguf::TensorType;
using test::DeviceBuffer;

namespace {

size_t byte_mismatches(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want) {
    size_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i) bad += got[i] != want[i];
    return bad;
}

void check_repack(TensorType t, int rows, int n_in, uint32_t seed) {
    const auto w = kcases::random_matrix(t, rows, n_in, seed);
    const auto want = kernels::q8_repack(t, w.bytes.data(), rows, n_in);
    DeviceBuffer<uint8_t> in(w.bytes), out(want.size());
    test::TestStream stream;
    for (const unsigned char pattern : {0xA5, 0x5A}) {
        INFO(gguf::tensor_type_name(t) << " " << rows << "x" << n_in << " poison " << int{pattern});
        out.poison();  // the guard keeps test::kPoisonByte; the output gets `pattern`
        LOOM_CUDA_CHECK(cudaMemset(out.get(), pattern, want.size()));
        LOOM_CUDA_CHECK(cudaDeviceSynchronize());
        kernels::q8_repack_device(t, in.get(), rows, n_in, out.get(), stream.get());
        CHECK(byte_mismatches(out.download(), want) == 0);
        CHECK(out.guard_intact());
        CHECK(in.guard_intact());
    }
}

}  // namespace

TEST_CASE("q8_repack_device writes q8_repack's bytes: every type, odd row counts", "[gpu][q8]") {
    uint32_t seed = 300;
    for (const TensorType t : kernels::q8::kTypes)
        for (const int rows : {1, 33, 255})
            for (const int n_in : {256, 1280}) check_repack(t, rows, n_in, seed++);
    for (const TensorType t : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q8_0})
        check_repack(t, 33, 384, seed++);  // a legacy-only width: 3 quads
}

TEST_CASE("q8_repack_device writes q8_repack's bytes on the 8B shape 4096x4096", "[gpu][q8]") {
    uint32_t seed = 400;
    for (const TensorType t : kernels::q8::kTypes) check_repack(t, 4096, 4096, seed++);
}

TEST_CASE("q8_repack_device_rows, three slices of rows, writes q8_repack's bytes", "[gpu][q8]") {
    uint32_t seed = 420;
    test::TestStream stream;
    const int rows = 100, n_in = 512;
    for (const TensorType t : kernels::q8::kTypes) {
        INFO(gguf::tensor_type_name(t));
        const auto w = kcases::random_matrix(t, rows, n_in, seed++);
        const auto want = kernels::q8_repack(t, w.bytes.data(), rows, n_in);
        const size_t row_bytes = w.bytes.size() / rows;
        DeviceBuffer<uint8_t> in(w.bytes), out(want.size());
        out.poison();
        for (const auto& [row0, n] : {std::pair{0, 37}, {37, 53}, {90, 10}})
            kernels::q8_repack_device_rows(t, in.get() + row0 * row_bytes, row0, n, rows, n_in, out.get(),
                                           stream.get());
        CHECK(byte_mismatches(out.download(), want) == 0);
        CHECK(out.guard_intact());
    }
}

TEST_CASE("q8_repack_device rejects what it cannot do, naming the value", "[gpu][q8]") {
    test::TestStream stream;
    const int rows = 8, n_in = 256;
    const auto w = kcases::random_matrix(TensorType::Q4_0, rows, n_in, 450);
    const auto layout = kernels::q8_layout(TensorType::Q4_0, rows, n_in);
    DeviceBuffer<uint8_t> in(w.bytes), out(layout.bytes + 256);
    const auto repack = [&](TensorType t, const void* src, int r, int n, void* dst) {
        kernels::q8_repack_device(t, src, r, n, dst, stream.get());
    };
    CHECK_THROWS_WITH(repack(TensorType::Q4_0, in.get(), 0, n_in, out.get()), test::contains("rows 0"));
    CHECK_THROWS_WITH(repack(TensorType::Q4_0, in.get(), rows, 200, out.get()), test::contains("n_in 200"));
    CHECK_THROWS_WITH(repack(TensorType::Q4_K, in.get(), rows, 384, out.get()), test::contains("n_in 384"));
    CHECK_THROWS_WITH(repack(TensorType::F16, in.get(), rows, n_in, out.get()), test::contains("F16"));
    CHECK_THROWS_WITH(repack(TensorType::Q4_0, in.get(), rows, n_in, out.get() + 16), test::contains("256-byte"));
    CHECK_THROWS_WITH(repack(TensorType::Q4_0, out.get(), rows, n_in, out.get()), test::contains("overlaps"));
    CHECK_THROWS_WITH(
        kernels::q8_repack_device_rows(TensorType::Q4_0, in.get(), 5, 4, rows, n_in, out.get(), stream.get()),
        test::contains("outside"));
}
