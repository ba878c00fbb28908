// loom-worker against what OpenAI and vLLM clients rely on, and against careless or hostile bodies:
// numbers beyond a double, unseeded sampling, max_tokens beyond the context, stream_options without
// a stream, OpenAI's error codes, GET /v1/models/{id}, usage: null chunks, logprobs 0, "abort",
// unguessable request ids, /cancel owned by the API key, no model path shown, the Bearer scheme.
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
    CHECK(texts.size() > 1);  // stories260K at temperature 1.5 over 24 tokens: three equal answers would mean a fixed seed
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
    CHECK(post(port, "/v1/completions", {{"prompt", {1, 2, 3, 4}}, {"max_tokens", 2044}, {"stream", true},
                                         {"stop", "x"}, {"temperature", 0}})
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
    CHECK(post(port, "/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 2}, {"stream_options", nullptr}}).status == 200);
}

TEST_CASE("errors carry OpenAI's codes: model_not_found, context_length_exceeded, rate_limit_exceeded", "[worker][openai]") {
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
    const json body = {{"prompt", "Once upon a time"}, {"max_tokens", 5}, {"ignore_eos", true}, {"temperature", 0},
                       {"logprobs", 0}};
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

TEST_CASE("with API keys, /cancel ends only the requests of the same key; abort is the finish reason", "[worker][openai]") {
    Worker w({"--api-key", "alice-key", "--api-key", "bob-key"});
    const int port = w.port();
    const HeaderList alice = {{"Authorization", "Bearer alice-key"}}, bob = {{"Authorization", "Bearer bob-key"}};
    const json body = {{"prompt", "Once upon a time"}, {"max_tokens", 2000}, {"ignore_eos", true}, {"stream", true},
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
    for (const char* no : {"Bearer S3CRET", "Bearer s3cre", "Bearer s3cret2", "Bearers3cret", "Basic s3cret", "s3cret"}) {
        INFO(no);
        CHECK(post(port, "/v1/completions", body, {{"Authorization", no}}).status == 401);
    }
}
