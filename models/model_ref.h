// Model references (ORG/REPO, ORG/REPO:QUANT, ORG/REPO/FILE.gguf), the quantization a GGUF's file
// name states, and which file of a repository a reference picks.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace loom::models {

// A reference that cannot name a model, or names none of a repository's files (bad input).
class RefError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

struct ModelRef {
    std::string org, repo;
    std::string quant;  // from ":QUANT", or empty
    std::string file;   // from "/FILE.gguf" (may hold folders), or empty
    std::string repo_id() const { return org + "/" + repo; }
};

// Parses "ORG/REPO", "ORG/REPO:QUANT" or "ORG/REPO/PATH/FILE.gguf"; RefError saying what is wrong.
ModelRef parse_model_ref(const std::string& text);

// True for a relative path of plain segments (no "", ".", "..", backslash or control character).
bool safe_relative_path(const std::string& path);

// The quantization a file name states ("x-Q4_K_M.gguf" -> "Q4_K_M", upper case), or "".
std::string quant_in_name(const std::string& file);

// The GGUF among `files` that `quant` names (a whole '-'/'.'-separated word of its name, any case);
// with no quant the only GGUF, else the Q4_K_M one. RefError listing what there is otherwise.
std::string pick_gguf(const std::vector<std::string>& files, const std::string& quant, const std::string& repo_id);

}  // namespace loom::models
