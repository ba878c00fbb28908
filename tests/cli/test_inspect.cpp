// `loom inspect` on real and broken files: JSON facts, text output, and exit 2 with one line.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "catch.hpp"
#include "gguf/writer.h"
#include "support/run_command.h"
#include "support/test_data.h"

using loom::test::run_command;
using loom::test::shell_quote;

TEST_CASE("inspect --json of stories260K reports its architecture and shapes", "[cli][inspect]") {
    const auto model = loom::test::require_stories260k();
    const auto r = run_command(loom::test::loom_bin() + " inspect " + shell_quote(model.string()) + " --json");
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j["architecture"] == "llama");
    CHECK(j["hyperparameters"]["block_count"] == 5);
    CHECK(j["hyperparameters"]["embedding_length"] == 64);
    CHECK(j["hyperparameters"]["head_count"] == 8);
    CHECK(j["hyperparameters"]["head_count_kv"] == 4);
    CHECK(j["hyperparameters"]["feed_forward_length"] == 172);
    CHECK(j["hyperparameters"]["context_length"] == 2048);
    CHECK(j["hyperparameters"]["vocab_size"] == 512);
    CHECK(j["tensor_count"] == 48);
    CHECK(j["bytes_per_type"].size() == 1);
    CHECK(j["bytes_per_type"]["F32"]["tensors"] == 48);
    CHECK(j["tokenizer"]["model"] == "llama");
    CHECK(j["tokenizer"]["has_chat_template"] == false);
    CHECK(j["tokenizer"]["special_ids"]["bos"] == 1);
    CHECK_FALSE(j.contains("tensors"));
}

TEST_CASE("inspect --tensors lists every tensor with ne order, rows x cols, bytes and offset", "[cli][inspect]") {
    const auto model = loom::test::require_stories260k();
    const auto r =
        run_command(loom::test::loom_bin() + " inspect " + shell_quote(model.string()) + " --json --tensors");
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    REQUIRE(j["tensors"].size() == 48);
    for (const auto& t : j["tensors"]) {
        if (t["name"] != "token_embd.weight") continue;
        CHECK(t["type"] == "F32");
        CHECK(t["ne"] == nlohmann::json::array({64, 512}));
        CHECK(t["rows"] == 512);
        CHECK(t["cols"] == 64);
        CHECK(t["bytes"] == 64 * 512 * 4);
        CHECK(t["offset"].get<uint64_t>() % 32 == 0);
    }
    const auto text = run_command(loom::test::loom_bin() + " inspect " + shell_quote(model.string()) + " --tensors");
    REQUIRE(text.exit_code == 0);
    CHECK(text.out.find("architecture  llama") != std::string::npos);
    CHECK(text.out.find("blk.4.ffn_down.weight") != std::string::npos);
    CHECK(text.out.find("512 x 64") != std::string::npos);
}

TEST_CASE("inspect of an invalid file exits 2 with one line naming the problem", "[cli][inspect]") {
    const auto dir = loom::test::temp_dir();
    const auto bad = dir / "bad.gguf";
    loom::gguf::Writer w;
    w.add_tensor("w", loom::gguf::TensorType::F32, {8}, std::vector<uint8_t>(32, 1));
    auto bytes = w.header_bytes();  // the data section is missing: the tensor runs past the end
    std::FILE* f = std::fopen(bad.c_str(), "wb");
    REQUIRE(f);
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
    const auto r = run_command(loom::test::loom_bin() + " inspect " + shell_quote(bad.string()));
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(r.err.find("tensor 'w' data") != std::string::npos);
    CHECK(r.err.find("past the end of the file") != std::string::npos);

    const auto missing = run_command(loom::test::loom_bin() + " inspect /nonexistent/model.gguf");
    CHECK(missing.exit_code == 2);
    CHECK(missing.err.find("/nonexistent/model.gguf") != std::string::npos);
}
