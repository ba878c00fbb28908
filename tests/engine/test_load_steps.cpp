// make_backend's load steps (BackendOptions::on_load_step) on the CPU backend with stories260K: the
// model's summary, the weights, the KV cache, then ready, in that order and with their numbers;
// and describe()'s words, on which the CLI and the worker rely.
#include <string>
#include <vector>

#include "catch.hpp"
#include "engine/load_step.h"
#include "engine/make_backend.h"
#include "support/test_data.h"

using loom::engine::LoadStep;
using Kind = loom::engine::LoadStep::Kind;

TEST_CASE("make_backend reports parse, weights, KV cache and ready", "[engine][load]") {
    const auto file = loom::gguf::File::open(loom::test::require_stories260k());
    std::vector<LoadStep> steps;
    const auto backend = loom::engine::make_backend(
        "cpu", file, {.n_ctx = 256, .threads = 1, .on_load_step = [&](const LoadStep& s) { steps.push_back(s); }});
    REQUIRE(steps.size() == 4);
    CHECK(steps[0].kind == Kind::parse);
    CHECK(steps[0].what.rfind("llama, 5 layers, 64 wide, vocabulary 512", 0) == 0);
    CHECK(steps[1].kind == Kind::weights);
    CHECK(steps[1].what == "host RAM");
    CHECK(steps[1].bytes > 1000000);
    CHECK(steps[1].bytes == steps[1].total);
    CHECK(steps[2].kind == Kind::kv_cache);
    CHECK(steps[2].tokens >= 256);
    CHECK(steps[2].bytes > 0);
    CHECK(steps[3].kind == Kind::ready);
    CHECK(steps[3].seconds >= steps[1].seconds);
}

TEST_CASE("make_backend without a callback reports nothing and still loads", "[engine][load]") {
    const auto file = loom::gguf::File::open(loom::test::require_stories260k());
    CHECK(loom::engine::make_backend("cpu", file, {.n_ctx = 64, .threads = 1})->n_ctx() == 64);
}

TEST_CASE("describe puts each step in words", "[engine][load]") {
    using loom::engine::describe;
    CHECK(describe({.kind = Kind::parse, .what = "llama, 5 layers"}) == "model: llama, 5 layers");
    CHECK(describe({.kind = Kind::weights,
                    .what = "GPU 0 (H100)",
                    .bytes = 2000000000,
                    .total = 2000000000,
                    .seconds = 0.5}) == "loaded 2.00 GB of weights to GPU 0 (H100) in 0.50 s (4.0 GB/s)");
    CHECK(describe({.kind = Kind::weights,
                    .what = "GPU 0 (H100)",
                    .bytes = 500000000,
                    .total = 2000000000,
                    .seconds = 0.25}) ==
          "uploading 500.0 MB of 2.00 GB of weights to GPU 0 (H100) in 0.25 s (2.0 GB/s)");
    CHECK(describe({.kind = Kind::kv_cache, .bytes = 64000000, .tokens = 4096}) == "KV cache: 64.0 MB for 4096 tokens");
    CHECK(describe({.kind = Kind::graph_capture, .tokens = 8, .seconds = 0.0125}) ==
          "captured a CUDA graph for decode batch 8 in 12.5 ms");
    CHECK(describe({.kind = Kind::ready, .seconds = 1.5}) == "ready in 1.50 s");
}
