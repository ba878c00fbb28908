// The Hub's file list and URLs; the file names it sends are checked (safe_relative_path) before use.
#include "cli/hub.h"

#include <cctype>
#include <cstdlib>
#include <nlohmann/json.hpp>

namespace loom::cli {
namespace {

std::string percent_encoded_path(const std::string& path) {
    static const char* kHex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : path) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
            out += char(c);
        } else {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 15];
        }
    }
    return out;
}

}  // namespace

Hub Hub::from_environment() {
    const char* endpoint = std::getenv("LOOM_HF_ENDPOINT");
    const char* token = std::getenv("HF_TOKEN");
    return Hub((endpoint && *endpoint) ? endpoint : "https://huggingface.co", token ? token : "");
}

Hub::Hub(const std::string& endpoint, std::string token) : endpoint_(parse_url(endpoint)), token_(std::move(token)) {
    while (endpoint_.target.size() > 1 && endpoint_.target.back() == '/') endpoint_.target.pop_back();
    if (endpoint_.target == "/") endpoint_.target.clear();
}

HeaderList Hub::auth_for(const Url& url) const {
    const bool same = url.scheme == endpoint_.scheme && url.host == endpoint_.host && url.port == endpoint_.port;
    if (token_.empty() || !same) return {};
    return {{"Authorization", "Bearer " + token_}};
}

std::vector<std::string> Hub::list_files(const ModelRef& ref) const {
    Url url = endpoint_;
    url.target += "/api/models/" + ref.repo_id();
    auto r = http_get(url, auth_for(url));
    for (int hop = 0; hop < 5 && r.status / 100 == 3 && r.header("location"); ++hop) {  // a renamed repository
        url = resolve_location(url, *r.header("location"));
        r = http_get(url, auth_for(url));
    }
    if (r.status == 401 || r.status == 403 || r.status == 404) throw RefError(refusal(r.status, ref.repo_id()));
    if (r.status != 200) throw HttpError(url.text() + " answered HTTP " + std::to_string(r.status));
    std::vector<std::string> files;
    try {
        const auto listing = nlohmann::json::parse(r.body);
        for (const auto& s : listing.at("siblings")) {
            const auto name = s.at("rfilename").get<std::string>();
            if (models::safe_relative_path(name)) files.push_back(name);
        }
    } catch (const nlohmann::json::exception& e) {
        throw HttpError(url.text() + " sent no usable file list: " + e.what());
    }
    return files;
}

std::string Hub::refusal(int status, const std::string& what) const {
    const std::string code = " (HTTP " + std::to_string(status) + ")";
    if (status == 404) return what + " was not found at " + endpoint_.text() + code;
    if (!token_.empty()) return what + ": access denied by " + endpoint_.text() + code + "; HF_TOKEN was not accepted";
    return what + ": access denied by " + endpoint_.text() + code + "; a private or gated repository needs HF_TOKEN";
}

Url Hub::resolve_url(const ModelRef& ref, const std::string& file) const {
    Url url = endpoint_;
    url.target += "/" + ref.repo_id() + "/resolve/main/" + percent_encoded_path(file);
    return url;
}

}  // namespace loom::cli
