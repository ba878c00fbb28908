// loom against Hugging Face transformers on the oracle models (tests/reference/oracle_expected.json):
// teacher-forced along transformers' greedy path, every step's argmax must be transformers' id and
// its log-probability within a bound. Cases for each backend under test (support/backends.h): cpu;
// cuda with its default KV cache (f32 for these unquantized models), f32 and fp16 asked for, where it
// also checks that an unsupported head size is refused at load. On the Q8_0 and Q4_K variants, cuda
// against the CPU backend emulating its int8 activations, and apart the cost of those activations.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch.hpp"
#include "engine/errors.h"
#include "engine/kv_manager.h"
#include "engine/make_backend.h"
#include "gguf/reader.h"
#include "engine/memory_budget.h"
#include "engine/q8_policy.h"
#include "kernels/q8_repack.h"
#include "support/backends.h"
#include "support/oracle_models.h"
#include "support/test_data.h"

using namespace loom;

namespace {

// The CPU backend computes in f32 throughout, as transformers does: only summation order differs
// (measured here: at most 5.1e-5 nats over the 24 models; issue 20 found <= 3.5e-4 at other sizes).
constexpr double kMaxCpuDelta = 3.5e-4;

struct Expected {
    std::string name;
    std::vector<int32_t> prompt, ids;
    std::vector<double> logprobs, gaps;
};

std::vector<Expected> load_expected() {
    const std::string path = std::string(LOOM_SOURCE_DIR) + "/tests/reference/oracle_expected.json";
    std::ifstream in(path);
    REQUIRE(in.good());
    const auto doc = nlohmann::json::parse(in);
    std::vector<Expected> out;
    for (const auto& m : doc.at("models"))
        out.push_back({m.at("name"), m.at("prompt_ids"), m.at("ids"), m.at("logprobs"), m.at("top2_gaps")});
    return out;
}

// The oracle model file of `spec`, written on first use into this program's temporary folder.
std::filesystem::path model_file(const test::OracleSpec& spec) {
    static const std::filesystem::path dir = test::temp_dir();
    const std::filesystem::path path = dir / (spec.name() + ".gguf");
    if (!std::filesystem::exists(path)) test::write_oracle_model(spec, path);
    return path;
}

const test::OracleSpec& spec_named(const std::string& name) {
    static const std::vector<test::OracleSpec> specs = test::oracle_specs();
    const auto it = std::find_if(specs.begin(), specs.end(), [&](const auto& s) { return s.name() == name; });
    REQUIRE(it != specs.end());
    return *it;
}

struct Agreement {
    double max_delta = 0;     // max |log p(loom) - log p(transformers)| of transformers' greedy ids
    int first_mismatch = -1;  // first step whose argmax differs, -1: none
    std::vector<double> logprobs;
};

// The logits before each of transformers' greedy ids: the prompt in one prefill pass, then the ids
// one at a time (decode steps).
std::vector<std::vector<float>> teacher_forced_logits(engine::Backend& backend, const Expected& e) {
    std::vector<std::vector<float>> rows(e.ids.size(),
                                         std::vector<float>(static_cast<size_t>(backend.config().n_vocab)));
    engine::KvManager kv(backend);
    kv.forward(e.prompt, rows[0], false);
    for (size_t t = 1; t < e.ids.size(); ++t) kv.forward(std::span<const int32_t>(&e.ids[t - 1], 1), rows[t], false);
    return rows;
}

Agreement compare(engine::Backend& backend, const Expected& e) {
    const std::vector<std::vector<float>> rows = teacher_forced_logits(backend, e);
    Agreement a;
    for (size_t t = 0; t < e.ids.size(); ++t) {
        const std::vector<float>& logits = rows[t];
        const auto top = std::max_element(logits.begin(), logits.end());
        double sum = 0;
        for (const float x : logits) sum += std::exp(double(x) - *top);
        const double lp = double(logits[static_cast<size_t>(e.ids[t])]) - *top - std::log(sum);
        a.logprobs.push_back(lp);
        a.max_delta = std::max(a.max_delta, std::abs(lp - e.logprobs[t]));
        if (a.first_mismatch < 0 && top - logits.begin() != e.ids[t]) a.first_mismatch = static_cast<int>(t);
    }
    return a;
}

double min_gap(const Expected& e) { return *std::min_element(e.gaps.begin(), e.gaps.end()); }

Agreement check_against_oracle(const std::string& backend, std::optional<engine::KvCacheType> kv_type,
                               const Expected& e, double bound) {
    const gguf::File file = gguf::File::open(model_file(spec_named(e.name)));
    engine::BackendOptions options{.n_ctx = 64, .threads = 2};
    options.kv_type = kv_type;
    const auto b = engine::make_backend(backend, file, options);
    const engine::KvCacheType used = kv_type.value_or(engine::default_kv_cache_type(backend, file));
    CHECK(std::string(b->kv_capacity().type) == engine::to_string(used));
    const Agreement a = compare(*b, e);
    const std::string kv = " kv " + std::string(engine::to_string(used)) + (kv_type ? "" : "*");
    std::printf("[oracle] %-5s%-9s %-16s max |dlogprob| %.2e (bound %.1e), argmax %s, min top-2 gap %.3f\n",
                backend.c_str(), kv.c_str(), e.name.c_str(), a.max_delta, bound,
                a.first_mismatch < 0 ? "equal" : ("differs at " + std::to_string(a.first_mismatch)).c_str(),
                min_gap(e));
    INFO(e.name << kv);
    CHECK(a.first_mismatch == -1);
    CHECK(a.max_delta <= bound);
    return a;
}

}  // namespace

