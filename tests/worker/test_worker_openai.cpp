// loom-worker against what OpenAI and vLLM clients rely on, and against careless or hostile bodies:
// numbers beyond a double, unseeded sampling, max_tokens beyond the context, stream_options without
// a stream, OpenAI's error codes, GET /v1/models/{id}, usage: null chunks, logprobs 0, "abort",
// unguessable request ids, /cancel owned by the API key, no model path shown, the Bearer scheme,
// and loom's resume_tokens: a stream continued after a failover equals the uninterrupted one.
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "catch.hpp"
#include "support/test_data.h"
#include "worker/http_client.h"
#include "worker_api.h"

namespace {

using namespace loom::test;

// The worker most cases share: stories260K's context (2048), 16 sequences.
Worker& shared_worker() {
    static std::unique_ptr<Worker> w;
    if (!w) w = std::make_unique<Worker>(std::vector<std::string>{});
    return *w;
}

const std::string kInvalid = "loom_request_errors_total{kind=\"invalid_request\"}";
const json kChatHi = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 2}};

json error_of(const HttpReply& r) {
    INFO(r.status << " " << r.body);
    return json::parse(r.body).at("error");
}

// Whole completions text and the seed the worker reports for it.
struct Sampled {
    std::string text;
    std::string seed;
};

Sampled sample(int port, const json& body) {
    const HttpReply r = post(port, "/v1/completions", body);
    INFO(r.body);
    REQUIRE(r.status == 200);
    REQUIRE(r.headers.count("x-seed") == 1);
    return {json::parse(r.body).at("choices").at(0).at("text").get<std::string>(), r.headers.at("x-seed")};
}

// A streamed answer with return_token_ids, cut where each chunk's tokens end.
struct Generated {
    std::vector<int> prompt_ids, ids;
    std::string text, finish_reason;
    std::vector<std::pair<size_t, size_t>> cuts;  // (tokens so far, text so far) after each chunk with tokens
    json usage;
};

Generated generate(int port, const std::string& path, json body) {
    body["return_token_ids"] = true;
    body["stream_options"] = {{"include_usage", true}};
    const Streamed s = stream(port, path, body);
    Generated g;
    g.text = s.text;
    g.finish_reason = s.finish_reason;
    g.usage = s.usage;
    const bool chat = path.find("chat") != std::string::npos;
    std::string so_far;
    for (const json& c : s.chunks) {
        if (c.contains("prompt_token_ids")) g.prompt_ids = c["prompt_token_ids"].get<std::vector<int>>();
        for (const json& choice : c.at("choices")) {
            so_far += (chat ? choice.at("delta").value("content", json("")) : choice.at("text")).get<std::string>();
            if (!choice.contains("token_ids")) continue;
            for (int id : choice["token_ids"]) g.ids.push_back(id);
            g.cuts.emplace_back(g.ids.size(), so_far.size());
        }
    }
    return g;
}

// The text a client had received when the k-th token arrived (k must end a chunk: tokens whose
// text is held back arrive with it, so a client only ever holds the tokens of the text it has).
size_t text_sent_with(const Generated& g, size_t k) {
    for (const auto& [tokens, text] : g.cuts)
        if (tokens == k) return text;
    FAIL("no chunk ends at token " << k);
    return 0;
}

// The failover request: the first run's prompt and first k tokens as ids, the rest to generate.
json resumed_body(const json& body, const Generated& first, size_t k) {
    std::vector<int> prompt = first.prompt_ids;
    prompt.insert(prompt.end(), first.ids.begin(), first.ids.begin() + static_cast<std::ptrdiff_t>(k));
    json r = body;
    r.erase("messages");
    r["prompt"] = prompt;
    r["resume_tokens"] = k;
    r["max_tokens"] = first.ids.size() - k;
    return r;
}

