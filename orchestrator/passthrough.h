// Requests relayed to one ready worker as they are (/tokenize, /detokenize, /v1/models/{id}): the
// worker chosen by the model named, its status, content type and body relayed to the client.
#pragma once

#include <string>

#include "http/http_server.h"
#include "orchestrator/proxy.h"

namespace loom::orchestrator {

struct PassthroughRequest {
    std::string method;  // "GET" or "POST"
    std::string target;  // the path sent upstream
    std::string body;
    std::string model;          // "" = any ready worker
    std::string authorization;  // forwarded as it came ("" when none)
};

// The client's response: one that a worker's answer completes later (X-Worker names it), or 404/503
// at once when no worker serves the model. A refused or broken connection, or a 5xx, is tried on
// another worker (at most ctx.retries times) before the client gets 502 or that 5xx.
http::HttpResponse pass_through(const ProxyContext& ctx, PassthroughRequest req);

}  // namespace loom::orchestrator
