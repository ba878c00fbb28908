// The KV cache type a backend takes when none is asked for (engine::default_kv_cache_type): cpu f32
// always; cuda f32 for unquantized matrices (gguf::unquantized_matrices), f16 for quantized ones; and
// gguf::estimate_memory sizing the cache by the same rule, so the orchestrator places what runs.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "catch.hpp"
#include "engine/errors.h"
#include "engine/make_backend.h"
#include "gguf/memory_estimate.h"
#include "gguf/reader.h"
#include "gguf/writer.h"
#include "support/oracle_models.h"
#include "support/test_data.h"

using namespace loom;
using engine::KvCacheType;
using gguf::TensorType;

namespace {

gguf::File oracle(const test::OracleSpec& spec) {
    const std::filesystem::path path = test::temp_dir() / (spec.name() + ".gguf");
    if (!std::filesystem::exists(path)) test::write_oracle_model(spec, path);
    return gguf::File::open(path);
}

// A file of tensors only (n_in 32 each: one block of the 32-element types), random-free zeros: the
// rule reads types and shapes, never values.
gguf::File tensors_only(const std::string& name, const std::vector<std::pair<TensorType, std::vector<uint64_t>>>& ts) {
    gguf::Writer w;
    for (size_t i = 0; i < ts.size(); ++i) {
        const auto& [type, ne] = ts[i];
        uint64_t n = 1;
        for (const uint64_t d : ne) n *= d;
        w.add_tensor("t" + std::to_string(i), type, ne, std::vector<uint8_t>(gguf::tensor_bytes(type, n)));
    }
    const std::filesystem::path path = test::temp_dir() / (name + ".gguf");
    w.write(path);
    return gguf::File::open(path);
}

}  // namespace

TEST_CASE("cuda defaults to an f32 KV cache for F32 / F16 / BF16 matrices, f16 for quantized ones", "[engine][kv]") {
    for (const auto& [type, unquantized] : std::vector<std::pair<TensorType, bool>>{
             {TensorType::F32, true}, {TensorType::F16, true}, {TensorType::Q8_0, false}, {TensorType::Q4_K, false}}) {
        const test::OracleSpec spec{"qwen2", 64, type};
        INFO(spec.name());
        const gguf::File f = oracle(spec);
        CHECK(gguf::unquantized_matrices(f) == unquantized);
        CHECK(engine::default_kv_cache_type("cuda", f) == (unquantized ? KvCacheType::f32 : KvCacheType::f16));
        CHECK(engine::default_kv_cache_type("cpu", f) == KvCacheType::f32);
    }
}

TEST_CASE("only matrices count: BF16 ones are unquantized, one quantized matrix is not, a 1-row tensor is ignored",
          "[engine][kv]") {
    const std::vector<uint64_t> matrix{32, 4}, row{32};
    const gguf::File bf16 = tensors_only("kv-bf16", {{TensorType::BF16, matrix}, {TensorType::F32, row}});
    CHECK(gguf::unquantized_matrices(bf16));
    CHECK(engine::default_kv_cache_type("cuda", bf16) == KvCacheType::f32);
    const gguf::File mixed =
        tensors_only("kv-mixed", {{TensorType::F16, matrix}, {TensorType::Q8_0, matrix}, {TensorType::F32, row}});
    CHECK_FALSE(gguf::unquantized_matrices(mixed));
    CHECK(engine::default_kv_cache_type("cuda", mixed) == KvCacheType::f16);
    const gguf::File quantized_row = tensors_only("kv-row", {{TensorType::F32, matrix}, {TensorType::Q8_0, row}});
    CHECK(gguf::unquantized_matrices(quantized_row));
    const gguf::File quantized_3d = tensors_only("kv-3d", {{TensorType::F32, matrix}, {TensorType::Q4_0, {32, 2, 2}}});
    CHECK_FALSE(gguf::unquantized_matrices(quantized_3d));
}

TEST_CASE("the memory estimate sizes the KV cache by the same default; kv_value_bytes overrides it", "[engine][kv]") {
    const gguf::File f32 = oracle({"llama", 64, TensorType::F32}), q8 = oracle({"llama", 64, TensorType::Q8_0});
    const gguf::MemoryDemand demand{256, 4, 512};
    // 3 layers x 2 KV heads x 64 x (K and V) x 256 positions x 4 sequences, per byte of a value
    const uint64_t values = uint64_t{3} * 2 * 64 * 2 * 256 * 4;
    CHECK(gguf::estimate_memory(f32, demand).kv_cache == values * 4);
    CHECK(gguf::estimate_memory(q8, demand).kv_cache == values * 2);
    CHECK(gguf::estimate_memory(f32, {256, 4, 512, 2}).kv_cache == values * 2);  // --kv-type f16
    CHECK(gguf::estimate_memory(q8, {256, 4, 512, 4}).kv_cache == values * 4);   // --kv-type f32
}

TEST_CASE("the cpu backend keeps f32 whatever the weights, and refuses f16", "[engine][kv]") {
    const gguf::File q8 = oracle({"qwen3", 64, TensorType::Q8_0});
    const auto b = engine::make_backend("cpu", q8, {.n_ctx = 32, .threads = 1});
    CHECK(std::string(b->kv_capacity().type) == "f32");
    CHECK_THROWS_AS(engine::make_backend("cpu", q8, {.n_ctx = 32, .threads = 1, .kv_type = KvCacheType::f16}),
                    engine::RequestError);
}

TEST_CASE("the estimate's workspace holds the prefill GEMM's 16-bit copy of the fused gate/up matrix",
          "[engine][memory]") {
    // The 8B shape's hyperparameters over a tensor-free header: only they size the workspace.
    gguf::Writer w;
    w.set("general.architecture", gguf::Value::string("llama"));
    for (const auto& [key, value] : std::vector<std::pair<std::string, uint32_t>>{{"block_count", 32},
                                                                                  {"embedding_length", 4096},
                                                                                  {"attention.head_count", 32},
                                                                                  {"attention.head_count_kv", 8},
                                                                                  {"feed_forward_length", 14336},
                                                                                  {"context_length", 8192},
                                                                                  {"vocab_size", 128256}})
        w.set("llama." + key, gguf::Value::u32(value));
    const std::filesystem::path path = test::temp_dir() / "estimate-8b-header.gguf";
    w.write(path);
    const auto e = gguf::estimate_memory(gguf::File::open(path), {8192, 1, 512});
    const uint64_t gate_up_f16 = uint64_t{2} * 14336 * 4096 * 2, x_halves = uint64_t{2} * 512 * 14336 * 2;
    CHECK(e.workspace >= gate_up_f16 + x_halves + (uint64_t{64} << 20));
    CHECK(e.workspace < gate_up_f16 + x_halves + (uint64_t{64} << 20) + (uint64_t{256} << 20));
}