// Resumes `first` after k tokens on /v1/completions and checks that the continuation is the rest of it.
void check_resumed(int port, const json& body, const Generated& first, size_t k) {
    INFO("resumed after " << k << " of " << first.ids.size() << " tokens");
    const Generated rest = generate(port, "/v1/completions", resumed_body(body, first, k));
    CHECK(rest.ids == std::vector<int>(first.ids.begin() + static_cast<std::ptrdiff_t>(k), first.ids.end()));
    CHECK(rest.text == first.text.substr(text_sent_with(first, k)));
    CHECK(rest.finish_reason == first.finish_reason);
    CHECK(rest.usage.at("completion_tokens") == first.ids.size() - k);
    CHECK(rest.usage.at("prompt_tokens") == first.prompt_ids.size() + k);
}

// Token-exact resumption needs logits that do not depend on prefill versus decode: true of the CPU
// backend (engine_invariance_tests), not yet of the CUDA one (docs/API.md).
bool exact_resume_backend() {
    if (backend() == "cpu") return true;
    WARN("resume_tokens continuation checks run on the CPU backend only, not " << backend());
    return false;
}

const json kPenalized = {{"temperature", 0.9},
                         {"seed", 4242},
                         {"presence_penalty", 0.6},
                         {"frequency_penalty", 0.4},
                         {"repetition_penalty", 1.3}};

}  // namespace

