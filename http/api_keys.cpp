// ApiKeys: Bearer parsing and comparisons that leak neither which key matched nor how much of one did.
#include "http/api_keys.h"

#include <algorithm>
#include <cctype>

namespace loom::http {

bool same_secret(std::string_view a, std::string_view b) {
    unsigned diff = a.size() != b.size() ? 1u : 0u;
    const size_t n = std::max(a.size(), b.size());
    for (size_t i = 0; i < n; ++i) {
        const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
        const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
        diff |= static_cast<unsigned>(x ^ y);
    }
    return diff == 0;
}

std::optional<std::string> ApiKeys::match(std::string_view authorization) const {
    constexpr std::string_view kScheme = "bearer";
    if (authorization.size() <= kScheme.size() || authorization[kScheme.size()] != ' ') return std::nullopt;
    for (size_t i = 0; i < kScheme.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i]) return std::nullopt;
    std::string_view token = authorization.substr(kScheme.size());
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    std::optional<std::string> found;
    for (const auto& key : keys_)  // no early exit: the time does not say which key matched
        if (same_secret(token, key) && !found) found = key;
    return found;
}

HttpServer::Handler ApiKeys::guarded(HttpServer::Handler handler) const {
    return [this, h = std::move(handler)](const HttpRequest& req) {
        const std::string auth = req.header("authorization");
        if (!required() || match(auth)) return h(req);
        HttpResponse r = error_response(
            401, auth.empty() ? "an API key is required (Authorization: Bearer KEY)" : "the API key is not valid",
            "authentication_error");
        r.headers.emplace_back("WWW-Authenticate", "Bearer");
        return r;
    };
}

}  // namespace loom::http
