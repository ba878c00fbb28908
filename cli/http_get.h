// A small HTTP(S) GET client for `loom pull`: one request per connection, the body handed out in
// pieces as it arrives, a timeout on every step. https needs a build with OpenSSL (tls_available()).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace loom::cli {

// A transfer that failed: bad URL, DNS, connect, TLS, timeout, or a connection cut mid-body.
class HttpError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct Url {
    std::string scheme;  // "http" or "https"
    std::string host;
    uint16_t port = 0;
    std::string target;  // path and query, starting with '/'
    std::string text() const;
};

// "http[s]://HOST[:PORT][/PATH]"; HttpError saying what is wrong.
Url parse_url(const std::string& text);
// A Location header (absolute, or a path on the same server) against the URL that sent it.
Url resolve_location(const Url& base, const std::string& location);

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse {
    int status = 0;
    std::map<std::string, std::string> headers;  // names in lower case
    std::string body;                            // non-2xx bodies (first 64 KiB), or 2xx without a sink
    const std::string* header(const std::string& lower_name) const;
};

// Called with each piece of a 2xx body as it arrives.
using BodySink = std::function<void(std::span<const char>)>;
// Called with the status and headers before any of the body (it may throw to give up).
using HeadHook = std::function<void(const HttpResponse&)>;

// GET `url` with `headers`. A 2xx body goes to `sink` when one is given; a connection that ends
// before the body does throws HttpError after the sink has had every byte that came.
HttpResponse http_get(const Url& url, const HeaderList& headers, const BodySink& sink = {},
                      const HeadHook& on_head = {}, std::chrono::seconds timeout = std::chrono::seconds(60));

// Whether this build speaks https (compiled with OpenSSL).
bool tls_available();

}  // namespace loom::cli
