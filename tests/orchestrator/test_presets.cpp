// Presets (--config "presets"): a preset's answer equals the same request written out by hand and
// sent straight to its base model's worker; request fields win; /v1/models lists presets; a preset
// without a served base model answers as an unknown model; bad presets exit 2 naming the field.
// Also the fields /health relays for `loom ps`.
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "catch.hpp"
#include "orchestrator/orchestrator_process.h"
#include "orchestrator/presets.h"
#include "support/run_command.h"
#include "worker/worker_api.h"

namespace {

using namespace loom::test;

const json kPresets = json::array({
    {{"name", "teller"},
     {"model", "stories260K"},
     {"system", "Lily had a red ball and a big dog."},
     {"parameters", {{"temperature", 0}, {"max_tokens", 24}, {"stop", json::array({"zebra"})}}}},
    {{"name", "dreamer"},
     {"model", "stories260K"},
     {"system", "Tom saw a bird in the sky."},
     {"parameters",
      {{"temperature", 0.9},
       {"top_k", 40},
       {"top_p", 0.9},
       {"repetition_penalty", 1.1},
       {"seed", 7},
       {"max_tokens", 20}}}},
    {{"name", "ghost"}, {"model", "no-such-model"}, {"system", "Boo."}},
});

std::string write_file(const std::string& name, const std::string& text) {
    const auto path = temp_dir() / name;
    std::ofstream(path) << text;
    return path.string();
}

// One CPU worker on stories260K and an orchestrator with kPresets from a config file.
struct PresetCluster {
    Worker worker{std::vector<std::string>{}};
    OrchestratorProcess orch{{worker.port()},
                             {"--config", write_file("presets.json", json{{"presets", kPresets}}.dump())}};
};

const json kUser = json::array({{{"role", "user"}, {"content", "Tell me a story"}}});

std::vector<int> ids_of(const json& answer) {
    return answer.at("choices").at(0).at("token_ids").get<std::vector<int>>();
}

// The preset's request through the orchestrator and the written-out one straight to the worker.
void check_same(PresetCluster& c, const std::string& path, const json& via_preset, const json& by_hand) {
    const HttpReply r = post(c.orch.port(), path, with(via_preset, {{"return_token_ids", true}}));
    INFO(r.body);
    REQUIRE(r.status == 200);
    const json mine = json::parse(r.body);
    const json direct = post_ok(c.worker.port(), path, with(by_hand, {{"return_token_ids", true}}));
    CHECK(ids_of(mine) == ids_of(direct));
    CHECK(mine.at("usage") == direct.at("usage"));
    CHECK(mine.at("model") == via_preset.at("model"));  // answers name the preset the client asked for
    CHECK(r.headers.at("x-worker") == worker_url(c.worker.port()));
    CHECK(r.headers.at("x-backend").rfind(backend(), 0) == 0);
}

}  // namespace

