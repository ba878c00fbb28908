// The Hugging Face Hub's URL layout: the file list of a repository, the /resolve/main/ URL of a
// file, the token sent with them.
#pragma once

#include <string>
#include <vector>

#include "cli/http_get.h"
#include "models/model_ref.h"

namespace loom::cli {

using models::ModelRef;
using models::RefError;

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
