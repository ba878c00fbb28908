// One GET to the orchestrator over the CLI's own HTTP client (http_get, shared with `loom pull`).
#include "cli/orchestrator_client.h"

#include <chrono>

#include "cli/http_get.h"
#include "http/url.h"

namespace loom::cli {

using nlohmann::json;

namespace {

constexpr std::chrono::seconds kTimeout{10};

// http://HOST:PORT as the orchestrator's own flags take it (http/url), as the client's Url.
Url orchestrator_url(const std::string& text, const std::string& path) {
    try {
        const loom::http::HostPort hp = loom::http::parse_http_url(text);
        Url u = parse_url(hp.text);
        u.target = path;
        return u;
    } catch (const std::exception& e) {
        throw BadOrchestratorUrl("--orchestrator '" + text + "': " + e.what() + " (expected http://HOST:PORT)");
    }
}

// The error object's message of an OpenAI-style error body, else the body's start.
std::string error_text(const std::string& body) {
    const json j = json::parse(body, nullptr, false);
    if (j.is_object() && j.contains("error") && j["error"].is_object() && j["error"].contains("message") &&
        j["error"]["message"].is_string())
        return j["error"]["message"];
    return body.substr(0, 200);
}

}  // namespace

json get_orchestrator_json(const std::string& base_url, const std::string& path, const std::string& api_key) {
    const Url url = orchestrator_url(base_url, path);
    const std::string where = "the orchestrator at http://" + url.host + ":" + std::to_string(url.port);
    HeaderList headers;
    if (!api_key.empty()) headers.emplace_back("Authorization", "Bearer " + api_key);
    HttpResponse r;
    try {
        r = http_get(url, headers, {}, {}, kTimeout);
    } catch (const HttpError& e) {
        throw OrchestratorError(where + " did not answer: " + e.what());
    }
    const bool health_without_workers = path == "/health" && r.status == 503;
    if ((r.status < 200 || r.status >= 300) && !health_without_workers)
        throw OrchestratorError(where + " answered " + path + " with " + std::to_string(r.status) + ": " +
                                error_text(r.body));
    json j = json::parse(r.body, nullptr, false);
    if (!j.is_object())
        throw OrchestratorError(where + " answered " + path + " with something other than a JSON object");
    return j;
}

}  // namespace loom::cli
