// --gpu and --vram-budget without a GPU: device choice by index and UUID, byte sizes, the budget
// arithmetic (KV blocks from what weights and workspace leave, the refusal naming each part), and
// the real loom-worker refusing the flags with --backend cpu.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch.hpp"
#include "engine/memory_budget.h"
#include "support/run_command.h"
#include "support/test_data.h"
#include "support/worker_process.h"
#include "worker/gpu_options.h"
#include "worker/http_client.h"

namespace {

using loom::engine::KvCost;
using loom::engine::KvDemand;
using loom::engine::MemoryBudgetError;
using loom::engine::MemoryPlan;
using loom::worker::GpuCandidate;
using loom::worker::parse_byte_size;
using loom::worker::select_gpu;

constexpr uint64_t kMiB = uint64_t{1} << 20;

const std::vector<GpuCandidate> kTwo = {
    {0, "NVIDIA H100 80GB HBM3", "GPU-8e2f11aa-0000-1111-2222-333344445555"},
    {1, "NVIDIA H100 80GB HBM3", "GPU-8e2f11ab-6666-7777-8888-99990000aaaa"},
};

std::string error_of(const std::string& spec, const std::vector<GpuCandidate>& visible) {
    try {
        select_gpu(spec, visible);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("--gpu picks a device by index, UUID or unique UUID prefix", "[gpu_flags]") {
    CHECK(select_gpu("0", kTwo).index == 0);
    CHECK(select_gpu("1", kTwo).index == 1);
    CHECK(select_gpu("GPU-8e2f11ab-6666-7777-8888-99990000aaaa", kTwo).index == 1);
    CHECK(select_gpu("gpu-8E2F11AA-0000-1111-2222-333344445555", kTwo).index == 0);  // any case
    CHECK(select_gpu("8e2f11ab-6666-7777-8888-99990000aaaa", kTwo).index == 1);      // without "GPU-"
    CHECK(select_gpu("GPU-8e2f11ab", kTwo).index == 1);                              // a unique prefix
}

TEST_CASE("--gpu naming no visible device lists the visible ones", "[gpu_flags]") {
    const std::string list =
        "visible CUDA devices: 0 NVIDIA H100 80GB HBM3 GPU-8e2f11aa-0000-1111-2222-333344445555, "
        "1 NVIDIA H100 80GB HBM3 GPU-8e2f11ab-6666-7777-8888-99990000aaaa";
    std::string e = error_of("2", kTwo);
    CHECK(e.find("--gpu 2: no device with this index") != std::string::npos);
    CHECK(e.find(list) != std::string::npos);
    e = error_of("99999999999999999999", kTwo);
    CHECK(e.find("no device with this index") != std::string::npos);
    e = error_of("GPU-00000000-0000-0000-0000-000000000000", kTwo);
    CHECK(e.find("no device with this UUID") != std::string::npos);
    CHECK(e.find(list) != std::string::npos);
    CHECK(error_of("GPU-8e2f11a", kTwo).find("neither a device index nor a UUID") != std::string::npos);  // 7 digits
    CHECK(error_of("GPU-8e2f11a0", kTwo).find("no device with this UUID") != std::string::npos);
    CHECK(error_of("cuda:0", kTwo).find("neither a device index nor a UUID") != std::string::npos);
    CHECK(error_of("-1", kTwo).find("neither") != std::string::npos);
    CHECK(error_of("0", {}).find("visible CUDA devices: none") != std::string::npos);
    // Two devices sharing a prefix: the prefix is ambiguous, the full UUIDs are not.
    const std::vector<GpuCandidate> twins = {{0, "A", "GPU-12345678-aaaa"}, {1, "B", "GPU-12345678-bbbb"}};
    CHECK(error_of("GPU-12345678", twins).find("several devices") != std::string::npos);
    CHECK(select_gpu("GPU-12345678-bbbb", twins).index == 1);
}

TEST_CASE("--vram-budget byte sizes", "[gpu_flags]") {
    CHECK(parse_byte_size("21474836480") == 21474836480ull);
    CHECK(parse_byte_size("20G") == 20 * (uint64_t{1} << 30));
    CHECK(parse_byte_size("20GiB") == 20 * (uint64_t{1} << 30));
    CHECK(parse_byte_size("20g") == 20 * (uint64_t{1} << 30));
    CHECK(parse_byte_size("20GB") == 20'000'000'000ull);
    CHECK(parse_byte_size("512M") == 512 * kMiB);
    CHECK(parse_byte_size("512MiB") == 512 * kMiB);
    CHECK(parse_byte_size("64k") == 65536);
    CHECK(parse_byte_size("1.5G") == 3 * (uint64_t{1} << 29));
    CHECK(parse_byte_size("2T") == uint64_t{2} << 40);
    CHECK(parse_byte_size("100B") == 100);
    for (const char* bad : {"", "G", "-1G", "0", "0.1", "12x", "1.2.3G", "20 G", "20Gi", "1e9", "99999999999T"}) {
        INFO(bad);
        CHECK_THROWS_AS(parse_byte_size(bad), std::invalid_argument);
    }
    try {
        parse_byte_size("12x");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find("'12x' is not a byte size (unknown unit 'x'") != std::string::npos);
    }
}

TEST_CASE("the budget arithmetic: KV blocks from what weights and workspace leave", "[gpu_flags]") {
    // 1 MiB per block of 16 tokens, 4 KiB of block tables; 16 sequences of 1024 tokens = 1024 blocks.
    const KvCost kv{.block_bytes = kMiB, .fixed_bytes = 4096, .block_tokens = 16, .alignment = 256};
    const MemoryPlan rest{.weights = 300 * kMiB, .kv_cache = 0, .workspace = 100 * kMiB};
    const KvDemand demand{.kv_tokens = 0, .max_seqs = 16, .n_ctx = 1024};
    CHECK(loom::engine::kv_bytes(kv, 10) == 10 * kMiB + 4096);

    SECTION("no budget: every sequence can reach the full context") {
        CHECK(kv_blocks_within(rest, kv, demand, 0) == 1024);
        CHECK(kv_blocks_within(rest, kv, {.kv_tokens = 0, .max_seqs = 3, .n_ctx = 1000}, 0) == 188);  // 3000 / 16 up
    }
    SECTION("a budget larger than needed reserves no more than max_seqs x n_ctx") {
        CHECK(kv_blocks_within(rest, kv, demand, 64ull << 30) == 1024);
    }
    SECTION("a budget smaller than that: the KV cache gets the rest, to the block") {
        const uint64_t budget = 400 * kMiB + 4096 + 500 * kMiB + 100;  // 500 blocks and change
        const int blocks = kv_blocks_within(rest, kv, demand, budget);
        CHECK(blocks == 500);
        CHECK(MemoryPlan{rest.weights, loom::engine::kv_bytes(kv, blocks), rest.workspace}.total() <= budget);
        CHECK(kv_blocks_within(rest, kv, demand, budget - 200) == 499);
    }
    SECTION("the least that serves: one sequence of the context") {
        const uint64_t least = 400 * kMiB + 4096 + 64 * kMiB;  // 1024 tokens = 64 blocks
        CHECK(kv_blocks_within(rest, kv, demand, least) == 64);
        try {
            kv_blocks_within(rest, kv, demand, least - 1);
            FAIL("a budget one byte short was accepted");
        } catch (const MemoryBudgetError& e) {
            const std::string what = e.what();
            INFO(what);
            CHECK(what.find(
                      "weights 300.0 MiB + KV cache 64.0 MiB + workspace 100.0 MiB = 464.0 MiB > budget 464.0 MiB") ==
                  0);
            CHECK(what.find("one sequence of 1024 positions") != std::string::npos);
            CHECK(e.plan.kv_cache == 64 * kMiB + 4096);
            CHECK(e.budget == least - 1);
        }
    }
    SECTION("weights alone over the budget") {
        try {
            kv_blocks_within(rest, kv, demand, 200 * kMiB);
            FAIL("accepted");
        } catch (const MemoryBudgetError& e) {
            CHECK(std::string(e.what()).find("weights 300.0 MiB + ") == 0);
            CHECK(std::string(e.what()).find("> budget 200.0 MiB (209715200 bytes)") != std::string::npos);
        }
    }
    SECTION("explicit kv_tokens: exactly those, refused when over the budget") {
        const KvDemand fixed{.kv_tokens = 4000, .max_seqs = 16, .n_ctx = 1024};
        CHECK(kv_blocks_within(rest, kv, fixed, 0) == 250);
        CHECK(kv_blocks_within(rest, kv, fixed, 1ull << 40) == 250);  // a large budget does not grow it
        CHECK_THROWS_AS(kv_blocks_within(rest, kv, fixed, 600 * kMiB), MemoryBudgetError);
    }
    SECTION("check_memory_budget") {
        const MemoryPlan plan{.weights = 10, .kv_cache = 20, .workspace = 30};
        CHECK_NOTHROW(loom::engine::check_memory_budget(plan, 0));
        CHECK_NOTHROW(loom::engine::check_memory_budget(plan, 60));
        CHECK_THROWS_AS(loom::engine::check_memory_budget(plan, 59), MemoryBudgetError);
    }
}

TEST_CASE("loom-worker: --gpu, --vram-budget and --kv-type f16 are refused with --backend cpu (exit 2)",
          "[gpu_flags]") {
    const std::string cmd = "timeout 60 " + loom::test::shell_quote(loom::test::worker_bin()) + " --model " +
                            loom::test::shell_quote(loom::test::require_stories260k().string()) + " --port 0 ";
    auto r = loom::test::run_command(cmd + "--backend cpu --gpu 0");
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--gpu selects a CUDA device, but --backend cpu runs on the CPU") != std::string::npos);
    r = loom::test::run_command(cmd + "--backend cpu --vram-budget 20G");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--vram-budget limits CUDA device memory, but --backend cpu") != std::string::npos);
    r = loom::test::run_command(cmd + "--backend cuda --vram-budget 20X");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--vram-budget: '20X' is not a byte size") != std::string::npos);
    r = loom::test::run_command(cmd + "--backend cpu --kv-type f16");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--kv-type f16 is a cuda option; the cpu backend keeps its KV cache in f32") != std::string::npos);
    r = loom::test::run_command(cmd + "--backend cpu --kv-type f8");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--kv-type") != std::string::npos);
    r = loom::test::run_command(cmd + "--backend cpu --kv-tokens 100");  // stories260K's context: 2048
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--kv-tokens 100 cannot hold one sequence of the context (2048 tokens)") != std::string::npos);
}

TEST_CASE("loom-worker --backend cpu --kv-tokens sizes the shared KV cache; X-Backend says cpu", "[gpu_flags]") {
    loom::test::WorkerProcess w(loom::test::require_stories260k(), "cpu", {"--kv-tokens", "4000", "--max-seqs", "4"});
    const loom::test::HttpReply r = loom::test::http_request(w.port(), "GET", "/health");
    INFO(r.body);
    REQUIRE(r.status == 200);
    const auto j = nlohmann::json::parse(r.body);
    CHECK(j.at("kv_blocks_total") == 250);  // 4000 / 16
    CHECK(j.at("device_index").is_null());
    CHECK(j.at("device_uuid").is_null());
    CHECK(j.at("vram_budget_bytes").is_null());
    const loom::test::HttpReply c =
        loom::test::http_request(w.port(), "POST", "/v1/completions", R"({"prompt": "Once", "max_tokens": 2})");
    CHECK(c.status == 200);
    CHECK(c.headers.at("x-backend") == "cpu");
}
