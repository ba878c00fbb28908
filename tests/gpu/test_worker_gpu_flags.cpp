// loom-worker's --gpu and --vram-budget on a real device: /health and the log name the device
// (index, name, UUID), a UUID selects it too, a budget sizes the KV cache to the block and keeps
// every arena inside it, a budget too small is refused with each part's size, an unknown device
// is refused listing the visible ones, a head size the kernels lack is refused at load with exit 2,
// and /health names the KV cache's type: f32 by default for unquantized matrices, f16 for quantized
// ones, --kv-type overriding either.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "catch.hpp"
#include "gguf/reader.h"
#include "gguf/writer.h"
#include "support/oracle_models.h"
#include "support/run_command.h"
#include "support/test_data.h"
#include "support/worker_process.h"
#include "worker/http_client.h"

namespace {

using json = nlohmann::json;
using loom::test::WorkerProcess;

json health(const WorkerProcess& w) {
    const loom::test::HttpReply r = loom::test::http_request(w.port(), "GET", "/health");
    INFO(r.body);
    REQUIRE(r.status == 200);
    return json::parse(r.body);
}

uint64_t reserved(const json& h, const char* purpose) { return h.at("vram_bytes").at(purpose).at("reserved"); }

// A short greedy completion answers 200 with the tokens asked for, and X-Backend names the device.
void completes(const WorkerProcess& w) {
    const json body = {{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"temperature", 0}, {"ignore_eos", true}};
    const loom::test::HttpReply r = loom::test::http_request(w.port(), "POST", "/v1/completions", body.dump());
    INFO(r.body);
    REQUIRE(r.status == 200);
    CHECK(json::parse(r.body).at("usage").at("completion_tokens") == 8);
    const std::string uuid = health(w).at("device_uuid");
    CHECK(r.headers.at("x-backend") == "cuda; device=0; uuid=" + uuid);
}

// loom-worker --backend cuda on `model` with `args`, run to its exit (it must not start serving).
loom::test::CommandResult refused(const std::filesystem::path& model, const std::string& args) {
    return loom::test::run_command("timeout 120 " + loom::test::shell_quote(loom::test::worker_bin()) + " --model " +
                                   loom::test::shell_quote(model.string()) + " --backend cuda --port 0 " + args);
}

// SmolLM2 when the cache has it (this program runs without it too).
std::filesystem::path smollm2_if_present() {
    if (const char* v = std::getenv("LOOM_SMOLLM2"); v && *v) return v;
    const char* cache = std::getenv("LOOM_MODEL_CACHE");
    const std::filesystem::path p = std::filesystem::path(cache ? cache : "") / "SmolLM2-135M-Instruct.Q4_1.gguf";
    return std::filesystem::exists(p) ? p : std::filesystem::path();
}

}  // namespace

TEST_CASE("--gpu 0 serves, and /health and the log name the device", "[gpu][worker]") {
    WorkerProcess w(loom::test::require_stories260k(), "cuda", {"--gpu", "0"});
    const json h = health(w);
    CHECK(h.at("backend") == "cuda");
    CHECK(h.at("device_index") == 0);
    const std::string uuid = h.at("device_uuid");
    CHECK(uuid.rfind("GPU-", 0) == 0);
    CHECK(uuid.size() == 40);  // GPU- and 8-4-4-4-12 hex digits
    CHECK(!h.at("device").get<std::string>().empty());
    CHECK(h.at("memory").get<std::string>().rfind("device 0 (", 0) == 0);
    CHECK(h.at("vram_budget_bytes").is_null());
    CHECK(h.at("kv_blocks_total") == 16 * 2048 / 16);  // no budget: 16 sequences of the full context
    CHECK(h.at("kv_cache_type") == "f32");             // stories260K's matrices are F32: the default is f32
    const std::string log = w.log();
    CHECK(log.find("CUDA device 0: " + h.at("device").get<std::string>() + ", " + uuid) != std::string::npos);
    CHECK(log.find("[cuda device 0 (") != std::string::npos);
    completes(w);

    SECTION("the same device by its UUID, and by a prefix of it") {
        for (const std::string& spec : {uuid, uuid.substr(0, 12)}) {
            WorkerProcess by_uuid(loom::test::require_stories260k(), "cuda", {"--gpu", spec});
            CHECK(health(by_uuid).at("device_uuid") == uuid);
        }
    }
}