TEST_CASE("a preset's answer equals the request written out by hand; request fields win", "[presets]") {
    PresetCluster c;
    const json system_teller = {{"role", "system"}, {"content", kPresets[0]["system"]}};
    json hand_messages = kUser;
    hand_messages.insert(hand_messages.begin(), system_teller);
    const std::string chat = "/v1/chat/completions";

    SECTION("greedy chat: the system prompt through the chat template, the defaults, the stop strings") {
        check_same(c, chat, {{"model", "teller"}, {"messages", kUser}},
                   {{"model", "stories260K"},
                    {"messages", hand_messages},
                    {"temperature", 0},
                    {"max_tokens", 24},
                    {"stop", {"zebra"}},
                    {"seed", 1}});
        // The system prompt is really in the prompt: the base model without it sees fewer tokens.
        const json plain =
            post_ok(c.orch.port(), chat, {{"model", "stories260K"}, {"messages", kUser}, {"max_tokens", 1}});
        const json preset = post_ok(c.orch.port(), chat, {{"model", "teller"}, {"messages", kUser}, {"max_tokens", 1}});
        CHECK(preset.at("usage").at("prompt_tokens").get<int>() > plain.at("usage").at("prompt_tokens").get<int>() + 5);
        // The dashboard's recent requests name the preset the client asked for, not its base model.
        const json recent = json::parse(http_request(c.orch.port(), "GET", "/dashboard/state").body).at("requests");
        int teller = 0;
        for (const json& r : recent) teller += r.at("model") == "teller";
        CHECK(teller == 2);
    }
    SECTION("seeded sampling, streamed: the preset's seed and sampling fields") {
        json hand = hand_messages;
        hand[0]["content"] = kPresets[1]["system"];
        const json by_hand = with(kPresets[1]["parameters"], {{"model", "stories260K"}, {"messages", hand}});
        const json direct = post_ok(c.worker.port(), chat, with(by_hand, {{"return_token_ids", true}}));
        SseStream s(
            c.orch.port(), chat,
            json{{"model", "dreamer"}, {"messages", kUser}, {"stream", true}, {"return_token_ids", true}}.dump());
        REQUIRE(s.status() == 200);
        CHECK(s.headers().at("x-seed") == "7");
        const Streamed st = read_stream(s, true);
        std::vector<int> ids;
        for (const json& ch : st.chunks) {
            CHECK(ch.at("model") == "dreamer");
            for (const json& choice : ch.at("choices"))
                if (choice.contains("token_ids"))
                    for (int id : choice["token_ids"]) ids.push_back(id);
        }
        CHECK(ids == ids_of(direct));
        CHECK(st.text == direct.at("choices").at(0).at("message").at("content").get<std::string>());
    }
    SECTION("the request's own fields and system message win over the preset's") {
        const json own = json::array({{{"role", "system"}, {"content", "Sam ran home."}}, kUser[0]});
        check_same(
            c, chat,
            {{"model", "dreamer"}, {"messages", own}, {"temperature", 0.5}, {"seed", 3}, {"max_completion_tokens", 6}},
            {{"model", "stories260K"},
             {"messages", own},
             {"temperature", 0.5},
             {"seed", 3},
             {"max_completion_tokens", 6},
             {"top_k", 40},
             {"top_p", 0.9},
             {"repetition_penalty", 1.1}});
    }
    SECTION("completions: the defaults and stop strings apply, the system prompt does not (raw text)") {
        check_same(c, "/v1/completions", {{"model", "teller"}, {"prompt", "Once upon a time"}},
                   {{"model", "stories260K"},
                    {"prompt", "Once upon a time"},
                    {"temperature", 0},
                    {"max_tokens", 24},
                    {"stop", {"zebra"}},
                    {"seed", 1}});
    }
}

TEST_CASE("presets in /v1/models; one without a served base model is an unknown model", "[presets]") {
    PresetCluster c;
    const json models = json::parse(http_request(c.orch.port(), "GET", "/v1/models").body);
    std::map<std::string, json> by_id;
    for (const json& m : models.at("data")) by_id[m.at("id")] = m;
    REQUIRE(by_id.contains("stories260K"));
    REQUIRE(by_id.contains("teller"));
    CHECK(by_id["teller"].at("parent") == "stories260K");
    CHECK(by_id["dreamer"].at("root") == "stories260K");
    CHECK_FALSE(by_id.contains("ghost"));
    CHECK(json::parse(http_request(c.orch.port(), "GET", "/v1/models/teller").body).at("parent") == "stories260K");

    const HttpReply missing = http_request(c.orch.port(), "GET", "/v1/models/ghost");
    CHECK(missing.status == 404);
    CHECK(json::parse(missing.body).at("error").at("code") == "model_not_found");

    // The same 404 as a name nothing serves, but for the name.
    const HttpReply ghost = post(c.orch.port(), "/v1/chat/completions", {{"model", "ghost"}, {"messages", kUser}});
    const HttpReply unknown = post(c.orch.port(), "/v1/chat/completions", {{"model", "nobody"}, {"messages", kUser}});
    REQUIRE(ghost.status == 404);
    REQUIRE(unknown.status == 404);
    std::string expected = unknown.body;
    expected.replace(expected.find("nobody"), 6, "ghost");
    CHECK(ghost.body == expected);
}

