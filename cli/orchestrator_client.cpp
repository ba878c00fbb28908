// One blocking GET through call_upstream on a private io_context.
#include "cli/orchestrator_client.h"

#include <boost/asio/io_context.hpp>
#include <chrono>

#include "http/url.h"
#include "orchestrator/upstream.h"

namespace loom::cli {

using nlohmann::json;

namespace {

constexpr std::chrono::milliseconds kConnectTimeout{3000};
constexpr std::chrono::milliseconds kTotalTimeout{10000};

orchestrator::WorkerUrl parse_url(const std::string& url) {
    try {
        http::HostPort u = http::parse_http_url(url);
        return orchestrator::WorkerUrl{std::move(u.host), u.port, std::move(u.text)};
    } catch (const std::invalid_argument& e) {
        throw BadOrchestratorUrl("--orchestrator '" + url + "': " + e.what() + " (expected http://HOST:PORT)");
    }
}

// The error object's message of an OpenAI-style error body, else the body itself.
std::string error_text(const std::string& body) {
    const json j = json::parse(body, nullptr, false);
    if (j.is_object() && j.contains("error") && j["error"].is_object() && j["error"].contains("message") &&
        j["error"]["message"].is_string())
        return j["error"]["message"];
    return body.substr(0, 200);
}

}  // namespace

json get_orchestrator_json(const std::string& base_url, const std::string& path, const std::string& api_key) {
    const orchestrator::WorkerUrl url = parse_url(base_url);
    orchestrator::UpstreamRequest req{url, "GET", path, {}, {}, kConnectTimeout, kTotalTimeout};
    if (!api_key.empty()) req.headers.emplace_back("Authorization", "Bearer " + api_key);
    int status = 0;
    std::string body;
    orchestrator::UpstreamEnd end;
    orchestrator::UpstreamHandlers h;
    h.on_head = [&](int s, const http::HttpHeaders&) { status = s; };
    h.on_data = [&](std::string d) { body += d; };
    h.on_end = [&](const orchestrator::UpstreamEnd& e) { end = e; };
    boost::asio::io_context ioc;
    orchestrator::call_upstream(ioc, std::move(req), std::move(h));
    ioc.run();
    const std::string where = "the orchestrator at " + url.text;
    if (!end.complete) throw OrchestratorError(where + " did not answer: " + end.error);
    const bool health_without_workers = path == "/health" && status == 503;
    if ((status < 200 || status >= 300) && !health_without_workers)
        throw OrchestratorError(where + " answered " + path + " with " + std::to_string(status) + ": " +
                                error_text(body));
    json j = json::parse(body, nullptr, false);
    if (!j.is_object()) throw OrchestratorError(where + " answered " + path + " with something other than a JSON object");
    return j;
}

}  // namespace loom::cli
