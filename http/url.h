// The URLs loom's daemons exchange: http://HOST:PORT (workers, the orchestrator) and %XX escapes
// in a path segment (a model id in /v1/models/{id}).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace loom::http {

struct HostPort {
    std::string host;
    uint16_t port = 0;
    std::string text;  // "http://host:port", without a trailing '/'
};

// "http://HOST:PORT" with an optional trailing '/'; no path, no https (loom's daemons speak plain
// HTTP to each other). std::invalid_argument saying what is wrong.
HostPort parse_http_url(const std::string& url);

// A path segment with its %XX escapes decoded (a model id with a space arrives as %20); a bad
// escape is kept as it is, which then names no model.
std::string percent_decoded(std::string_view s);

}  // namespace loom::http
