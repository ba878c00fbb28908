// Opening and validating a 4 GiB file must not touch tensor data: < 50 ms on a sparse file.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fcntl.h>
#include <unistd.h>

#include "catch.hpp"
#include "gguf/reader.h"
#include "gguf/writer.h"
#include "support/test_data.h"

using namespace loom::gguf;

TEST_CASE("a 4 GiB model-shaped file opens and validates in under 50 ms", "[gguf][large]") {
    // Shaped like a 7B-class Q5_K model: 32 layers x 9 matrices + norms, 32k-token vocabulary.
    Writer w;
    w.set("general.architecture", Value::string("llama"));
    w.set("llama.block_count", Value::u32(32));
    std::vector<std::string> tokens;
    for (int i = 0; i < 32000; ++i) tokens.push_back("tok" + std::to_string(i));
    w.set("tokenizer.ggml.tokens", Value::string_array(tokens));
    w.set("tokenizer.ggml.scores", Value::f32_array(std::vector<float>(32000, -1.f)));
    w.set("tokenizer.ggml.token_type", Value::i32_array(std::vector<int32_t>(32000, 1)));
    const auto none = [](std::span<uint8_t>) {};
    w.add_tensor("token_embd.weight", TensorType::Q4_K, {4096, 32000}, none);
    for (int l = 0; l < 32; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        for (const char* m : {"attn_q", "attn_k", "attn_v", "attn_output"})
            w.add_tensor(p + m + ".weight", TensorType::Q5_K, {4096, 4096}, none);
        for (const char* m : {"ffn_gate", "ffn_up"})
            w.add_tensor(p + m + ".weight", TensorType::Q5_K, {4096, 11008}, none);
        w.add_tensor(p + "ffn_down.weight", TensorType::Q5_K, {11008, 4096}, none);
        w.add_tensor(p + "attn_norm.weight", TensorType::F32, {4096}, none);
        w.add_tensor(p + "ffn_norm.weight", TensorType::F32, {4096}, none);
    }
    w.add_tensor("output.weight", TensorType::Q6_K, {4096, 32000}, none);
    const uint64_t size = w.file_size();
    REQUIRE(size > (uint64_t{4} << 30));

    // Header written for real, the data left as a hole: the file is 4+ GiB but takes no disk.
    const auto path = loom::test::temp_dir() / "large.gguf";
    const auto header = w.header_bytes();
    const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, header.data(), header.size()) == static_cast<ssize_t>(header.size()));
    REQUIRE(::ftruncate(fd, static_cast<off_t>(size)) == 0);
    ::close(fd);

    std::vector<double> ms;
    for (int run = 0; run < 5; ++run) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto f = File::open(path);
        const auto t1 = std::chrono::steady_clock::now();
        REQUIRE(f.tensors().size() == 1 + 32 * 9 + 1);
        REQUIRE(f.file_size() == size);
        ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    std::printf("open+validate of a %.2f GiB GGUF (%zu tensors, 32000-token vocab): median %.2f ms, max %.2f ms\n",
                size / double(uint64_t{1} << 30), size_t{1 + 32 * 9 + 1}, ms[2], ms[4]);
#ifdef LOOM_SANITIZED
    CHECK(ms[2] < 1000.0);  // sanitizers slow parsing several-fold; the 50 ms budget is for Release
#else
    CHECK(ms[2] < 50.0);
#endif
    std::filesystem::remove(path);
}