TEST_CASE("the CPU backend agrees with transformers on the oracle models", "[engine][oracle]") {
    for (const std::string& kind : test::tested_backends({"cpu"})) DYNAMIC_SECTION(kind) {
            const auto expected = load_expected();
            REQUIRE(expected.size() == test::oracle_specs().size());
            for (const Expected& e : expected) check_against_oracle(kind, std::nullopt, e, kMaxCpuDelta);
        }
}

// Issue 20's acceptance bounds, for F32 and F16 weights alike: 1e-2 with the default KV cache type,
// 1e-3 with an f32 one (the default for these unquantized models, so it must meet 1e-3 too; the
// prefill GEMM of F16 weights keeps ~22 bits of each activation). An fp16 cache asked for explicitly
// measured up to 1.8e-2 (llama, qwen2; H100, 2026-12-06): it gets 5e-2.
constexpr double kMaxCudaDeltaDefaultKv = 1e-2;
constexpr double kMaxCudaDeltaF32Kv = 1e-3;
constexpr double kMaxCudaDeltaF16Kv = 5e-2;

bool f16_weights(const Expected& e) { return e.name.ends_with("-f16"); }

// max |a - b| over the steps.
double max_diff(const Agreement& a, const Agreement& b) {
    double d = 0;
    for (size_t t = 0; t < a.logprobs.size(); ++t) d = std::max(d, std::abs(a.logprobs[t] - b.logprobs[t]));
    return d;
}

TEST_CASE("the CUDA backend agrees with transformers on the oracle models", "[gpu][oracle]") {
    for (const std::string& kind : test::tested_backends({"cuda"})) DYNAMIC_SECTION(kind) {
            double sum_f16 = 0, sum_f32 = 0;  // CUDA vs CPU on the F32-weight models, summed
            for (const Expected& e : load_expected()) {
                const Agreement cpu = check_against_oracle("cpu", std::nullopt, e, kMaxCpuDelta);
                const Agreement def = check_against_oracle(kind, std::nullopt, e, kMaxCudaDeltaDefaultKv);
                const Agreement f16 = check_against_oracle(kind, engine::KvCacheType::f16, e, kMaxCudaDeltaF16Kv);
                const Agreement f32 = check_against_oracle(kind, engine::KvCacheType::f32, e, kMaxCudaDeltaF32Kv);
                const double d_def = max_diff(def, cpu), d16 = max_diff(f16, cpu), d32 = max_diff(f32, cpu);
                std::printf("[oracle] cuda vs cpu %-16s max |dlogprob|: kv default %.2e, kv f16 %.2e, kv f32 %.2e\n",
                            e.name.c_str(), d_def, d16, d32);
                CHECK(d32 <= kMaxCudaDeltaF32Kv);
                CHECK(d_def <= kMaxCudaDeltaDefaultKv);
                if (f16_weights(e)) continue;
                sum_f16 += d16;
                sum_f32 += d32;
            }
            std::printf("[oracle] cuda vs cpu, summed over the F32 models: kv f16 %.2e, kv f32 %.2e\n", sum_f16,
                        sum_f32);
            CHECK(sum_f32 < sum_f16);  // the f32 cache removes the fp16 rounding of K and V
        }
}