TEST_CASE("/health relays each worker's backend, context, VRAM use and tokens/s", "[presets][health]") {
    PresetCluster c;
    post_ok(c.orch.port(), "/v1/completions",
            {{"model", "teller"}, {"prompt", "Once"}, {"max_tokens", 8}, {"ignore_eos", true}});
    const json w = json::parse(http_request(c.orch.port(), "GET", "/health").body).at("workers").at(0);
    CHECK(w.at("backend").get<std::string>().rfind(backend(), 0) == 0);
    CHECK(w.at("context_size").get<int>() > 0);
    CHECK(w.at("vram_bytes").is_object());
    CHECK(w.at("vram_bytes").at("weights").at("reserved").get<int64_t>() > 0);
    CHECK(w.at("tokens_per_s").get<double>() == Approx(8.0 / 60));  // 8 tokens over the last minute
}

TEST_CASE("bad presets exit 2 naming the preset and the field", "[presets][config]") {
    const std::string bin = orchestrator_bin();
    const auto run_with = [&](const json& presets) {
        const json config = {{"workers", {"http://127.0.0.1:1"}}, {"presets", presets}};
        return run_command(shell_quote(bin) + " --config " + shell_quote(write_file("bad.json", config.dump())));
    };
    const json good = {{"name", "p"}, {"model", "m"}};
    const std::vector<std::pair<json, std::string>> cases = {
        {json::array({with(good, {{"parameters", {{"temperature", "hot"}}}})}),
         "preset 1 'p': parameters.temperature must be a number in [0, 2]"},
        {json::array({with(good, {{"parameters", {{"top_p", 0}}}})}), "parameters.top_p must be a number in (0, 1]"},
        {json::array({with(good, {{"parameters", {{"max_tokens", 1.5}}}})}),
         "parameters.max_tokens must be an integer >= 1"},
        {json::array({with(good, {{"parameters", {{"stop", json::array({""})}}}})}), "parameters.stop must be"},
        {json::array({with(good, {{"parameters", {{"temprature", 1}}}})}), "parameters.temprature is not a parameter"},
        {json::array({{{"name", "p"}}}), "preset 1 'p': model must be a non-empty string"},
        {json::array({good, with(good, {{"sytem", "x"}})}), "preset 2: unknown field 'sytem'"},
        {json::array({good, good}), "preset 2: the name 'p' is taken"},
        {json::array({good, 3}), "'presets' must be an array of objects"},
        {good, "'presets' must be an array of objects"},
    };
    for (const auto& [presets, message] : cases) {
        const CommandResult r = run_with(presets);
        INFO(presets.dump() << " -> " << r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.err.find(message) != std::string::npos);
    }
    const CommandResult flag = run_command(shell_quote(bin) + " --worker http://127.0.0.1:1 --preset '{\"name\":'");
    CHECK(flag.exit_code == 2);
    CHECK(flag.err.find("preset 1: not valid JSON") != std::string::npos);
}

TEST_CASE("apply_preset leaves fields the client set and a system message it sent", "[presets][unit]") {
    using namespace loom::orchestrator;
    const Preset p = parse_preset(kPresets[1], "preset 2");
    json body = {{"model", "dreamer"}, {"messages", kUser}, {"top_k", 5}, {"max_tokens", nullptr}};
    apply_preset(p, body, true);
    CHECK(body.at("model") == "stories260K");
    CHECK(body.at("top_k") == 5);
    CHECK(body.at("max_tokens") == 20);  // null counts as not given
    CHECK(body.at("messages").size() == 2);
    CHECK(body.at("messages")[0].at("role") == "system");
    json completion = {{"model", "dreamer"}, {"prompt", "Hi"}};
    apply_preset(p, completion, false);
    CHECK_FALSE(completion.contains("messages"));
    CHECK(completion.at("prompt") == "Hi");
    CHECK(completion.at("seed") == 7);
}
