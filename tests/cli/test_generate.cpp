// `loom generate` as a user runs it, on stories260K: backend choice and exit codes, --json, -p "",
// streaming, --stop, --ctx, and --dump-layers files checked against the model's final RMSNorm.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "catch.hpp"
#include "gguf/reader.h"
#include "support/run_command.h"
#include "support/test_data.h"

namespace fs = std::filesystem;
using loom::test::run_command;
using loom::test::shell_quote;

namespace {

std::string generate_cmd(const std::string& args) {
    return loom::test::loom_bin() + " generate -m " + shell_quote(loom::test::require_stories260k().string()) + " " +
           args;
}

std::vector<int32_t> reference_greedy_ids() {
    std::ifstream in(loom::test::require_file(fs::path(LOOM_SOURCE_DIR) / "tests/reference/stories260k_greedy_ids.json",
                                              "made by tests/reference/hf_reference.py greedy"));
    return nlohmann::json::parse(in).at("ids").get<std::vector<int32_t>>();
}

nlohmann::json run_json(const std::string& args) {
    const auto r = run_command(generate_cmd("--backend cpu --json " + args));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    REQUIRE(std::count(r.out.begin(), r.out.end(), '\n') == 1);
    return nlohmann::json::parse(r.out);
}

std::set<std::string> keys_of(const nlohmann::json& j) {
    std::set<std::string> keys;
    for (const auto& [key, value] : j.items()) keys.insert(key);
    return keys;
}

std::vector<float> read_f32(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    std::vector<float> v(bytes.size() / sizeof(float));
    std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
    return v;
}

}  // namespace

TEST_CASE("generate defaults to cuda and never falls back to the CPU", "[cli][generate]") {
    const bool has_gpu = fs::exists("/dev/nvidiactl");
    const auto dir = loom::test::temp_dir();
    for (const std::string backend : {"", "--backend cuda "}) {
        INFO("arguments: " << backend);
        const auto dump = dir / ("dump" + std::to_string(backend.size()));
        const auto r = run_command(
            generate_cmd(backend + "-p 'Once upon a time' -n 4 --json --dump-layers " + shell_quote(dump.string())));
        if (has_gpu && r.exit_code == 0) {  // a CUDA build on a GPU host: it must really be cuda
            CHECK(nlohmann::json::parse(r.out).at("backend") == "cuda");
            continue;
        }
        CHECK(r.exit_code == 3);
        CHECK(r.out.empty());           // nothing generated
        CHECK_FALSE(fs::exists(dump));  // no forward pass ran
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        CHECK(r.err.find("--backend cuda: ") != std::string::npos);
        CHECK(r.err.find("CUDA") != std::string::npos);           // the cause
        CHECK(r.err.find("--backend cpu") != std::string::npos);  // the way out
    }
}

TEST_CASE("generate --json has exactly the documented keys", "[cli][generate]") {
    const auto j = run_json("-p 'Once upon a time' -n 12 --temperature 0 --ignore-eos");
    CHECK(keys_of(j) == std::set<std::string>{"backend", "device", "batch_invariant", "model", "prompt_ids", "ids",
                                              "text", "stop_reason", "timings"});
    CHECK(keys_of(j.at("timings")) ==
          std::set<std::string>{"load_ms", "prompt_ms", "ttft_ms", "decode_ms", "decode_tok_s"});
    CHECK(j.at("backend") == "cpu");
    CHECK(j.at("device").get<std::string>().find("CPU") != std::string::npos);
    CHECK(j.at("batch_invariant") == true);  // the cpu backend always is
    CHECK(j.at("model") == loom::test::require_stories260k().string());
    REQUIRE(j.at("prompt_ids").size() > 1);
    CHECK(j.at("prompt_ids")[0] == 1);  // BOS
    CHECK(j.at("ids").size() == 12);
    CHECK(j.at("stop_reason") == "max_tokens");
    CHECK_FALSE(j.at("text").get<std::string>().empty());
    for (const auto& [key, value] : j.at("timings").items()) {
        INFO(key);
        REQUIRE(value.is_number());
        CHECK(value.get<double>() >= 0);
    }
    CHECK(j.at("timings").at("decode_tok_s").get<double>() > 0);
}

