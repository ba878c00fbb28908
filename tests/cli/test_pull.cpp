// `loom pull`, `loom list`, `loom rm` against a local stand-in for the Hugging Face Hub
// (tests/cli/hub_server.py): quantization lookup, the token kept off the CDN, resumption after a
// connection cut halfway, 404, a wrong sha256, and a cached name used where a file is expected.
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "gguf/value.h"
#include "gguf/writer.h"
#include "support/run_command.h"
#include "support/test_data.h"
#include "support/worker_process.h"

namespace fs = std::filesystem;
using loom::test::contains;
using loom::test::run_command;
using loom::test::shell_quote;

namespace {

constexpr const char* kToken = "test-token-123";

// A small real GGUF (architecture and file type set) with `bytes` of seeded tensor data.
void write_gguf(const fs::path& path, uint32_t file_type, uint64_t bytes, uint32_t seed) {
    loom::gguf::Writer w;
    w.set("general.architecture", loom::gguf::Value::string("llama"));
    w.set("general.file_type", loom::gguf::Value::u32(file_type));
    std::vector<uint8_t> data(bytes);
    std::mt19937 rng(seed);
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    w.add_tensor("blob", loom::gguf::TensorType::I8, {bytes}, std::move(data));
    fs::create_directories(path.parent_path());
    w.write(path);
}

std::string read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

std::string sha256_of(const fs::path& p) {
    const auto r = run_command("sha256sum " + shell_quote(p.string()));
    REQUIRE(r.exit_code == 0);
    return r.out.substr(0, 64);
}

// The fake Hub: the repositories below, served by hub_server.py until the object goes away.
class FakeHub {
public:
    FakeHub() : dir_(loom::test::temp_dir()) {
        write_gguf(root() / "test-org/tiny-GGUF/tiny-Q4_K_M.gguf", 15, 200000, 1);
        write_gguf(root() / "test-org/tiny-GGUF/tiny-Q8_0.gguf", 7, 300000, 2);
        std::ofstream(root() / "test-org/tiny-GGUF/README.md") << "a test repository\n";
        write_gguf(root() / "test-org/cut-GGUF/cut-Q4_K_M.gguf", 15, 1 << 20, 3);
        write_gguf(root() / "test-org/bad-GGUF/bad-Q4_K_M.gguf", 15, 100000, 4);
        const auto log = dir_ / "hub.log";
        pid_ = loom::test::spawn_logged(
            {"/usr/bin/env", "python3", LOOM_SOURCE_DIR "/tests/cli/hub_server.py", "--root", root().string(),
             "--token", kToken, "--cut", "test-org/cut-GGUF/cut-Q4_K_M.gguf", "--bad-sha",
             "test-org/bad-GGUF/bad-Q4_K_M.gguf", "--rename", "test-org/old-name-GGUF=test-org/tiny-GGUF"},
            log);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (port_.empty()) {
            const std::string text = read_all(log);
            if (const auto at = text.find("hub "); at != std::string::npos && text.find('\n', at) != std::string::npos)
                port_ = text.substr(at + 4, text.find('\n', at) - at - 4);
            if (port_.empty() && std::chrono::steady_clock::now() > deadline)
                FAIL("hub_server.py did not start:\n" + text);
            if (port_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
    ~FakeHub() {
        kill(pid_, SIGTERM);
        waitpid(pid_, nullptr, 0);
    }
    fs::path root() const { return dir_ / "hub"; }
    fs::path models() const { return dir_ / "models"; }
    std::string requests() const { return read_all(dir_ / "hub.log"); }

    // `PROGRAM ARGS` with the cache and the Hub of this test.
    loom::test::CommandResult run(const std::string& program, const std::string& args,
                                  const std::string& token = kToken) const {
        return run_command("LOOM_MODELS=" + shell_quote(models().string()) + " LOOM_HF_ENDPOINT=http://127.0.0.1:" +
                           port_ + " HF_TOKEN=" + shell_quote(token) + " " + program + " " + args + " </dev/null");
    }
    loom::test::CommandResult loom(const std::string& args, const std::string& token = kToken) const {
        return run(loom::test::loom_bin(), args, token);
    }

private:
    fs::path dir_;
    pid_t pid_ = -1;
    std::string port_;
};

}  // namespace

TEST_CASE("pull resolves :QUANT against the repository's files and stores a verified copy", "[cli][pull]") {
    FakeHub hub;
    const auto r = hub.loom("pull test-org/tiny-GGUF:q4_k_m");
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    const auto cached = hub.models() / "test-org/tiny-GGUF/tiny-Q4_K_M.gguf";
    REQUIRE(fs::exists(cached));
    CHECK(read_all(cached) == read_all(hub.root() / "test-org/tiny-GGUF/tiny-Q4_K_M.gguf"));
    CHECK_THAT(r.out, contains("sha256 " + sha256_of(cached)));
    CHECK_THAT(r.err, contains("100%"));  // not a terminal: plain progress lines
    CHECK(r.err.find('\r') == std::string::npos);
    CHECK(!fs::exists(cached.string() + ".partial"));
    // The token went to the Hub, never to the CDN it redirected to (which answers 400 to one).
    CHECK_THAT(hub.requests(), contains("hub GET /test-org/tiny-GGUF/resolve/main/tiny-Q4_K_M.gguf auth=yes"));
    CHECK_THAT(hub.requests(), contains("cdn GET /test-org/tiny-GGUF/tiny-Q4_K_M.gguf range=None auth=no"));

    SECTION("a wrong token is refused by the Hub with a clear message") {
        const auto denied = hub.loom("pull test-org/tiny-GGUF:Q8_0", "wrong");
        CHECK(denied.exit_code == 1);
        CHECK_THAT(denied.err, contains("HTTP 401"));
        CHECK_THAT(denied.err, contains("HF_TOKEN was not accepted"));
    }
    SECTION("a renamed repository: the Hub's same-host redirects are followed, the token kept") {
        const auto renamed = hub.loom("pull test-org/old-name-GGUF:Q8_0");
        INFO(renamed.err);
        REQUIRE(renamed.exit_code == 0);
        CHECK(read_all(hub.models() / "test-org/old-name-GGUF/tiny-Q8_0.gguf") ==
              read_all(hub.root() / "test-org/tiny-GGUF/tiny-Q8_0.gguf"));
        CHECK_THAT(hub.requests(), contains("hub GET /test-org/old-name-GGUF/resolve/main/tiny-Q8_0.gguf auth=yes"));
        CHECK_THAT(hub.requests(), contains("hub GET /test-org/tiny-GGUF/resolve/main/tiny-Q8_0.gguf auth=yes"));
    }
    SECTION("on a terminal: a progress bar redrawn in place") {
        if (run_command("command -v script").exit_code != 0) {
            WARN("no `script` (util-linux) to give loom a terminal: case not run");
            return;
        }
        const auto tty = hub.run("script -qec " + shell_quote(loom::test::loom_bin() + " pull test-org/tiny-GGUF:Q8_0"),
                                 "/dev/null");
        INFO(tty.out);
        CHECK(tty.exit_code == 0);
        CHECK_THAT(tty.out, contains("\r"));
        CHECK_THAT(tty.out, contains("] 100%"));
        CHECK_THAT(tty.out, contains("/s"));
    }
    SECTION("no quantization: Q4_K_M; an unknown one names those there") {
        CHECK(hub.loom("pull test-org/tiny-GGUF").exit_code == 0);
        const auto missing = hub.loom("pull test-org/tiny-GGUF:Q5_K_M");
        CHECK(missing.exit_code == 1);
        CHECK_THAT(missing.err, contains("Q4_K_M, Q8_0"));
    }
    SECTION("list shows name, size, quantization, architecture and path; the name works for -m and rm") {
        REQUIRE(hub.loom("pull test-org/tiny-GGUF/tiny-Q8_0.gguf").exit_code == 0);
        const auto list = hub.loom("list --json");
        REQUIRE(list.exit_code == 0);
        const auto j = nlohmann::json::parse(list.out);
        REQUIRE(j.size() == 2);
        CHECK(j[0]["name"] == "test-org/tiny-GGUF/tiny-Q4_K_M.gguf");
        CHECK(j[0]["quant"] == "Q4_K_M");
        CHECK(j[0]["architecture"] == "llama");
        CHECK(j[0]["size"] == fs::file_size(cached));
        CHECK(j[0]["path"] == cached.string());
        CHECK(j[1]["quant"] == "Q8_0");
        const auto table = hub.loom("list");
        CHECK_THAT(table.out, contains("NAME"));
        CHECK_THAT(table.out, contains("test-org/tiny-GGUF/tiny-Q8_0.gguf"));

        const auto inspect = hub.loom("inspect test-org/tiny-GGUF:Q8_0 --json");
        INFO(inspect.err);
        REQUIRE(inspect.exit_code == 0);
        CHECK(nlohmann::json::parse(inspect.out)["file_type"] == 7);

        // loom-worker takes the name too: it resolves to the cached file (which then does not load:
        // these test files hold no model).
        const auto worker = hub.run("timeout 60 " + shell_quote(loom::test::worker_bin()),
                                    "--model test-org/tiny-GGUF:Q8_0 --backend cpu --port 0");
        CHECK(worker.exit_code == 2);
        const auto resolved = hub.models() / "test-org/tiny-GGUF/tiny-Q8_0.gguf";
        CHECK_THAT(worker.out + worker.err, contains("cannot load " + resolved.string()));

        CHECK(hub.loom("rm test-org/tiny-GGUF/tiny-Q4_K_M.gguf").exit_code == 0);
        CHECK(!fs::exists(cached));
        CHECK(hub.loom("rm test-org/tiny-GGUF:Q8_0").exit_code == 0);
        CHECK(!fs::exists(hub.models() / "test-org"));  // emptied folders go too
        const auto again = hub.loom("rm test-org/tiny-GGUF:Q8_0");
        CHECK(again.exit_code == 2);
        CHECK_THAT(again.err, contains("no cached model"));
        CHECK(hub.loom("list --json").out == "[]\n");
    }
}

TEST_CASE("pull resumes a download cut halfway with a Range request", "[cli][pull]") {
    FakeHub hub;
    const auto final_path = hub.models() / "test-org/cut-GGUF/cut-Q4_K_M.gguf";
    const fs::path partial = final_path.string() + ".partial";
    const auto first = hub.loom("pull test-org/cut-GGUF:Q4_K_M");
    INFO(first.out << first.err);
    CHECK(first.exit_code == 1);
    CHECK_THAT(first.err, contains("run the same `loom pull` again to resume"));
    CHECK(!fs::exists(final_path));
    REQUIRE(fs::exists(partial));
    const auto kept = fs::file_size(partial);
    CHECK(kept > 0);
    CHECK(kept < fs::file_size(hub.root() / "test-org/cut-GGUF/cut-Q4_K_M.gguf"));

    const auto second = hub.loom("pull test-org/cut-GGUF:Q4_K_M");
    INFO(second.out << second.err);
    REQUIRE(second.exit_code == 0);
    CHECK_THAT(second.err, contains("resuming at"));
    CHECK_THAT(hub.requests(), contains("range=bytes=" + std::to_string(kept) + "-"));
    CHECK(read_all(final_path) == read_all(hub.root() / "test-org/cut-GGUF/cut-Q4_K_M.gguf"));
    CHECK(!fs::exists(partial));
}

TEST_CASE("pull: 404, a wrong sha256 and a malformed name fail clearly and leave nothing", "[cli][pull]") {
    FakeHub hub;
    SECTION("a file the repository does not have") {
        const auto r = hub.loom("pull test-org/tiny-GGUF/absent.gguf");
        CHECK(r.exit_code == 1);
        CHECK_THAT(r.err, contains("test-org/tiny-GGUF/absent.gguf was not found"));
        CHECK_THAT(r.err, contains("HTTP 404"));
        CHECK(!fs::exists(hub.models() / "test-org/tiny-GGUF/absent.gguf"));
        CHECK(!fs::exists(hub.models() / "test-org/tiny-GGUF/absent.gguf.partial"));
    }
    SECTION("a repository that does not exist") {
        const auto r = hub.loom("pull test-org/nothing-here:Q4_K_M");
        CHECK(r.exit_code == 1);
        CHECK_THAT(r.err, contains("test-org/nothing-here was not found"));
    }
    SECTION("a sha256 that does not match is refused, naming both digests") {
        const auto r = hub.loom("pull test-org/bad-GGUF:Q4_K_M");
        CHECK(r.exit_code == 1);
        const std::string actual = sha256_of(hub.root() / "test-org/bad-GGUF/bad-Q4_K_M.gguf");
        std::ofstream(hub.root() / "claimed") << "not the file";
        const std::string claimed = sha256_of(hub.root() / "claimed");
        CHECK_THAT(r.err, contains("expected " + claimed));
        CHECK_THAT(r.err, contains("got " + actual));
        CHECK(!fs::exists(hub.models() / "test-org/bad-GGUF/bad-Q4_K_M.gguf"));
        CHECK(!fs::exists(hub.models() / "test-org/bad-GGUF/bad-Q4_K_M.gguf.partial"));
    }
    SECTION("names that are no reference, or that climb out of the cache") {
        for (const char* bad : {"just-a-name", "org/repo/../../etc/passwd.gguf", "org/repo/file.bin", "../x/y"}) {
            const auto r = hub.loom(std::string("pull ") + shell_quote(bad));
            INFO(bad << ": " << r.err);
            CHECK(r.exit_code == 2);
        }
    }
}
