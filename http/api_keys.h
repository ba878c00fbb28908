// API keys: the Bearer credential of a request matched against the configured keys in constant time.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/http_server.h"

namespace loom::http {

// Equal contents; the time taken depends on the lengths only, never on where the strings differ.
bool same_secret(std::string_view a, std::string_view b);

class ApiKeys {
public:
    explicit ApiKeys(std::vector<std::string> keys) : keys_(std::move(keys)) {}

    bool required() const { return !keys_.empty(); }

    // The key an `Authorization` header value carries when it is one of ours ("Bearer KEY", the
    // scheme in any case, RFC 9110 §11.1); nullopt otherwise. Every key is compared, whichever matches.
    std::optional<std::string> match(std::string_view authorization) const;

    // `handler` behind the key check: without a valid key, 401 authentication_error with
    // WWW-Authenticate: Bearer. The keys must outlive the returned handler.
    HttpServer::Handler guarded(HttpServer::Handler handler) const;

private:
    std::vector<std::string> keys_;
};

}  // namespace loom::http
