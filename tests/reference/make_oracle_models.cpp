// make_oracle_models DIR: writes the oracle GGUF models (tests/support/oracle_models.h) into DIR,
// for tests/reference/make_oracle_expectations.py to run through transformers.
#include <cstdio>
#include <exception>
#include <filesystem>

#include "support/oracle_models.h"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: make_oracle_models DIR\n");
        return 2;
    }
    try {
        const std::filesystem::path dir = argv[1];
        std::filesystem::create_directories(dir);
        for (const loom::test::OracleSpec& spec : loom::test::oracle_specs()) {
            const std::filesystem::path path = dir / (spec.name() + ".gguf");
            loom::test::write_oracle_model(spec, path);
            std::printf("%s\n", path.c_str());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make_oracle_models: %s\n", e.what());
        return 1;
    }
    return 0;
}
