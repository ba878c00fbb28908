// Chunk rewriting for relayed answers.
#include "orchestrator/sse_relay.h"

namespace loom::orchestrator {

using nlohmann::json;

namespace {

// A completions choice as a chat chunk's: the text becomes delta.content (the continuation asked for
// chat-shaped logprobs, so those stay as they are).
void to_chat_choice(json& choice) {
    json delta = json::object();
    if (choice.contains("text") && choice["text"].is_string() && !choice["text"].get<std::string>().empty())
        delta["content"] = choice["text"];
    choice.erase("text");
    choice["delta"] = std::move(delta);
}

}  // namespace

ChunkTokens rewrite_chunk(json& j, const RelayRules& rules) {
    ChunkTokens t;
    if (!j.is_object()) return t;
    j["id"] = rules.id;
    if (!rules.model.empty() && j.contains("model")) j["model"] = rules.model;
    if (j.contains("prompt_token_ids")) {
        if (j["prompt_token_ids"].is_array()) t.prompt_ids = j["prompt_token_ids"].get<std::vector<int>>();
        // A continuation's prompt holds the tokens already streamed; the client had the real prompt first.
        if (rules.continuation || !rules.want_token_ids) j.erase("prompt_token_ids");
    }
    if (rules.continuation && rules.chat) j["object"] = "chat.completion.chunk";
    if (j.contains("choices") && j["choices"].is_array()) {
        for (json& c : j["choices"]) {
            if (c.contains("token_ids") && c["token_ids"].is_array())
                for (const json& id : c["token_ids"]) t.ids.push_back(id.get<int>());
            if (!rules.want_token_ids) c.erase("token_ids");
            if (rules.continuation && rules.chat) to_chat_choice(c);
        }
    }
    if (rules.continuation && j.contains("usage") && j["usage"].is_object()) {
        // The continuation's prompt included the resumed tokens; the client's run generated them.
        json& u = j["usage"];
        u["prompt_tokens"] = u.value("prompt_tokens", int64_t{0}) - rules.resumed;
        u["completion_tokens"] = u.value("completion_tokens", int64_t{0}) + rules.resumed;
    }
    return t;
}

}  // namespace loom::orchestrator
