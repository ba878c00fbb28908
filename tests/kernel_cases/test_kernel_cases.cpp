// The kernel cases on the host (no GPU): inputs are seeded and zero-free, every case list is
// well-formed, the references agree with the engine's CPU code and with exact properties, and the
// byte counts and bench names keep their meaning.
#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "catch.hpp"
#include "engine/cpu/cpu_ops.h"
#include "engine/cpu/thread_pool.h"
#include "kernel_cases/attention_cases.h"
#include "kernel_cases/embedding_cases.h"
#include "kernel_cases/gemm_cases.h"
#include "kernel_cases/matvec_cases.h"
#include "kernel_cases/rmsnorm_cases.h"
#include "kernel_cases/rope_cases.h"

using namespace loom;
using gguf::TensorType;

namespace {

size_t zeros(const std::vector<float>& v) { return static_cast<size_t>(std::count(v.begin(), v.end(), 0.f)); }

double nmse(const std::vector<float>& out, const std::vector<double>& ref) {
    double err = 0, norm = 0;
    for (size_t i = 0; i < out.size(); ++i) {
        err += (out[i] - ref[i]) * (out[i] - ref[i]);
        norm += ref[i] * ref[i];
    }
    return err / norm;
}

// Every case of a list names a distinct seed, so no two cases see the same inputs.
template <class Cases>
void check_distinct_seeds(const Cases& cases) {
    std::set<uint32_t> seeds;
    for (const auto& c : cases) seeds.insert(c.seed);
    CHECK(seeds.size() == cases.size());
}

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

}  // namespace

TEST_CASE("kernel inputs are the same for a seed, differ across seeds and hold no zero", "[kernel_cases]") {
    const auto a = kcases::random_uniform(100000, 7, -1.f, 1.f), b = kcases::random_uniform(100000, 7, -1.f, 1.f);
    CHECK(a == b);
    CHECK(a != kcases::random_uniform(100000, 8, -1.f, 1.f));
    CHECK(zeros(a) == 0);
    CHECK(zeros(kcases::random_normal(100000, 9, 0.f, 1e-3f)) == 0);
    const auto m = kcases::random_matrix(TensorType::Q4_K, 4, 256, 11);
    CHECK(m.bytes == kcases::random_matrix(TensorType::Q4_K, 4, 256, 11).bytes);
    CHECK(m.bytes.size() == gguf::tensor_bytes(TensorType::Q4_K, 4 * 256));
    CHECK(zeros(m.values) < m.values.size() / 4);  // 4-bit codes may round a few weights to 0, not most
}

TEST_CASE("every case list is non-empty with distinct seeds", "[kernel_cases]") {
    for (const auto& list : {kcases::matvec_block32_cases(), kcases::matvec_kquant_cases(), kcases::matvec_half_cases(),
                             kcases::matvec_f32_cases(), kcases::matvec_output_cases(), kcases::matvec_batched_cases(),
                             kcases::matvec_batch_invariance_cases()}) {
        CHECK_FALSE(list.empty());
        check_distinct_seeds(list);
    }
    check_distinct_seeds(kcases::fused_chain_cases());
    check_distinct_seeds(kcases::gemm_test_cases());
    check_distinct_seeds(kcases::gemm_prefill_cases());
    check_distinct_seeds(kcases::rmsnorm_test_cases());
    check_distinct_seeds(kcases::add_rmsnorm_test_cases());
    check_distinct_seeds(kcases::rope_test_cases());
    check_distinct_seeds(kcases::decode_test_cases());
    check_distinct_seeds(kcases::prefill_test_cases());
    CHECK(kcases::decode_head_grid_cases().size() == 8 * 3 * 2 * 2);  // head sizes x GQA ratios x cache types x lens
    CHECK(kcases::prefill_head_grid_cases().size() == 8 * 3 * 2 * 2);
}