TEST_CASE("generate -p \"\" starts from BOS alone and reproduces transformers' greedy ids", "[cli][generate]") {
    const auto j = run_json("-p '' -n 128 --temperature 0 --ignore-eos");
    CHECK(j.at("prompt_ids") == nlohmann::json::array({1}));
    CHECK(j.at("ids").get<std::vector<int32_t>>() == reference_greedy_ids());

    SECTION("streaming prints the same text, then a newline, and a summary on stderr") {
        const auto r = run_command(generate_cmd("--backend cpu -p '' -n 128 --temperature 0 --ignore-eos"));
        REQUIRE(r.exit_code == 0);
        CHECK(r.out == j.at("text").get<std::string>() + "\n");
        CHECK(r.err.find("backend cpu") != std::string::npos);
        CHECK(r.err.find("stop: max_tokens") != std::string::npos);
    }
    SECTION("--stop cuts the text before the first match of any stop string") {
        const auto s = run_json("-p '' -n 128 --temperature 0 --stop 'red ball' --stop 'park.'");
        CHECK(s.at("stop_reason") == "stop_string");
        const std::string full = j.at("text");
        CHECK(s.at("text") == full.substr(0, full.find("park.")));
        CHECK(s.at("text").get<std::string>().ends_with("Lily. She loved to play outside in the "));
    }
    SECTION("--ctx bounds the sequence: context_full") {
        // Prompt (BOS) + completion fill the 10 positions: 9 generated tokens.
        const auto s = run_json("-p '' -n 100 --temperature 0 --ctx 10");
        CHECK(s.at("stop_reason") == "context_full");
        const auto ids = reference_greedy_ids();
        CHECK(s.at("ids").get<std::vector<int32_t>>() == std::vector<int32_t>(ids.begin(), ids.begin() + 9));
    }
}

TEST_CASE("generate rejects bad requests with exit 2 and a message naming the problem", "[cli][generate]") {
    struct Case {
        std::string args, message;
    };
    const Case cases[] = {
        {"--backend cpu -p hello --chat hello", "exactly one of -p TEXT and --chat TEXT"},
        {"--backend cpu", "exactly one of -p TEXT and --chat TEXT"},
        {"--backend cpu -p hello --temperature -1", "temperature"},
        {"--backend cpu -p hello --top-p 0", "top_p"},
        {"--backend tpu -p hello", "--backend must be cuda or cpu"},
        {"--backend cpu -p 'Once upon a time there was' --ctx 4", "context holds 4"},
    };
    for (const Case& c : cases) {
        INFO(c.args);
        const auto r = run_command(generate_cmd(c.args));
        INFO(r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.out.empty());
        CHECK(r.err.find(c.message) != std::string::npos);
    }
    const auto missing =
        run_command(loom::test::loom_bin() + " generate -m /nonexistent/model.gguf --backend cpu -p hi");
    CHECK(missing.exit_code == 2);
    CHECK(missing.err.find("/nonexistent/model.gguf") != std::string::npos);
}

TEST_CASE("generate --dump-layers writes every layer and a final RMSNorm that checks out", "[cli][generate]") {
    const auto dir = loom::test::temp_dir() / "layers";
    const auto j =
        run_json("-p 'Once upon a time' -n 6 --temperature 0 --ignore-eos --dump-layers " + shell_quote(dir.string()));
    // The prompt and every generated token but the last pass through the model.
    const size_t n_positions = j.at("prompt_ids").size() + j.at("ids").size() - 1;

    std::ifstream index_in(dir / "index.json");
    REQUIRE(index_in);
    const auto index = nlohmann::json::parse(index_in);
    CHECK(index.at("backend") == "cpu");
    CHECK(index.at("dtype") == "f32");
    CHECK(index.at("n_layer") == 5);
    CHECK(index.at("n_embd") == 64);
    CHECK(index.at("n_positions") == n_positions);
    REQUIRE(index.at("files").size() == 6);
    std::vector<std::vector<float>> layers;
    for (int l = 0; l <= 5; ++l) {
        const auto& f = index.at("files")[l];
        INFO("layer " << l);
        CHECK(f.at("layer") == l);
        CHECK(f.at("file") == "layer_0" + std::to_string(l) + ".f32");
        CHECK(f.at("positions") == n_positions);
        CHECK(fs::file_size(dir / f.at("file").get<std::string>()) == n_positions * 64 * sizeof(float));
        layers.push_back(read_f32(dir / f.at("file").get<std::string>()));
        CHECK(std::all_of(layers.back().begin(), layers.back().end(), [](float x) { return std::isfinite(x); }));
    }
    CHECK(layers[4] != layers[3]);

    // Each row of the last file is rmsnorm(row of block 4's output) * output_norm.weight, in double;
    // f32 rounding allows max |Δ| <= 1e-5 * max |row|.
    const auto model = loom::gguf::File::open(loom::test::require_stories260k());
    const std::vector<float> norm = model.dequantize_tensor(*model.find_tensor("output_norm.weight"));
    const double eps = model.find_float("llama.attention.layer_norm_rms_epsilon").value_or(1e-5);
    double worst = 0;
    for (size_t t = 0; t < n_positions; ++t) {
        const float* x = &layers[4][t * 64];
        const float* y = &layers[5][t * 64];
        double ss = 0, diff = 0, scale = 0;
        for (int i = 0; i < 64; ++i) ss += double(x[i]) * x[i];
        const double inv_rms = 1 / std::sqrt(ss / 64 + eps);
        for (int i = 0; i < 64; ++i) {
            const double ref = x[i] * inv_rms * norm[i];
            diff = std::max(diff, std::abs(y[i] - ref));
            scale = std::max(scale, std::abs(ref));
        }
        worst = std::max(worst, diff / scale);
    }
    CHECK(worst <= 1e-5);
}