TEST_CASE("the CUDA backend refuses an unsupported head size before allocating anything", "[gpu][oracle]") {
    for (const std::string& kind : test::tested_backends({"cuda"})) DYNAMIC_SECTION(kind) {
            // The oracle llama with head_dim 72: a budget of 1 byte would fail the VRAM plan
            // (MemoryBudgetError), so a ModelError naming head_dim proves the check runs first.
            const std::filesystem::path path = test::temp_dir() / "hd72.gguf";
            test::write_oracle_model({"llama", 72}, path);
            const gguf::File file = gguf::File::open(path);
            engine::BatchLimits limits;
            limits.vram_budget = 1;
            CHECK_THROWS_WITH(engine::make_backend(kind, file, {.n_ctx = 64, .limits = limits}),
                              test::contains("head_dim 72") && test::contains("llama.attention.key_length"));
            CHECK_THROWS_AS(engine::make_backend(kind, file, {.n_ctx = 64, .limits = limits}), engine::ModelError);
            const gguf::File ok = gguf::File::open(model_file(spec_named("llama-hd64")));
            CHECK_THROWS_AS(engine::make_backend(kind, ok, {.n_ctx = 64, .limits = limits}), engine::MemoryBudgetError);
        }
}

// Logits `got` against `ref` step by step: the worst NMSE of one step, and the steps whose argmax agree.
struct LogitsMatch {
    double worst_nmse = 0;
    int agree = 0, steps = 0;
    void add(const LogitsMatch& m) {
        worst_nmse = std::max(worst_nmse, m.worst_nmse);
        agree += m.agree;
        steps += m.steps;
    }
};

LogitsMatch match(const std::vector<std::vector<float>>& got, const std::vector<std::vector<float>>& ref) {
    LogitsMatch m;
    const auto argmax = [](const std::vector<float>& v) { return std::max_element(v.begin(), v.end()) - v.begin(); };
    for (size_t t = 0; t < ref.size(); ++t) {
        double err = 0, norm = 0;
        for (size_t i = 0; i < ref[t].size(); ++i) {
            err += (double(got[t][i]) - ref[t][i]) * (double(got[t][i]) - ref[t][i]);
            norm += double(ref[t][i]) * ref[t][i];
        }
        m.worst_nmse = std::max(m.worst_nmse, err / norm);
        m.agree += argmax(got[t]) == argmax(ref[t]) ? 1 : 0;
        ++m.steps;
    }
    return m;
}

void print_match(const char* what, const std::string& model, const LogitsMatch& m) {
    std::printf("[oracle] %s %-16s max logits NMSE %.2e, argmax %d/%d\n", what, model.c_str(), m.worst_nmse, m.agree,
                m.steps);
}

// A quantized oracle model's path: its F32 model's transformers path.
const Expected& path_of(const test::OracleSpec& spec, const std::vector<Expected>& expected) {
    const std::string name = spec.arch + "-hd" + std::to_string(spec.head_dim);
    const auto e = std::find_if(expected.begin(), expected.end(), [&](const Expected& x) { return x.name == name; });
    REQUIRE(e != expected.end());
    return *e;
}