TEST_CASE("a number beyond a double is a 400 on every JSON endpoint, counted as a request error", "[worker][openai]") {
    const int port = shared_worker().port();
    const double before = find_metric(port, kInvalid).value_or(0);
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"/v1/completions", R"({"prompt": "Hi", "max_tokens": 2, "ignored": 1e400})"},
        {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "Hi"}], "temperature": -1e400})"},
        {"/tokenize", R"({"prompt": "Hi", "x": [1e400]})"},
        {"/detokenize", R"({"tokens": [1, 2], "x": 1E+999})"},
        {"/cancel", R"({"id": "cmpl-x", "x": 1e400})"},
    };
    for (const auto& [path, body] : cases) {
        const HttpReply r = http_request(port, "POST", path, body);
        INFO(path << " " << body << " -> " << r.status << " " << r.body);
        CHECK(r.status == 400);
        CHECK(error_of(r).at("type") == "invalid_request_error");
        CHECK(r.body.find("internal error") == std::string::npos);
    }
    CHECK(metric(port, kInvalid) == before + static_cast<double>(cases.size()));
    CHECK(shared_worker().log().find("[error]") == std::string::npos);
    CHECK(post(port, "/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 2}}).status == 200);
}

TEST_CASE("unseeded sampling differs per request; the X-Seed header repeats a run", "[worker][openai]") {
    const int port = shared_worker().port();
    const json body = {{"prompt", "Once upon a time"}, {"max_tokens", 24}, {"temperature", 1.5}};
    std::set<std::string> texts, seeds;
    std::vector<Sampled> runs;
    for (int i = 0; i < 3; ++i) {
        runs.push_back(sample(port, body));
        texts.insert(runs.back().text);
        seeds.insert(runs.back().seed);
    }
    CHECK(seeds.size() == 3);
    CHECK(texts.size() >
          1);  // stories260K at temperature 1.5 over 24 tokens: three equal answers would mean a fixed seed
    for (const auto& run : runs) {
        const Sampled again = sample(port, with(body, {{"seed", std::stoll(run.seed)}}));
        CHECK(again.text == run.text);
        CHECK(again.seed == run.seed);
    }
    // A seed the client gives is the one reported.
    CHECK(sample(port, with(body, {{"seed", 1234}})).seed == "1234");
    // Streams report it too, in the header sent before the first event.
    SseStream s(port, "/v1/completions", with(body, {{"stream", true}, {"seed", 77}}).dump());
    CHECK(s.headers().at("x-seed") == "77");
    read_stream(s, false);
}

TEST_CASE("max_tokens beyond the context is refused with the numbers, as OpenAI and vLLM do", "[worker][openai]") {
    const int port = shared_worker().port();
    const HttpReply r = post(port, "/v1/completions", {{"prompt", {1, 2, 3, 4}}, {"max_tokens", 2100}});
    CHECK(r.status == 400);
    const json e = error_of(r);
    CHECK(e.at("param") == "max_tokens");
    CHECK(e.at("code") == "context_length_exceeded");
    const std::string message = e.at("message");
    for (const char* number : {"2100", "4", "2048", "2044"}) CHECK(message.find(number) != std::string::npos);

    const HttpReply chat = post(port, "/v1/chat/completions", with(kChatHi, {{"max_completion_tokens", 5000}}));
    CHECK(chat.status == 400);
    CHECK(error_of(chat).at("param") == "max_completion_tokens");
    CHECK(error_of(chat).at("code") == "context_length_exceeded");

    std::string long_prompt;
    for (int i = 0; i < 3000; ++i) long_prompt += "hello ";
    const HttpReply too_long = post(port, "/v1/completions", {{"prompt", long_prompt}});
    CHECK(too_long.status == 400);
    CHECK(error_of(too_long).at("code") == "context_length_exceeded");

    // Exactly the room left is fine, and so is a default that the room cuts short.
    CHECK(post(port, "/v1/completions",
               {{"prompt", {1, 2, 3, 4}}, {"max_tokens", 2044}, {"stream", true}, {"stop", "x"}, {"temperature", 0}})
              .status == 200);
    const std::vector<int> near_full(2040, 100);
    const json cut = post_ok(port, "/v1/completions", {{"prompt", near_full}, {"ignore_eos", true}});
    CHECK(cut.at("usage").at("completion_tokens") == 8);
    CHECK(cut.at("choices").at(0).at("finish_reason") == "length");
}

TEST_CASE("stream_options without stream: true is a 400", "[worker][openai]") {
    const int port = shared_worker().port();
    const json so = {{"include_usage", true}};
    for (const auto& [path, body] : std::vector<std::pair<std::string, json>>{
             {"/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 2}, {"stream_options", so}}},
             {"/v1/chat/completions", with(kChatHi, {{"stream", false}, {"stream_options", so}})}}) {
        const HttpReply r = post(port, path, body);
        CHECK(r.status == 400);
        CHECK(error_of(r).at("param") == "stream_options");
    }
    CHECK(post(port, "/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 2}, {"stream_options", nullptr}}).status ==
          200);
}

TEST_CASE("errors carry OpenAI's codes: model_not_found, context_length_exceeded, rate_limit_exceeded",
          "[worker][openai]") {
    const int port = shared_worker().port();
    const HttpReply unknown = post(port, "/v1/completions", {{"prompt", "Hi"}, {"model", "gpt-4"}});
    CHECK(unknown.status == 404);
    CHECK(error_of(unknown).at("type") == "invalid_request_error");
    CHECK(error_of(unknown).at("code") == "model_not_found");
    CHECK(error_of(unknown).at("param") == "model");
    const HttpReply bad_type = post(port, "/v1/completions", {{"prompt", "Hi"}, {"temperature", "hot"}});
    CHECK(error_of(bad_type).at("code").is_null());  // OpenAI has no code for it

    Worker w({"--max-seqs", "1", "--max-queue", "0"});
    const json body = {{"prompt", "Once upon a time"}, {"max_tokens", 2000}, {"ignore_eos", true}, {"stream", true}};
    SseStream running(w.port(), "/v1/completions", body.dump());
    REQUIRE(running.next());
    const HttpReply full = post(w.port(), "/v1/completions", body);
    CHECK(full.status == 429);
    CHECK(full.headers.count("retry-after") == 1);
    CHECK(error_of(full).at("code") == "rate_limit_exceeded");
    running.disconnect();
}

TEST_CASE("GET /v1/models/{id} answers the model object, or 404 model_not_found", "[worker][openai]") {
    const int port = shared_worker().port();
    const HttpReply r = http_request(port, "GET", "/v1/models/stories260K");
    REQUIRE(r.status == 200);
    const json m = json::parse(r.body);
    CHECK(m.at("id") == "stories260K");
    CHECK(m.at("object") == "model");
    CHECK(m.at("max_model_len") == 2048);
    CHECK(json::parse(http_request(port, "GET", "/v1/models").body).at("data").at(0) == m);
    CHECK(http_request(port, "GET", "/v1/models/stories%32%360K").status == 200);  // percent-escapes decoded
    const HttpReply unknown = http_request(port, "GET", "/v1/models/gpt-4");
    CHECK(unknown.status == 404);
    CHECK(error_of(unknown).at("code") == "model_not_found");
    CHECK(http_request(port, "POST", "/v1/models/stories260K", "{}").status == 405);
}

TEST_CASE("with include_usage every chunk carries usage: null but the usage chunk", "[worker][openai]") {
    const int port = shared_worker().port();
    for (const std::string path : {"/v1/completions", "/v1/chat/completions"}) {
        const bool chat = path.find("chat") != std::string::npos;
        const json base = chat ? kChatHi : json{{"prompt", "Once upon a time"}};
        const json body = with(base, {{"max_tokens", 6}, {"ignore_eos", true}, {"temperature", 0}});
        SseStream s(port, path, with(body, {{"stream", true}, {"stream_options", {{"include_usage", true}}}}).dump());
        const Streamed got = read_stream(s, chat);
        REQUIRE(got.chunks.size() >= 3);
        for (size_t i = 0; i + 1 < got.chunks.size(); ++i) {
            INFO(got.chunks[i].dump());
            REQUIRE(got.chunks[i].contains("usage"));
            CHECK(got.chunks[i]["usage"].is_null());
        }
        CHECK(got.chunks.back().at("choices").empty());
        CHECK(got.chunks.back().at("usage").at("completion_tokens") == 6);
        SseStream plain(port, path, with(body, {{"stream", true}}).dump());
        for (const json& c : read_stream(plain, chat).chunks) CHECK(!c.contains("usage"));
    }
}

TEST_CASE("completions with logprobs 0 give no empty top_logprobs objects", "[worker][openai]") {
    const int port = shared_worker().port();
    const json body = {
        {"prompt", "Once upon a time"}, {"max_tokens", 5}, {"ignore_eos", true}, {"temperature", 0}, {"logprobs", 0}};
    const json lp = post_ok(port, "/v1/completions", body).at("choices").at(0).at("logprobs");
    CHECK(lp.at("tokens").size() == 5);
    CHECK(lp.at("token_logprobs").size() == 5);
    CHECK(lp.at("top_logprobs").is_null());
    SseStream s(port, "/v1/completions", with(body, {{"stream", true}}).dump());
    for (const json& c : read_stream(s, false).chunks) {
        const json& l = c.at("choices").at(0).at("logprobs");
        if (!l.is_null()) CHECK(l.at("top_logprobs").is_null());
    }
    const json two = post_ok(port, "/v1/completions", with(body, {{"logprobs", 2}})).at("choices").at(0).at("logprobs");
    REQUIRE(two.at("top_logprobs").size() == 5);
    for (const json& alternatives : two["top_logprobs"]) CHECK(alternatives.size() == 2);
}

TEST_CASE("request ids are random, not counters", "[worker][openai]") {
    const int port = shared_worker().port();
    const std::regex cmpl("cmpl-[0-9a-f]{24}"), chat("chatcmpl-[0-9a-f]{24}");
    std::set<std::string> ids;
    for (int i = 0; i < 4; ++i) {
        const HttpReply r = post(port, "/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 1}});
        const std::string id = json::parse(r.body).at("id");
        CHECK(std::regex_match(id, cmpl));
        CHECK(r.headers.at("x-request-id") == id);
        ids.insert(id);
    }
    CHECK(ids.size() == 4);
    CHECK(std::regex_match(post_ok(port, "/v1/chat/completions", kChatHi).at("id").get<std::string>(), chat));
    // Old counter-shaped ids name nothing; numbers are refused.
    CHECK(post_ok(port, "/cancel", {{"id", "cmpl-1"}}).at("cancelled") == false);
    CHECK(error_of(post(port, "/cancel", {{"id", 7}})).at("param") == "id");
}

TEST_CASE("with API keys, /cancel ends only the requests of the same key; abort is the finish reason",
          "[worker][openai]") {
    Worker w({"--api-key", "alice-key", "--api-key", "bob-key"});
    const int port = w.port();
    const HeaderList alice = {{"Authorization", "Bearer alice-key"}}, bob = {{"Authorization", "Bearer bob-key"}};
    const json body = {{"prompt", "Once upon a time"},
                       {"max_tokens", 2000},
                       {"ignore_eos", true},
                       {"stream", true},
                       {"temperature", 0}};
    SseStream s(port, "/v1/completions", body.dump(), alice);
    REQUIRE(s.status() == 200);
    const std::string id = s.headers().at("x-request-id");
    REQUIRE(s.next());
    const HttpReply by_bob = post(port, "/cancel", {{"id", id}}, bob);
    REQUIRE(by_bob.status == 200);
    CHECK(json::parse(by_bob.body).at("cancelled") == false);
    for (int i = 0; i < 3; ++i) REQUIRE(s.next());  // still generating
    const HttpReply by_alice = post(port, "/cancel", {{"id", id}}, alice);
    CHECK(json::parse(by_alice.body).at("cancelled") == true);
    CHECK(read_stream(s, false).finish_reason == "abort");
    CHECK(post(port, "/cancel", {{"id", id}}).status == 401);
}

TEST_CASE("clients never see the model file's path", "[worker][openai]") {
    const int port = shared_worker().port();
    const std::string path = std::filesystem::absolute(require_stories260k()).string();
    const std::string dir = std::filesystem::absolute(require_stories260k()).parent_path().string();
    for (const std::string target : {"/health", "/v1/models", "/v1/models/stories260K"}) {
        const std::string body = http_request(port, "GET", target).body;
        INFO(target << " -> " << body);
        CHECK(body.find(dir) == std::string::npos);
        CHECK(body.find(".gguf") == std::string::npos);
    }
    // Nor is a guessed path accepted as the model's name (no oracle for the file system).
    CHECK(post(port, "/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 1}, {"model", path}}).status == 404);
    CHECK(shared_worker().log().find(require_stories260k().string()) != std::string::npos);  // the log may say it
}

TEST_CASE("the Bearer scheme is matched in any case, the key exactly", "[worker][openai]") {
    Worker w({"--api-key", "s3cret"});
    const int port = w.port();
    const json body = {{"prompt", "Hi"}, {"max_tokens", 1}};
    for (const char* ok : {"Bearer s3cret", "bearer s3cret", "BEARER s3cret", "bEaReR   s3cret"}) {
        INFO(ok);
        CHECK(post(port, "/v1/completions", body, {{"Authorization", ok}}).status == 200);
    }
    for (const char* no :
         {"Bearer S3CRET", "Bearer s3cre", "Bearer s3cret2", "Bearers3cret", "Basic s3cret", "s3cret"}) {
        INFO(no);
        CHECK(post(port, "/v1/completions", body, {{"Authorization", no}}).status == 401);
    }
}

TEST_CASE("resume_tokens continues a stream token for token and text for text (greedy; seeded with penalties)",
          "[worker][openai][resume]") {
    if (!exact_resume_backend()) return;
    const int port = shared_worker().port();
    for (const json& sampling : {kGreedy, kPenalized}) {
        INFO(sampling.dump());
        const json body = with(sampling, {{"prompt", "Once upon a time"}, {"max_tokens", 40}, {"ignore_eos", true}});
        const Generated first = generate(port, "/v1/completions", body);
        REQUIRE(first.ids.size() == 40);
        for (size_t k : {1, 15, 39}) check_resumed(port, body, first, k);
    }
}

TEST_CASE("a chat answer resumes on /v1/completions from its prompt_token_ids", "[worker][openai][resume]") {
    if (!exact_resume_backend()) return;
    const int port = shared_worker().port();
    const json body = with(
        kPenalized,
        {{"messages", {{{"role", "user"}, {"content", "Tell me a story"}}}}, {"max_tokens", 40}, {"ignore_eos", true}});
    const Generated first = generate(port, "/v1/chat/completions", body);
    REQUIRE(first.ids.size() == 40);
    REQUIRE_FALSE(first.prompt_ids.empty());
    for (size_t k : {1, 15, 39}) check_resumed(port, body, first, k);
}

TEST_CASE("a stop string spanning the resume point ends the resumed request", "[worker][openai][resume]") {
    if (!exact_resume_backend()) return;
    const int port = shared_worker().port();
    const json body = with(kPenalized, {{"prompt", "Once upon a time"}, {"max_tokens", 40}, {"ignore_eos", true}});
    const Generated first = generate(port, "/v1/completions", body);
    REQUIRE(first.ids.size() == 40);
    // A resume point k after a chunk of >= 3 characters followed by one of >= 2, and a stop string of
    // the last 2 characters before k and the first 2 after it that the text holds nowhere earlier.
    std::string stop;
    size_t k = 0;
    for (size_t i = 1; i + 1 < first.cuts.size() && stop.empty(); ++i) {
        const size_t start = first.cuts[i - 1].second, at = first.cuts[i].second, next = first.cuts[i + 1].second;
        const std::string candidate = first.text.substr(at - 2, 4);
        if (at - start >= 3 && next - at >= 2 && first.text.find(candidate) == at - 2) {
            stop = candidate;
            k = first.cuts[i].first;
        }
    }
    REQUIRE_FALSE(stop.empty());
    INFO("stop " << json(stop).dump() << " across token " << k);

    const json stopping = with(body, {{"stop", stop}});
    const Generated whole = generate(port, "/v1/completions", stopping);
    REQUIRE(whole.finish_reason == "stop");
    REQUIRE(whole.text == first.text.substr(0, whole.text.size()));
    REQUIRE(whole.ids.size() >= k);

    const Generated rest = generate(port, "/v1/completions", resumed_body(stopping, whole, k));
    CHECK(rest.finish_reason == "stop");
    CHECK(whole.text.substr(0, text_sent_with(whole, k)) + rest.text == whole.text);
    CHECK(rest.ids == std::vector<int>(whole.ids.begin() + static_cast<std::ptrdiff_t>(k), whole.ids.end()));
}

TEST_CASE("resume_tokens out of range or not an integer is a 400 naming it", "[worker][openai][resume]") {
    const int port = shared_worker().port();
    const json body = {{"prompt", {1, 2, 3, 4}}, {"max_tokens", 2}, {"temperature", 0}};
    for (const json& bad : {json(-1), json(4), json("x"), json(2.5), json(true)}) {
        const HttpReply r = post(port, "/v1/completions", with(body, {{"resume_tokens", bad}}));
        INFO(bad.dump() << " -> " << r.status << " " << r.body);
        CHECK(r.status == 400);
        CHECK(error_param(r) == "resume_tokens");
    }
    const HttpReply chat = post(port, "/v1/chat/completions", with(kChatHi, {{"resume_tokens", 100000}}));
    CHECK(chat.status == 400);
    CHECK(error_param(chat) == "resume_tokens");
    for (int ok : {0, 3}) CHECK(post(port, "/v1/completions", with(body, {{"resume_tokens", ok}})).status == 200);
}
