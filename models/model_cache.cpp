// The model cache on disk: paths, the listing (quantization and architecture read from each GGUF
// header through gguf::File) and name lookup.
#include "models/model_cache.h"

#include <algorithm>
#include <cstdlib>

#include "gguf/reader.h"

namespace loom::models {
namespace fs = std::filesystem;
namespace {

// general.file_type ids of the GGUF format and their customary names.
std::string file_type_name(uint64_t id) {
    static const char* const kNames[] = {"F32",    "F16",    "Q4_0",    "Q4_1",   "Q4_1_SOME_F16", "Q4_2",    "Q4_3",
                                         "Q8_0",   "Q5_0",   "Q5_1",    "Q2_K",   "Q3_K_S",        "Q3_K_M",  "Q3_K_L",
                                         "Q4_K_S", "Q4_K_M", "Q5_K_S",  "Q5_K_M", "Q6_K",          "IQ2_XXS", "IQ2_XS",
                                         "Q2_K_S", "IQ3_XS", "IQ3_XXS", "IQ1_S",  "IQ4_NL",        "IQ3_S",   "IQ3_M",
                                         "IQ2_S",  "IQ2_M",  "IQ4_XS",  "IQ1_M",  "BF16"};
    return id < std::size(kNames) ? kNames[id] : "";
}

CachedModel describe(const fs::path& root, const fs::path& path) {
    CachedModel m;
    m.name = fs::relative(path, root).generic_string();
    m.path = path;
    m.size = fs::file_size(path);
    m.quant = quant_in_name(m.name);
    m.architecture = "?";
    try {
        const auto f = gguf::File::open(path);
        m.architecture = f.find_string("general.architecture").value_or("?");
        if (auto ft = f.find_uint("general.file_type"); ft && !file_type_name(*ft).empty())
            m.quant = file_type_name(*ft);
    } catch (const std::exception&) {
        // A file that does not parse is still listed (and removable); "?" says so.
    }
    if (m.quant.empty()) m.quant = "-";
    return m;
}

std::vector<std::string> ggufs_in(const fs::path& dir) {
    std::vector<std::string> files;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
        if (it->is_regular_file() && it->path().extension() == ".gguf")
            files.push_back(fs::relative(it->path(), dir).generic_string());
    std::sort(files.begin(), files.end());
    return files;
}

}  // namespace

fs::path models_dir() {
    if (const char* v = std::getenv("LOOM_MODELS"); v && *v) return v;
    if (const char* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".cache/loom/models";
    return fs::path(".cache/loom/models");
}

fs::path cached_path(const fs::path& root, const ModelRef& ref, const std::string& file) {
    return root / ref.org / ref.repo / fs::path(file);
}

std::vector<CachedModel> list_cached(const fs::path& root) {
    std::vector<CachedModel> out;
    for (const auto& name : ggufs_in(root)) out.push_back(describe(root, root / name));
    return out;
}

std::optional<fs::path> find_cached(const fs::path& root, const std::string& name) {
    ModelRef ref;
    try {
        ref = parse_model_ref(name);
    } catch (const RefError&) {
        return std::nullopt;
    }
    if (!ref.file.empty()) {
        const auto p = cached_path(root, ref, ref.file);
        return fs::is_regular_file(p) ? std::optional(p) : std::nullopt;
    }
    const auto files = ggufs_in(root / ref.org / ref.repo);
    if (files.empty()) return std::nullopt;
    return cached_path(root, ref, pick_gguf(files, ref.quant, ref.repo_id()));
}

CLI::Validator file_or_cached_model() {
    return CLI::Validator(
        [](std::string& value) -> std::string {
            if (fs::exists(value)) return "";
            try {
                if (auto p = find_cached(models_dir(), value)) value = p->string();
            } catch (const RefError& e) {
                return e.what();
            }
            return "";
        },
        "FILE or cached MODEL", "file_or_cached_model");
}

}  // namespace loom::models