TEST_CASE("the matvec and gemm references agree with the engine's f32 matmul", "[kernel_cases]") {
    engine::cpu::ThreadPool pool(2);
    for (const kcases::MatvecCase c :
         {kcases::MatvecCase{TensorType::Q4_0, 37, 96, 3, 1}, kcases::MatvecCase{TensorType::Q6_K, 20, 512, 2, 2},
          kcases::MatvecCase{TensorType::F16, 5, 33, 4, 3}}) {
        INFO(c.name());
        const auto in = kcases::matvec_inputs(c);
        CHECK(zeros(in.x) == 0);
        const auto ref = kcases::matvec_reference(in.w, widen(in.x), c.n_out, c.n_in, c.n_vec);
        std::vector<float> y(ref.size());
        engine::cpu::matmul(pool, in.w.values.data(), in.x.data(), y.data(), c.n_vec, c.n_in, c.n_out);
        CHECK(nmse(y, ref) < 1e-12);
        const auto g = kcases::gemm_reference(in.w.values, in.x, c.n_in, c.n_out, c.n_vec);
        CHECK(g.exact == ref);  // the same f64 sums in the same order
        CHECK(nmse(std::vector<float>(g.f16.begin(), g.f16.end()), ref) < kcases::kGemmMaxNmse);
    }
}

TEST_CASE("the hi + lo split reference stays within its bound, where one rounding does not", "[kernel_cases]") {
    using kernels::HalfType;
    const auto x = kcases::split_inputs(20000, 31);
    CHECK(zeros(x) == 0);
    for (const HalfType type : {HalfType::f16, HalfType::bf16}) {
        INFO((type == HalfType::f16 ? "f16" : "bf16"));
        const auto s = kcases::split_reference(type, x);
        size_t over = 0, over_hi_alone = 0, inf = 0;
        for (size_t i = 0; i < x.size(); ++i) {
            const double sum = kcases::split_value(type, s.hi[i], s.lo[i]);
            if (std::isinf(sum)) {  // fp16 overflow: the sum is the one rounding's inf, never NaN
                CHECK(std::abs(x[i]) >= 65520.f);
                CHECK(sum == (x[i] > 0 ? INFINITY : -INFINITY));
                ++inf;
                continue;
            }
            const double bound = kcases::split_error_bound(type, x[i]);
            over += std::abs(sum - x[i]) > bound ? 1 : 0;
            over_hi_alone += std::abs(kcases::split_value(type, s.hi[i], 0) - x[i]) > bound ? 1 : 0;
        }
        CHECK(over == 0);
        CHECK(over_hi_alone > x.size() / 2);  // the bound is tight enough to need lo
        const auto past_f16 = std::count_if(x.begin(), x.end(), [](float v) { return std::abs(v) >= 65520.f; });
        CHECK(past_f16 >= 2);  // the edges 65520 and -7e4 at least
        CHECK(inf == (type == HalfType::f16 ? static_cast<size_t>(past_f16) : 0u));
    }
}

TEST_CASE("the rmsnorm reference is engine::cpu::rmsnorm and matches its f64 form", "[kernel_cases]") {
    const kcases::RmsnormCase c{3, 100, 1e-5f, false, 42};
    const auto [x, w] = kcases::rmsnorm_inputs(c);
    const auto ref = kcases::rmsnorm_reference(x, w, c.rows, c.n, c.eps);
    CHECK(ref == kcases::rmsnorm_reference(x, w, c.rows, c.n, c.eps));
    CHECK(nmse(ref, kcases::rmsnorm_reference_f64(widen(x), w, c.n, c.eps)) < 1e-12);
}

TEST_CASE("the rope reference rotates every q and k pair, keeping its length, and leaves v alone", "[kernel_cases]") {
    for (const auto& c : kcases::rope_test_cases()) {
        INFO(c.name());
        const auto in = kcases::rope_inputs(c);
        CHECK(in.positions.front() == c.max_pos);
        const auto ref = kcases::rope_reference(c, in);
        CHECK(ref.q != in.q);
        double before = 0, after = 0;
        for (size_t i = 0; i < in.q.size(); ++i) {
            before += static_cast<double>(in.q[i]) * in.q[i];
            after += static_cast<double>(ref.q[i]) * ref.q[i];
        }
        CHECK(std::abs(after - before) <= 1e-5 * before);
        if (c.fused)
            for (int t = 0; t < c.n_tokens; ++t)
                for (int i = c.q_dim() + c.kv_dim(); i < c.q_stride(); ++i) {
                    const size_t at = static_cast<size_t>(t) * c.q_stride() + i;
                    CHECK(ref.q[at] == in.q[at]);
                }
    }
}