TEST_CASE("--vram-budget sizes the KV cache from what weights and workspace leave", "[gpu][worker]") {
    const auto model = loom::test::require_stories260k();
    static const json h = [&] {  // measured once, not once per section
        WorkerProcess w(model, "cuda", {});
        return health(w);
    }();
    const uint64_t weights = reserved(h, "weights"), workspace = reserved(h, "workspace");
    const int all_blocks = h.at("kv_blocks_total");                              // 2048: 16 x 2048 tokens
    const uint64_t tables = 16 * (2048 / 16) * sizeof(int32_t);                  // block tables, 16 sequences
    const uint64_t per_block = (reserved(h, "kv_cache") - tables) / all_blocks;  // K and V of every layer
    REQUIRE(per_block * all_blocks + tables == reserved(h, "kv_cache"));
    INFO("weights " << weights << ", workspace " << workspace << ", KV block " << per_block);

    SECTION("a budget for 300 blocks gets 300, every arena inside it; two such workers share the device") {
        const uint64_t budget = weights + workspace + tables + 300 * per_block;
        WorkerProcess w(model, "cuda", {"--vram-budget", std::to_string(budget)});
        WorkerProcess second(model, "cuda", {"--gpu", "0", "--vram-budget", std::to_string(budget)});
        for (const WorkerProcess* p : {&w, &second}) {
            const json b = health(*p);
            CHECK(b.at("kv_blocks_total") == 300);
            CHECK(b.at("vram_budget_bytes") == budget);
            CHECK(reserved(b, "weights") + reserved(b, "kv_cache") + reserved(b, "workspace") <= budget);
            CHECK(p->log().find("within a budget of") != std::string::npos);
            completes(*p);
        }
    }
    SECTION("a budget above what 16 full contexts need reserves no more") {
        WorkerProcess w(model, "cuda", {"--vram-budget", "4G"});
        CHECK(health(w).at("kv_blocks_total") == all_blocks);
    }
    SECTION("one byte short of one full-context sequence is refused, naming each part") {
        const uint64_t budget = weights + workspace + tables + 128 * per_block - 1;  // 2048 tokens = 128 blocks
        const auto r = refused(model, "--vram-budget " + std::to_string(budget));
        INFO(r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.err.find("--vram-budget: the model does not fit: weights ") != std::string::npos);
        CHECK(r.err.find(" MiB + KV cache ") != std::string::npos);
        CHECK(r.err.find(" MiB + workspace ") != std::string::npos);
        CHECK(r.err.find("> budget ") != std::string::npos);
        CHECK(r.err.find("(" + std::to_string(budget) + " bytes)") != std::string::npos);
        CHECK(r.err.find("one sequence of 2048 positions") != std::string::npos);
    }
}

TEST_CASE("--vram-budget too small for the weights is refused with the numbers", "[gpu][worker]") {
    auto r = refused(loom::test::require_stories260k(), "--vram-budget 1M");
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--vram-budget: the model does not fit: weights ") != std::string::npos);
    CHECK(r.err.find("> budget 1.0 MiB (1048576 bytes)") != std::string::npos);
    const auto smollm2 = smollm2_if_present();
    if (smollm2.empty()) {
        WARN("SmolLM2-135M-Instruct.Q4_1.gguf is not in the model cache: its case did not run");
        return;
    }
    r = refused(smollm2, "--vram-budget 64MiB");  // its Q4_1 weights alone take more
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("> budget 64.0 MiB (67108864 bytes)") != std::string::npos);
    r = refused(smollm2, "--vram-budget 1G --kv-tokens 100000000");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("the KV cache holds the 100000000 positions asked for (--kv-tokens)") != std::string::npos);
}