// The CUDA backend takes every q8-eligible layer matrix through int8 activations for decode rows and
// prefill parts of up to 8 rows (engine/q8_policy.h); the oracle paths prefill 12 rows, then decode.
// Like with like: against the CPU backend emulating those activations (cpu_q8_emulation), the cuda side
// with an f32 KV cache as the CPU's. Only float summation order then differs, but an int8 rounding it
// flips moves these random-weight models' logits far: the emulation against itself with its quantized
// inputs perturbed by +-1e-7 .. 1e-6 relative measured worst NMSE 2.1e-3 .. 3.8e-3, argmax 573 .. 567 of
// 576 (CPU, 2026-12-07), already past gpu_cuda_backend_tests' 1e-3 and 99 %. On an H100 (2026-12-07) cuda
// measured worst 1.2e-2 (qwen2-hd64-q4_k; qwen3's models <= 1.1e-3), argmax 547/576 (95 %): more than the
// perturbation model, as attention, norms and SwiGLU also sum in other orders. Hence 2.5e-2 and 92 %,
// which still catch a policy drift (the emulation also quantizing the 12-row prefills: 3.4e-2, 524/576)
// but not an fp16 KV cache on one side (1.8e-2, 552/576): these models cannot tell that one apart.
constexpr double kMaxQ8LikeNmse = 2.5e-2;
constexpr double kMinQ8LikeArgmax = 0.92;
// The cost of int8 activations, measured apart: cuda as it ships (an fp16 KV cache for quantized models)
// against the plain f32 CPU backend. These random-weight models amplify perturbations ~20x (on the F32
// models the fp16 KV rounding alone moves log-probs by ~1e-2): the CPU emulation against the plain CPU
// measured worst NMSE 9.9e-2, argmax 544/576 (94 %; with fp16 KV rounding too 9.2e-2, 538/576), cuda on
// an H100 8.1e-2, 538/576. The bounds leave margin.
constexpr double kMaxQ8CostNmse = 0.2;
constexpr double kMinQ8CostArgmax = 0.85;

TEST_CASE("the CUDA backend equals the CPU backend on Q8_0 and Q4_K oracle models", "[gpu][oracle]") {
    for (const std::string& kind : test::tested_backends({"cuda"})) DYNAMIC_SECTION(kind) {
            const std::vector<Expected> expected = load_expected();
            LogitsMatch like, cost;
            for (const test::OracleSpec& spec : test::oracle_quantized_specs()) {
                const Expected& e = path_of(spec, expected);
                const gguf::File file = gguf::File::open(model_file(spec));
                const auto cpu = engine::make_backend("cpu", file, {.n_ctx = 64, .threads = 2});
                const auto cpu_q8 =
                    engine::make_backend("cpu", file, {.n_ctx = 64, .threads = 2, .cpu_q8_emulation = true});
                const auto cuda_f32_kv =
                    engine::make_backend(kind, file, {.n_ctx = 64, .kv_type = engine::KvCacheType::f32});
                const auto cuda = engine::make_backend(kind, file, {.n_ctx = 64});
                const LogitsMatch l = match(teacher_forced_logits(*cuda_f32_kv, e), teacher_forced_logits(*cpu_q8, e));
                const LogitsMatch c = match(teacher_forced_logits(*cuda, e), teacher_forced_logits(*cpu, e));
                print_match("cuda kv f32 vs cpu q8-emulated", spec.name(), l);
                print_match("cuda (q8 cost) vs plain cpu   ", spec.name(), c);
                like.add(l);
                cost.add(c);
            }
            print_match("cuda kv f32 vs cpu q8-emulated", "quantized, all", like);
            print_match("cuda (q8 cost) vs plain cpu   ", "quantized, all", cost);
            CHECK(like.worst_nmse <= kMaxQ8LikeNmse);
            CHECK(like.agree >= kMinQ8LikeArgmax * like.steps);
            CHECK(cost.worst_nmse <= kMaxQ8CostNmse);
            CHECK(cost.agree >= kMinQ8CostArgmax * cost.steps);
        }
}

// The logits of every row of one forward pass of `tokens` from an empty cache.
std::vector<float> forward_rows(engine::Backend& backend, std::span<const int32_t> tokens) {
    std::vector<float> logits(tokens.size() * static_cast<size_t>(backend.config().n_vocab));
    engine::KvManager kv(backend);
    kv.forward(tokens, logits, true);
    return logits;
}

