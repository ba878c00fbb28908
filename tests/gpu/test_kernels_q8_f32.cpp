// q8_product_f32 (kernels/q8_matmul.h): the f32 family over repacked weights against an f64 reference of the
// dequantized weights (NMSE <= 1e-6, the f32 paths' bound), each vector bit for bit the same alone and in a
// batch, on the four types it takes, a width with a partial last pass (640) and the 8B width; outputs
// poisoned, guards checked.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "catch.hpp"
#include "gguf/tensor_type.h"
#include "kernel_cases/matvec_cases.h"
#include "kernel_test_support.h"
#include "kernels/q8_matmul.h"
#include "kernels/q8_repack.h"

using namespace loom;
using gguf::TensorType;
using test::DeviceBuffer;

namespace {

// Y of the first n vectors of d_x into a fresh poisoned buffer; checks every element written and the guard.
std::vector<float> product(const kernels::Q8Matrix& w, const float* d_x, int n, const test::TestStream& stream) {
    DeviceBuffer<float> y(static_cast<size_t>(n) * w.layout.rows);
    y.poison();
    kernels::q8_product_f32(w, d_x, y.get(), n, stream.get());
    const auto out = y.download();
    CHECK(test::count_unwritten(out) == 0);
    CHECK(y.guard_intact());
    return out;
}

}  // namespace

TEST_CASE("q8_product_f32 is within f32 accuracy of f64 and batch invariant bit for bit", "[gpu][q8]") {
    test::TestStream stream;
    uint32_t seed = 800;
    for (const TensorType t : {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q6_K})
        for (const auto& [rows, n_in] : {std::pair{37, 4096}, {37, 1280}, {300, 640}}) {
            if (n_in == 640 && (t == TensorType::Q4_K || t == TensorType::Q6_K)) continue;  // 256-element blocks
            INFO(gguf::tensor_type_name(t) << " " << rows << "x" << n_in);
            const int max_n = 13;
            const auto w = kcases::random_matrix(t, rows, n_in, seed++);
            const auto x = test::random_uniform(static_cast<size_t>(max_n) * n_in, seed++, -1.f, 1.f);
            const auto packed = kernels::q8_repack(t, w.bytes.data(), rows, n_in);
            DeviceBuffer<uint8_t> d_w(packed);
            DeviceBuffer<float> d_x(x);
            const kernels::Q8Matrix m{kernels::q8_layout(t, rows, n_in), d_w.get()};
            const auto all = product(m, d_x.get(), max_n, stream);
            const std::vector<double> x64(x.begin(), x.end());
            const double err = test::nmse(all, kcases::matvec_reference(w, x64, rows, n_in, max_n));
            test::report_nmse(
                "q8_product_f32",
                std::string(gguf::tensor_type_name(t)) + " " + std::to_string(rows) + "x" + std::to_string(n_in), err);
            CHECK(err <= 1e-6);
            for (const int n : {1, 3, 8}) {  // vector v of a batch of n equals vector v of the batch of 13
                const auto some = product(m, d_x.get(), n, stream);
                CHECK(std::memcmp(some.data(), all.data(), some.size() * sizeof(float)) == 0);
            }
            CHECK(d_w.guard_intact());
        }
}

TEST_CASE("q8_product_f32 rejects what it cannot do, naming the value", "[gpu][q8]") {
    test::TestStream stream;
    const int rows = 16, n_in = 256;
    const auto w = kcases::random_matrix(TensorType::Q4_1, rows, n_in, 850);
    DeviceBuffer<uint8_t> d_w(kernels::q8_repack(TensorType::Q4_1, w.bytes.data(), rows, n_in));
    DeviceBuffer<float> x(2 * n_in + 4), y(2 * rows);
    const kernels::Q8Matrix q41{kernels::q8_layout(TensorType::Q4_1, rows, n_in), d_w.get()};
    CHECK_THROWS_WITH(kernels::q8_product_f32(q41, x.get(), y.get(), 1, stream.get()), test::contains("Q4_1"));
    const auto w0 = kcases::random_matrix(TensorType::Q4_0, rows, n_in, 851);
    DeviceBuffer<uint8_t> d_w0(kernels::q8_repack(TensorType::Q4_0, w0.bytes.data(), rows, n_in));
    const kernels::Q8Matrix q40{kernels::q8_layout(TensorType::Q4_0, rows, n_in), d_w0.get()};
    CHECK_THROWS_WITH(kernels::q8_product_f32(q40, x.get() + 1, y.get(), 1, stream.get()), test::contains("X"));
    CHECK_THROWS_WITH(kernels::q8_product_f32(q40, x.get(), y.get(), 0, stream.get()), test::contains("n_vec 0"));
    CHECK_THROWS_WITH(kernels::q8_product_f32(q40, x.get(), x.get() + 4, 1, stream.get()), test::contains("overlaps"));
}