TEST_CASE("--gpu naming no visible device exits 2 listing the visible ones", "[gpu][worker]") {
    const auto model = loom::test::require_stories260k();
    for (const std::string spec : {"99", "GPU-00000000-0000-0000-0000-000000000000"}) {
        const auto r = refused(model, "--gpu " + spec);
        INFO(r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.err.find("--backend cuda: --gpu " + spec + ": no device with this") != std::string::npos);
        CHECK(r.err.find("visible CUDA devices: 0 ") != std::string::npos);
        CHECK(r.err.find(" GPU-") != std::string::npos);
    }
}

TEST_CASE("the KV cache type: f32 by default for F32 matrices, --kv-type f16 overrides; f16 for quantized ones",
          "[gpu][worker]") {
    {
        WorkerProcess w(loom::test::require_stories260k(), "cuda", {});
        CHECK(health(w).at("kv_cache_type") == "f32");
        CHECK(w.log().find(" reserved, the f32 KV cache for ") != std::string::npos);
    }
    WorkerProcess w(loom::test::require_stories260k(), "cuda", {"--kv-type", "f16"});
    CHECK(health(w).at("kv_cache_type") == "f16");
    CHECK(w.log().find(" reserved, the f16 KV cache for ") != std::string::npos);
    completes(w);
    const auto smollm2 = smollm2_if_present();
    if (smollm2.empty()) {
        WARN("SmolLM2-135M-Instruct.Q4_1.gguf is not in the model cache: its case did not run");
        return;
    }
    WorkerProcess quantized(smollm2, "cuda", {"--ctx", "256"});
    CHECK(health(quantized).at("kv_cache_type") == "f16");  // Q4_1 matrices: the default stays f16
    WorkerProcess asked(smollm2, "cuda", {"--ctx", "256", "--kv-type", "f32"});
    CHECK(health(asked).at("kv_cache_type") == "f32");
}

TEST_CASE("--batch-invariant: /health and the load line say so, and the worker serves", "[gpu][worker]") {
    WorkerProcess w(loom::test::require_stories260k(), "cuda", {"--batch-invariant"});
    CHECK(health(w).at("batch_invariant") == true);
    CHECK(w.log().find("; batch-invariant numerics") != std::string::npos);
    completes(w);
    WorkerProcess plain(loom::test::require_stories260k(), "cuda", {});
    CHECK(health(plain).at("batch_invariant") == false);
}

TEST_CASE("a head size the CUDA kernels lack exits 2 at load, naming head_dim", "[gpu][worker]") {
    // The oracle llama with head_dim 72 (not a multiple of 16): refused before any upload, never
    // accepted and then lost at warm-up. It gets stories260K's tokenizer cut to its vocabulary of
    // kOracleVocab: the worker reads the tokenizer before it makes the backend, the oracle models have
    // none, and a tokenizer larger than the embedding is itself refused at load.
    const std::filesystem::path bare = loom::test::temp_dir() / "worker-hd72-bare.gguf";
    const std::filesystem::path model = loom::test::temp_dir() / "worker-hd72.gguf";
    loom::test::write_oracle_model({"llama", 72}, bare);
    const auto oracle = loom::gguf::File::open(bare);
    const auto stories = loom::gguf::File::open(loom::test::require_stories260k());
    auto writer = loom::gguf::Writer::copy_of(oracle);
    const auto first = [](auto items) {
        items.resize(loom::test::kOracleVocab);
        return items;
    };
    for (const auto& [key, value] : stories.metadata()) {
        using loom::gguf::Value;
        if (key == "tokenizer.ggml.tokens")
            writer.set(key, Value::string_array(first(value.as_string_array(key))));
        else if (key == "tokenizer.ggml.scores")
            writer.set(key, Value::f32_array(first(value.as_f32_array(key))));
        else if (key == "tokenizer.ggml.token_type")
            writer.set(key, Value::i32_array(first(value.as_i32_array(key))));
        else if (key.starts_with("tokenizer."))
            writer.set(key, value);
    }
    writer.write(model);
    const auto r = refused(model, "");
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("head_dim 72") != std::string::npos);
    CHECK(r.err.find("llama.attention.key_length") != std::string::npos);
    CHECK(r.err.find("warm-up") == std::string::npos);
}
