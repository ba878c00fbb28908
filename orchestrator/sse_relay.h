// What the orchestrator changes in a worker's answer before the client sees it: its own id, token
// ids only when asked for, and a continuation's completion chunks turned back into chat chunks.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace loom::orchestrator {

struct RelayRules {
    std::string id;               // the orchestrator's request id
    bool chat = false;            // the client asked /v1/chat/completions
    bool want_token_ids = false;  // the client sent return_token_ids: true
    bool continuation = false;    // the chunk comes from a /v1/completions continuation
    int64_t resumed = 0;          // tokens relayed before the continuation started (its usage counts them)
    std::string model;            // written over the answer's `model` (a preset's name); "": left as it came
};

// What one chunk carried, for the failover bookkeeping.
struct ChunkTokens {
    std::vector<int> prompt_ids;  // prompt_token_ids, when the chunk had them
    std::vector<int> ids;         // the generated token ids of its choices
};

// Rewrites one streamed chunk (or a whole answer) in place by the rules; returns its token ids.
ChunkTokens rewrite_chunk(nlohmann::json& j, const RelayRules& rules);

}  // namespace loom::orchestrator
