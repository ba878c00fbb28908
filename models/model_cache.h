// loom's model cache: $LOOM_MODELS (default ~/.cache/loom/models), one file per pulled GGUF at
// ORG/REPO/FILE.gguf, and the names that find them again (for `-m`, `loom list`, `loom rm`).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "models/model_ref.h"

namespace loom::models {

std::filesystem::path models_dir();

// Where a pulled file of `ref` lives (ref.org/ref.repo/file under `root`).
std::filesystem::path cached_path(const std::filesystem::path& root, const ModelRef& ref, const std::string& file);

struct CachedModel {
    std::string name;  // ORG/REPO/FILE.gguf, usable wherever a model is named
    std::filesystem::path path;
    uint64_t size = 0;
    std::string quant;         // from general.file_type, else the file name; "-" when unknown
    std::string architecture;  // general.architecture; "?" when the header cannot be read
};

// Every complete GGUF under `root` (".partial" downloads left out), sorted by name.
std::vector<CachedModel> list_cached(const std::filesystem::path& root);

// The cached file a name means: ORG/REPO/FILE.gguf, ORG/REPO:QUANT or ORG/REPO (see pick_gguf).
// nullopt when it is no reference or nothing of that repository is cached; RefError when the
// repository's cached files hold no match or several.
std::optional<std::filesystem::path> find_cached(const std::filesystem::path& root, const std::string& name);

// For `-m`: an existing file stays as it is; otherwise a cached model's name becomes its path.
CLI::Validator file_or_cached_model();

}  // namespace loom::models
