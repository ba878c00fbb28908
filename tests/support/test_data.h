// Where tests find their data files, and how a test program reports "skipped" to ctest.
#pragma once

#include <filesystem>
#include <string>

namespace loom::test {

// ../shared beside the checkout (overridable with LOOM_SHARED_DIR).
std::filesystem::path shared_dir();

// A file the test cannot run without: returns its path, or prints "SKIPPED: <why>" and exits with
// ctest's skip code 77 when it is missing. `how` says how to get it.
std::filesystem::path require_file(const std::filesystem::path& path, const std::string& how);

// stories260K.gguf: $LOOM_STORIES260K, test-models/cache, or ../shared/test-models.
std::filesystem::path require_stories260k();
// The tokenizer test vectors folder: ../shared/tokenizer-vectors when present, else
// test-models/cache/tokenizer-vectors (test-models/fetch tokenizer-vectors puts it there).
std::filesystem::path require_tokenizer_vectors();
// SmolLM2-135M-Instruct Q4_1: $LOOM_SMOLLM2 or test-models/cache (test-models/fetch puts it there).
std::filesystem::path require_smollm2();

// The real model a program parameterised over models runs on, by LOOM_TEST_MODEL_NAME: stories260k
// (also when unset), smollm2, or file: the GGUF that LOOM_TEST_MODEL names (skipped when unset).
// Another name exits 2. `label` names it in printed results.
enum class TestModel { stories260k, smollm2, file };
struct ChosenModel {
    TestModel which;
    std::string label;
    std::filesystem::path path;
};
ChosenModel require_chosen_model();

[[noreturn]] void skip_program(const std::string& why);

// A fresh temporary directory for one test program (removed by the OS, not by us).
std::filesystem::path temp_dir();

}  // namespace loom::test