// cpu_q8_emulation changes exactly the rows the CUDA backend quantizes, deterministically, and its cost
// on the CPU stays within the bounds above (which the CUDA case then checks on the device).
TEST_CASE("the CPU backend's q8 emulation quantizes the rows the CUDA backend does", "[engine][oracle]") {
    const std::vector<Expected> expected = load_expected();
    const engine::BackendOptions plain{.n_ctx = 64, .threads = 2},
        q8{.n_ctx = 64, .threads = 2, .cpu_q8_emulation = true};
    LogitsMatch cost;
    for (const test::OracleSpec& spec : test::oracle_quantized_specs()) {
        INFO(spec.name());
        const Expected& e = path_of(spec, expected);
        const gguf::File file = gguf::File::open(model_file(spec));
        const auto cpu = engine::make_backend("cpu", file, plain), cpu_q8 = engine::make_backend("cpu", file, q8);
        const auto ref = teacher_forced_logits(*cpu, e), got = teacher_forced_logits(*cpu_q8, e);
        CHECK(teacher_forced_logits(*engine::make_backend("cpu", file, q8), e) == got);
        CHECK(got[0] == ref[0]);  // the 12-row prefill: the GEMM, x not quantized
        for (size_t t = 1; t < got.size(); ++t) CHECK(got[t] != ref[t]);
        cost.add(match(got, ref));
    }
    print_match("cpu q8-emulated vs plain cpu", "quantized, all", cost);
    CHECK(cost.worst_nmse <= kMaxQ8CostNmse);
    CHECK(cost.agree >= kMinQ8CostArgmax * cost.steps);

    const test::OracleSpec q4_k{"llama", 64, gguf::TensorType::Q4_K};
    const gguf::File file = gguf::File::open(model_file(q4_k));
    const std::span<const int32_t> prompt = path_of(q4_k, expected).prompt;
    const auto cpu = engine::make_backend("cpu", file, plain), cpu_q8 = engine::make_backend("cpu", file, q8);
    // A prefill part of 8 rows is quantized, one of 9 is not.
    CHECK(forward_rows(*cpu_q8, prompt.first(8)) != forward_rows(*cpu, prompt.first(8)));
    CHECK(forward_rows(*cpu_q8, prompt.first(9)) == forward_rows(*cpu, prompt.first(9)));
    // A logits pass runs in chunks of max_batch_tokens: 12 rows as 10 unquantized, then 2 quantized.
    engine::BackendOptions chunked = q8;
    chunked.limits.max_batch_tokens = 10;
    const std::vector<float> split = forward_rows(*engine::make_backend("cpu", file, chunked), prompt);
    const std::vector<float> whole = forward_rows(*cpu, prompt);
    const size_t row = static_cast<size_t>(cpu->config().n_vocab);
    CHECK(std::equal(split.begin(), split.begin() + 10 * row, whole.begin()));
    CHECK(!std::equal(split.begin() + 10 * row, split.begin() + 11 * row, whole.begin() + 10 * row));
    CHECK(!std::equal(split.begin() + 11 * row, split.end(), whole.begin() + 11 * row));
    // No matrix of an F32 model is q8-eligible.
    const gguf::File f32 = gguf::File::open(model_file(spec_named("llama-hd64")));
    CHECK(forward_rows(*engine::make_backend("cpu", f32, q8), prompt) ==
          forward_rows(*engine::make_backend("cpu", f32, plain), prompt));
}

TEST_CASE("q8_eligible: the q8 family's types at the widths their repack takes", "[engine]") {
    using gguf::TensorType;
    CHECK(engine::q8_eligible(TensorType::Q4_0, 128));
    CHECK(engine::q8_eligible(TensorType::Q8_0, 4096));
    CHECK(engine::q8_eligible(TensorType::Q5_0, 384));
    CHECK(engine::q8_eligible(TensorType::Q4_K, 256));
    CHECK(engine::q8_eligible(TensorType::Q6_K, 768));
    CHECK_FALSE(engine::q8_eligible(TensorType::Q4_0, 96));   // not a multiple of 128
    CHECK_FALSE(engine::q8_eligible(TensorType::Q4_K, 384));  // K-quants: a multiple of 256
    CHECK_FALSE(engine::q8_eligible(TensorType::Q8_0, 0));
    CHECK_FALSE(engine::q8_eligible(TensorType::F16, 256));
    CHECK_FALSE(engine::q8_eligible(TensorType::F32, 256));
    CHECK_FALSE(engine::q8_eligible(TensorType::Q5_1, 256));
    CHECK_FALSE(engine::q8_eligible(TensorType::Q2_K, 256));
    // The CUDA backend repacks every eligible matrix: q8_layout takes exactly those.
    for (const TensorType t : {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q6_K, TensorType::F16})
        for (const int n_in : {64, 128, 256, 384, 512}) {
            bool layout = true;
            try {
                kernels::q8_layout(t, 1, n_in);
            } catch (const std::invalid_argument&) {
                layout = false;
            }
            CHECK(engine::q8_eligible(t, n_in) == layout);
        }
}
