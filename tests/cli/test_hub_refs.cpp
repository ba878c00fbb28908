// The pieces of `loom pull` that need no server: SHA-256 against the FIPS 180-4 examples, model
// references (and the names they refuse), quantization lookup, URLs and redirect targets.
#include <string>
#include <vector>

#include "catch.hpp"
#include "cli/hub.h"
#include "cli/sha256.h"
#include "models/model_ref.h"

using namespace loom::cli;
using namespace loom::models;

namespace {
std::string sha_hex(const std::string& s, size_t piece = 0) {
    Sha256 sha;
    if (piece == 0) piece = s.size() + 1;
    for (size_t i = 0; i < s.size(); i += piece)
        sha.update(std::span<const char>(s.data() + i, std::min(piece, s.size() - i)));
    return sha.hex_digest();
}
}  // namespace

TEST_CASE("Sha256 gives the published digests, whatever the pieces", "[cli][sha256]") {
    CHECK(sha_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(sha_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    for (size_t piece : {0, 1, 7, 55, 56, 64})
        CHECK(sha_hex(two_blocks, piece) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(sha_hex(std::string(1000000, 'a'), 4096) ==
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("model references: the three forms and what they refuse", "[cli][pull]") {
    auto r = parse_model_ref("bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M");
    CHECK(r.org == "bartowski");
    CHECK(r.repo == "SmolLM2-135M-Instruct-GGUF");
    CHECK(r.quant == "Q4_K_M");
    CHECK(r.file.empty());
    r = parse_model_ref("org/repo/sub/dir/model-Q8_0.gguf");
    CHECK(r.file == "sub/dir/model-Q8_0.gguf");
    CHECK(r.quant.empty());
    CHECK(parse_model_ref("org/repo").repo_id() == "org/repo");
    for (const char* bad :
         {"", "name", "/repo", "org/", "org/repo:", "org/repo:Q4/x", "../repo", "org/..", "org/repo/../../x.gguf",
          "org/repo/file.bin", "org/repo//x.gguf", "org/re po", "org/repo/a\\b.gguf", "org/repo/./x.gguf"}) {
        INFO(bad);
        CHECK_THROWS_AS(parse_model_ref(bad), RefError);
    }
}

TEST_CASE("quantization names in file names, and picking one file", "[cli][pull]") {
    CHECK(quant_in_name("SmolLM2-135M-Instruct.Q4_1.gguf") == "Q4_1");
    CHECK(quant_in_name("qwen2.5-0.5b-instruct-q4_k_m.gguf") == "Q4_K_M");
    CHECK(quant_in_name("Model-IQ2_XS.gguf") == "IQ2_XS");
    CHECK(quant_in_name("model.f16.gguf") == "F16");
    CHECK(quant_in_name("model.gguf").empty());
    CHECK(quant_in_name("README.md").empty());

    const std::vector<std::string> files = {"README.md", "m-Q4_K.gguf", "m-Q4_K_M.gguf", "m-Q8_0.gguf",
                                            "mmproj-Q8_0.gguf"};
    CHECK(pick_gguf(files, "q4_k_m", "o/r") == "m-Q4_K_M.gguf");
    CHECK(pick_gguf(files, "Q4_K", "o/r") == "m-Q4_K.gguf");  // a whole word: not Q4_K_M
    CHECK(pick_gguf(files, "Q8_0", "o/r") == "m-Q8_0.gguf");  // the projector is never the model
    CHECK(pick_gguf(files, "", "o/r") == "m-Q4_K_M.gguf");
    CHECK(pick_gguf({"only.gguf"}, "", "o/r") == "only.gguf");
    CHECK_THROWS_AS(pick_gguf(files, "Q5_K_M", "o/r"), RefError);
    CHECK_THROWS_AS(pick_gguf({"a-Q8_0.gguf", "b-Q8_0.gguf"}, "", "o/r"), RefError);
    CHECK_THROWS_AS(pick_gguf({"a-Q8_0.gguf", "sub/a-Q8_0.gguf"}, "Q8_0", "o/r"), RefError);
    CHECK_THROWS_AS(pick_gguf({"README.md"}, "", "o/r"), RefError);
    CHECK_THROWS_AS(pick_gguf({"big-Q4_K_M-00001-of-00002.gguf", "big-Q4_K_M-00002-of-00002.gguf"}, "Q4_K_M", "o/r"),
                    RefError);
}

TEST_CASE("URLs, redirect targets and where the token goes", "[cli][pull]") {
    auto u = parse_url("http://127.0.0.1:8080/a/b?x=1#frag");
    CHECK(u.scheme == "http");
    CHECK(u.host == "127.0.0.1");
    CHECK(u.port == 8080);
    CHECK(u.target == "/a/b?x=1");
    CHECK(parse_url("https://huggingface.co").port == 443);
    CHECK(parse_url("https://huggingface.co").target == "/");
    CHECK(parse_url("http://[::1]:9/x").host == "::1");
    for (const char* bad : {"huggingface.co", "ftp://x/", "http://", "http://h:0/", "http://h:99999/", "http://u@h/"}) {
        INFO(bad);
        CHECK_THROWS_AS(parse_url(bad), HttpError);
    }
    CHECK(resolve_location(u, "/c").text() == "http://127.0.0.1:8080/c");
    CHECK(resolve_location(u, "c").text() == "http://127.0.0.1:8080/a/c");
    CHECK(resolve_location(u, "https://cdn.example/x").text() == "https://cdn.example:443/x");
    CHECK(resolve_location(u, "//cdn.example/y").text() == "http://cdn.example:80/y");

    const Hub hub("http://127.0.0.1:8080/", "tok");
    const auto file_url = hub.resolve_url(parse_model_ref("org/repo"), "dir/a b.gguf");
    CHECK(file_url.target == "/org/repo/resolve/main/dir/a%20b.gguf");
    CHECK(hub.auth_for(file_url) == HeaderList{{"Authorization", "Bearer tok"}});
    CHECK(hub.auth_for(parse_url("http://127.0.0.1:8081/x")).empty());
    CHECK(hub.auth_for(parse_url("http://cdn.example:8080/x")).empty());
    CHECK(Hub("http://127.0.0.1:8080", "").auth_for(file_url).empty());
}