TEST_CASE("paged attention inputs use distinct blocks; one key gives back its value", "[kernel_cases]") {
    const kcases::Heads h = kcases::kSmol;
    const auto in = kcases::paged_inputs(h, {1, 16, 17, 33}, 900, kernels::KvType::f16);
    std::set<int32_t> used;
    for (const int32_t b : in.tables)
        if (b >= 0) {
            CHECK(b < in.n_blocks);
            used.insert(b);
        }
    CHECK(used.size() == 1 + 1 + 2 + 3);
    CHECK(in.kref[3][5 * in.kv_dim] == kcases::cached(in.rows[3][5 * in.F + in.q_dim], kernels::KvType::f16));
    // A query at position 0 sees one key: softmax weight 1, so each head's output is its KV head's value.
    const auto out = kcases::attention_reference(h, in.rows[0].data(), in.kref[0].data(), in.vref[0].data(), 1, 0);
    for (int head = 0; head < h.n_head; ++head)
        for (int e = 0; e < h.head_dim; ++e)
            CHECK(out[static_cast<size_t>(head) * h.head_dim + e] ==
                  in.vref[0][static_cast<size_t>(head / (h.n_head / h.n_head_kv)) * h.head_dim + e]);
}

TEST_CASE("kernel_bench's shapes and byte counts keep their names and values", "[kernel_cases]") {
    const auto smol = kcases::bench_model("smollm2-135m");
    const auto cases = kcases::matvec_bench_cases(smol);
    const auto q4 = std::find_if(cases.begin(), cases.end(), [](const auto& n) { return n.label == "q/q4_0/nvec:1"; });
    REQUIRE(q4 != cases.end());
    CHECK(std::tie(q4->c.n_out, q4->c.n_in, q4->c.n_vec) == std::tuple{576, 576, 1});
    CHECK(std::any_of(cases.begin(), cases.end(), [](const auto& n) { return n.role == "output"; }));
    for (const auto& n : kcases::fused_matvec_bench_cases(smol))
        CHECK((n.role == "q" || n.role == "gate" || n.role == "o" || n.role == "down"));
    CHECK_THROWS_AS(kcases::bench_model("gpt-2"), std::invalid_argument);
    CHECK(kcases::rope_bench_case(kcases::bench_model("qwen2.5-0.5b"), 1).mode == engine::RopeMode::NeoX);

    CHECK(kcases::matvec_bytes(TensorType::Q8_0, 32, 1, 1) == 34 + 4.0 * 33);  // one block, x in, y out
    CHECK(kcases::fused_matvec_bytes(TensorType::Q8_0, 32, 1, 1, true) == 34 + 4.0 * 35);
    CHECK(kcases::rmsnorm_bytes(2, 10) == 8.0 * 20 + 40);
    CHECK(kcases::decode_attention_bytes(1, 16, 64, 32, kernels::KvType::f32) ==
          2 * kcases::decode_attention_bytes(1, 16, 0, 32, kernels::KvType::f16) + 8.0 * 64);
    CHECK(kcases::embedding_bytes(TensorType::F32, 2, 8) == 2 * (32 + 32 + 4.0));
    CHECK(kcases::gemm_flops(4, 3, 2) == 48);
    // W 2 x 4, X 3 x 4, Y 3 x 2: fp16 W read twice, X read and split (hi, lo written and read), Y three times.
    CHECK(kcases::gemm_bytes(TensorType::F16, 4, 2, 3) == 2 * 16.0 + 12.0 * 12 + 3 * 24.0);
}
