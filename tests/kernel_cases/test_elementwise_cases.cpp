// The elementwise, argmax and embedding cases on the host: inputs seeded and zero-free, references
// equal to what each kernel's contract says element by element, bench shapes and byte counts as
// documented.
#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "catch.hpp"
#include "engine/cpu/cpu_ops.h"
#include "kernel_cases/argmax_cases.h"
#include "kernel_cases/elementwise_cases.h"
#include "kernel_cases/embedding_cases.h"

using namespace loom;
using gguf::TensorType;

namespace {

// Inputs of this many elements or fewer are generated twice and scanned (the largest cases only
// cost CI time).
constexpr size_t kScanLimit = 1 << 20;

size_t zeros(const std::vector<float>& v) { return static_cast<size_t>(std::count(v.begin(), v.end(), 0.f)); }

template <class Cases>
void check_distinct_seeds(const Cases& cases) {
    std::set<uint32_t> seeds;
    for (const auto& c : cases) seeds.insert(c.seed);
    CHECK(seeds.size() == cases.size());
}

bool all_finite(const std::vector<float>& v) {
    return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

double silu_times(double gate, double up) { return gate / (1.0 + std::exp(-gate)) * up; }

}  // namespace

TEST_CASE("the elementwise, argmax and embedding case lists are non-empty with distinct seeds", "[kernel_cases]") {
    CHECK(kcases::swiglu_test_cases().size() == 7);
    CHECK(kcases::swiglu_pairs_test_cases().size() == 5);
    CHECK(kcases::add_test_cases().size() == 8);
    CHECK(kcases::add_bias_test_cases().size() == 5);
    CHECK(kcases::gather_test_cases().size() == 4);
    CHECK(kcases::argmax_test_cases().size() == 6);
    CHECK(kcases::embedding_test_cases().size() == 3 + 8 + 9 + 10 + 2 + 6);
    check_distinct_seeds(kcases::swiglu_test_cases());
    check_distinct_seeds(kcases::swiglu_pairs_test_cases());
    check_distinct_seeds(kcases::add_test_cases());
    check_distinct_seeds(kcases::add_bias_test_cases());
    check_distinct_seeds(kcases::gather_test_cases());
    check_distinct_seeds(kcases::argmax_test_cases());
    check_distinct_seeds(kcases::embedding_test_cases());
    // add and add_bias draw their second input from seed + 1: the cases' seeds step by 2, so no two
    // inputs of a list share a seed.
    for (const auto& c : kcases::add_test_cases()) CHECK((c.seed - 900) % 2 == 0);
    for (const auto& c : kcases::add_bias_test_cases()) CHECK((c.seed - 950) % 2 == 0);
}

TEST_CASE("swiglu references are silu(gate) * up over seeded zero-free inputs", "[kernel_cases]") {
    for (const auto& c : kcases::swiglu_test_cases()) {
        if (static_cast<size_t>(c.n) > kScanLimit) continue;
        INFO(c.name());
        const auto [gate, up] = kcases::swiglu_inputs(c);
        CHECK(gate == kcases::swiglu_inputs(c).gate);
        CHECK(zeros(gate) + zeros(up) == 0);
        const auto ref = kcases::swiglu_reference(gate, up);
        REQUIRE(ref.size() == static_cast<size_t>(c.n));
        CHECK(all_finite(ref));
        size_t wrong = 0;
        for (size_t i = 0; i < ref.size(); ++i)
            wrong += std::abs(ref[i] - silu_times(gate[i], up[i])) <= 1e-5 * (1 + std::abs(ref[i])) ? 0 : 1;
        CHECK(wrong == 0);
    }
    for (const auto& c : kcases::swiglu_pairs_test_cases()) {
        INFO(c.name());
        const auto gate_up = kcases::swiglu_pairs_inputs(c);
        CHECK(gate_up == kcases::swiglu_pairs_inputs(c));
        CHECK(gate_up.size() == static_cast<size_t>(c.rows) * 2 * c.n);
        CHECK(zeros(gate_up) == 0);
        const auto ref = kcases::swiglu_pairs_reference(gate_up, c.rows, c.n);
        size_t wrong = 0;
        for (int r = 0; r < c.rows; ++r)
            for (int j = 0; j < c.n; ++j) {  // pair p = j / 2 holds [gate 2p, gate 2p+1, up 2p, up 2p+1]
                const float* pair = gate_up.data() + static_cast<size_t>(r) * 2 * c.n + 4 * (j / 2);
                float one = 0;
                engine::cpu::swiglu(pair + j % 2, pair + 2 + j % 2, &one, 1);
                wrong += ref[static_cast<size_t>(r) * c.n + j] == one ? 0 : 1;
            }
        CHECK(wrong == 0);
    }
}

TEST_CASE("add, add_bias and gather references are the exact sums and copies", "[kernel_cases]") {
    for (const auto& c : kcases::add_test_cases()) {
        if (static_cast<size_t>(c.n) > kScanLimit) continue;
        INFO(c.name());
        const auto [a, b] = kcases::add_inputs(c);
        CHECK(a == kcases::add_inputs(c).a);
        CHECK(a != b);
        CHECK(zeros(a) + zeros(b) == 0);
        const auto ref = kcases::add_reference(a, b);
        size_t wrong = 0;
        for (size_t i = 0; i < a.size(); ++i) wrong += ref[i] == a[i] + b[i] ? 0 : 1;
        CHECK(wrong == 0);
    }
    for (const auto& c : kcases::add_bias_test_cases()) {
        INFO(c.name());
        const auto [x, bias] = kcases::add_bias_inputs(c);
        CHECK(zeros(x) + zeros(bias) == 0);
        const auto ref = kcases::add_bias_reference(x, bias, c.rows, c.n);
        size_t wrong = 0;
        for (int r = 0; r < c.rows; ++r)
            for (int i = 0; i < c.n; ++i) {
                const size_t at = static_cast<size_t>(r) * c.n + i;
                wrong += ref[at] == x[at] + bias[i] ? 0 : 1;
            }
        CHECK(wrong == 0);
    }
    for (const auto& c : kcases::gather_test_cases()) {
        INFO(c.name());
        const auto src = kcases::gather_inputs(c);
        CHECK(zeros(src) == 0);
        for (const int32_t r : c.rows) CHECK((r >= 0 && r < c.src_rows));
        const auto ref = kcases::gather_reference(src, c);
        REQUIRE(ref.size() == c.rows.size() * static_cast<size_t>(c.width));
        for (size_t k = 0; k < c.rows.size(); ++k) {
            CHECK(ref[k * c.width] == src[c.rows[k] * c.width]);
            CHECK(ref[(k + 1) * c.width - 1] == src[(c.rows[k] + 1) * c.width - 1]);
        }
    }
}

TEST_CASE("the argmax reference gives the planted indices and each row's maximum", "[kernel_cases]") {
    for (const auto& p : kcases::argmax_planted_cases()) {
        INFO(p.name);
        REQUIRE(p.x.size() == static_cast<size_t>(p.rows) * p.n);
        CHECK(kcases::argmax_reference(p.x, p.rows, p.n) == p.expected);
    }
    for (const auto& c : kcases::argmax_test_cases()) {
        INFO(c.name());
        const auto x = kcases::argmax_inputs(c);
        CHECK(x == kcases::argmax_inputs(c));
        CHECK(zeros(x) == 0);
        const auto ref = kcases::argmax_reference(x, c.rows, c.n);
        for (int r = 0; r < c.rows; ++r) {
            const auto row = x.begin() + static_cast<std::ptrdiff_t>(r) * c.n;
            CHECK(ref[r] == std::max_element(row, row + c.n) - row);  // the first maximum
        }
    }
}

TEST_CASE("embedding tables, ids and reference rows are seeded and consistent", "[kernel_cases]") {
    for (const auto& c : kcases::embedding_test_cases()) {
        INFO(c.name());
        CHECK(c.n_embd % gguf::tensor_type_info(c.type).block_elems == 0);
        const auto ids = kcases::embedding_ids(c);
        CHECK(ids == kcases::embedding_ids(c));
        REQUIRE(ids.size() == static_cast<size_t>(c.n_tokens));
        CHECK(ids.front() == c.n_vocab - 1);
        if (c.n_tokens > 1) CHECK(ids[1] == 0);
        for (const int32_t id : ids) CHECK((id >= 0 && id < c.n_vocab));
        if (static_cast<uint64_t>(c.n_vocab) * c.n_embd > 2 * kScanLimit) continue;
        const auto table = kcases::embedding_table(c);
        CHECK(table.bytes == kcases::embedding_table(c).bytes);
        CHECK(table.bytes.size() == gguf::tensor_bytes(c.type, static_cast<uint64_t>(c.n_vocab) * c.n_embd));
        CHECK(zeros(table.values) < table.values.size() / 4 + 1);
        const auto ref = kcases::embedding_reference(table.values, ids, c.n_embd);
        REQUIRE(ref.size() == ids.size() * static_cast<size_t>(c.n_embd));
        for (size_t t = 0; t < ids.size(); ++t)
            CHECK(std::equal(ref.begin() + static_cast<std::ptrdiff_t>(t * c.n_embd),
                             ref.begin() + static_cast<std::ptrdiff_t>((t + 1) * c.n_embd),
                             table.values.begin() + static_cast<std::ptrdiff_t>(ids[t]) * c.n_embd));
    }
}

TEST_CASE("kernel_bench's elementwise, argmax and embedding shapes and bytes", "[kernel_cases]") {
    const auto smol = kcases::bench_model("smollm2-135m");
    CHECK(kcases::swiglu_bench_case(smol, 512).n == 512 * 1536);
    CHECK(kcases::swiglu_pairs_bench_case(smol, 1).n == 1536);
    CHECK(kcases::add_bench_case(smol, 1).n == 576);
    CHECK(kcases::add_bench_case(smol, 1).in_place);
    CHECK(kcases::add_bias_bench_case(kcases::bench_model("qwen2.5-0.5b"), 512).n == 896);
    const auto gather = kcases::gather_bench_case(smol, 32);
    CHECK(gather.rows.size() == 32);
    CHECK(gather.rows.front() == 15);
    CHECK(gather.rows.back() == 511);
    for (const auto& c : kcases::argmax_bench_cases(smol)) CHECK(c.n == 49152);
    const auto emb = kcases::embedding_bench_cases(smol);
    CHECK(emb.size() == kcases::embedding_types(smol).size() * std::size(kcases::kBenchTokens));
    for (const auto& c : emb) CHECK((c.n_vocab == 49152 && c.n_embd == 576));

    CHECK(kcases::swiglu_bytes(10) == 120);
    CHECK(kcases::add_bytes(10) == 120);
    CHECK(kcases::add_bias_bytes(2, 10) == 8.0 * 20 + 40);
    CHECK(kcases::gather_bytes(3, 10) == 12 + 8.0 * 30);
    CHECK(kcases::argmax_bytes(2, 10) == 80 + 8);
    CHECK(kcases::embedding_bytes(TensorType::Q8_0, 3, 32) == 3 * (34 + 128 + 4.0));
}
