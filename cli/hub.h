// Model references (ORG/REPO[:QUANT], ORG/REPO/FILE.gguf) and the Hugging Face Hub's URL layout:
// the file list of a repository, the /resolve/main/ URL of a file, the token sent with them.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "cli/http_get.h"

namespace loom::cli {

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

class Hub {
public:
    // $LOOM_HF_ENDPOINT (default https://huggingface.co) and $HF_TOKEN.
    static Hub from_environment();
    Hub(const std::string& endpoint, std::string token);

    const Url& endpoint() const { return endpoint_; }
    // Every file path of the repository's main revision (GET /api/models/ORG/REPO, its "siblings").
    std::vector<std::string> list_files(const ModelRef& ref) const;
    Url resolve_url(const ModelRef& ref, const std::string& file) const;
    // Why the Hub refused `what` with a 401, 403 or 404, in words (HF_TOKEN named where it matters).
    std::string refusal(int status, const std::string& what) const;
    // The Authorization header for a request to `url`: only to the Hub itself, never to a CDN it
    // redirects to.
    HeaderList auth_for(const Url& url) const;

private:
    Url endpoint_;
    std::string token_;
};

}  // namespace loom::cli
