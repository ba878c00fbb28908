// http://HOST:PORT parsing and percent-decoding.
#include "http/url.h"

#include <algorithm>
#include <cctype>

namespace loom::http {

HostPort parse_http_url(const std::string& url) {
    const std::string scheme = "http://";
    if (url.rfind(scheme, 0) != 0) throw std::invalid_argument("not an http:// URL");
    std::string rest = url.substr(scheme.size());
    if (!rest.empty() && rest.back() == '/') rest.pop_back();
    if (rest.find('/') != std::string::npos) throw std::invalid_argument("the URL must have no path");
    const size_t colon = rest.rfind(':');
    if (colon == std::string::npos || colon == 0) throw std::invalid_argument("no host and port");
    const std::string host = rest.substr(0, colon), port = rest.substr(colon + 1);
    if (!std::all_of(host.begin(), host.end(), [](unsigned char c) { return std::isgraph(c); }))
        throw std::invalid_argument("the host has a space or a control character");
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](unsigned char c) { return std::isdigit(c); }))
        throw std::invalid_argument("the port is not a number");
    const int p = std::stoi(port);
    if (p < 1 || p > 65535) throw std::invalid_argument("the port is not in 1..65535");
    return HostPort{host, static_cast<uint16_t>(p), scheme + host + ":" + port};
}

std::string percent_decoded(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        const auto hex = [&](size_t k) { return k < s.size() && std::isxdigit(static_cast<unsigned char>(s[k])); };
        if (s[i] == '%' && hex(i + 1) && hex(i + 2)) {
            out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

}  // namespace loom::http
