// Test data lookup; a missing file turns the whole test program into a reported skip.
#include "support/test_data.h"

#include <cstdio>
#include <cstdlib>
#include <unistd.h>

namespace loom::test {
namespace fs = std::filesystem;

namespace {
fs::path env_path(const char* name, const fs::path& fallback) {
    const char* v = std::getenv(name);
    return (v && *v) ? fs::path(v) : fallback;
}
fs::path model_cache() { return env_path("LOOM_MODEL_CACHE", "test-models/cache"); }
}  // namespace

fs::path shared_dir() { return env_path("LOOM_SHARED_DIR", "../shared"); }

void skip_program(const std::string& why) {
    std::printf("SKIPPED: %s\n", why.c_str());
    std::fflush(stdout);
    std::exit(77);
}

fs::path require_file(const fs::path& path, const std::string& how) {
    if (!fs::exists(path)) skip_program("missing " + path.string() + " (" + how + ")");
    return path;
}

fs::path require_stories260k() {
    if (const char* v = std::getenv("LOOM_STORIES260K"); v && *v) return require_file(v, "LOOM_STORIES260K names it");
    fs::path cached = model_cache() / "stories260K.gguf";
    if (fs::exists(cached)) return cached;
    return require_file(shared_dir() / "test-models/stories260K.gguf",
                        "put ../shared beside the checkout or set LOOM_STORIES260K");
}

fs::path require_tokenizer_vectors() {
    const fs::path shared = shared_dir() / "tokenizer-vectors";
    if (fs::exists(shared)) return shared;
    return require_file(model_cache() / "tokenizer-vectors", "run test-models/fetch tokenizer-vectors");
}

fs::path require_smollm2() {
    if (const char* v = std::getenv("LOOM_SMOLLM2"); v && *v) return require_file(v, "LOOM_SMOLLM2 names it");
    return require_file(model_cache() / "SmolLM2-135M-Instruct.Q4_1.gguf",
                        "run test-models/fetch smollm2-135m-instruct-q4_1");
}

ChosenModel require_chosen_model() {
    const char* name = std::getenv("LOOM_TEST_MODEL_NAME");
    const std::string chosen = name && *name ? name : "stories260k";
    if (chosen == "stories260k") return {TestModel::stories260k, "stories260K", require_stories260k()};
    if (chosen == "smollm2") return {TestModel::smollm2, "smollm2", require_smollm2()};
    if (chosen != "file") {
        std::fprintf(stderr, "LOOM_TEST_MODEL_NAME: \"%s\" is not a test model (stories260k, smollm2, file)\n",
                     chosen.c_str());
        std::exit(2);
    }
    const char* path = std::getenv("LOOM_TEST_MODEL");
    if (!path || !*path) skip_program("LOOM_TEST_MODEL is not set (a GGUF to compare, e.g. from loom synth)");
    return {TestModel::file, "LOOM_TEST_MODEL", require_file(path, "set LOOM_TEST_MODEL to an existing GGUF")};
}

fs::path temp_dir() {
    std::string tmpl = (fs::temp_directory_path() / "loom-test-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) {
        std::perror("mkdtemp");
        std::exit(1);
    }
    return tmpl;
}

}  // namespace loom::test
