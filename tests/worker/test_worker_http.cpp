// loom-worker as clients see it: the real binary (--backend cpu, stories260K; LOOM_WORKER_BACKEND=cuda
// runs the same cases on a GPU) on a loopback port, driven over HTTP — OpenAI completions and chat (whole and
// streamed), concurrency, disconnects, /cancel, the bounded queue, malformed requests, API keys, tokenize round trips,
// SIGTERM (serving and while loading), no CUDA.
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "catch.hpp"
#include "support/run_command.h"
#include "support/test_data.h"
#include "support/worker_process.h"
#include "tokenizer/utf8.h"
#include "worker/http_client.h"
#include "worker_api.h"

namespace {

using namespace loom::test;
using Clock = std::chrono::steady_clock;

// The worker most tests share: the model's context (2048), 16 sequences. The last test case
// stops it and checks its exit (a sanitizer report would make that non-zero).
std::unique_ptr<Worker>& shared_worker_slot() {
    static std::unique_ptr<Worker> w;
    return w;
}
Worker& shared_worker() {
    auto& w = shared_worker_slot();
    if (!w) w = std::make_unique<Worker>(std::vector<std::string>{});
    return *w;
}

}  // namespace

TEST_CASE("--backend cuda without a usable CUDA device exits 3 naming the cause", "[worker]") {
    if (backend() == "cuda") return;  // the GPU host: the device is there
    const auto r = loom::test::run_command("timeout 60 " + loom::test::shell_quote(worker_bin()) + " --model " +
                                           loom::test::shell_quote(loom::test::require_stories260k().string()) +
                                           " --backend cuda --port 0");
    INFO(r.err);
    if (r.exit_code == 124) {
        WARN("a CUDA device is present: the worker served on it, so the no-CUDA path was not exercised");
        return;
    }
    REQUIRE(r.exit_code == 3);
    REQUIRE(r.err.find("--backend cuda: ") != std::string::npos);
    const bool named =
        r.err.find("no usable CUDA device") != std::string::npos || r.err.find("no CUDA support") != std::string::npos;
    REQUIRE(named);
    REQUIRE(r.err.find("--backend cpu") != std::string::npos);  // says how to run without a GPU
}

TEST_CASE("bad command lines exit 2 naming the cause", "[worker]") {
    const std::string bin = loom::test::shell_quote(worker_bin());
    const std::string model = loom::test::shell_quote(loom::test::require_stories260k().string());
    const auto run = [&](const std::string& args) { return loom::test::run_command("timeout 60 " + bin + " " + args); };
    auto r = run("--model " + model + " --backend tpu");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--backend") != std::string::npos);
    r = run("--model /nonexistent/model.gguf --backend cpu --port 0");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("cannot load /nonexistent/model.gguf") != std::string::npos);
    r = run("--model " + model + " --backend cpu --log http=loud");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("unknown level 'loud'") != std::string::npos);
    r = run("--model " + model + " --backend cpu --port " + std::to_string(shared_worker().port()));
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("Address already in use") != std::string::npos);
    r = run("--backend cpu");
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--model") != std::string::npos);
}

TEST_CASE("/health, /v1/models and keep-alive", "[worker]") {
    const int port = shared_worker().port();
    HttpConnection c(port);
    const HttpReply h = c.request("GET", "/health");
    REQUIRE(h.status == 200);
    const json j = json::parse(h.body);
    CHECK(j.at("status") == "ok");
    CHECK(j.at("model") == "stories260K");
    CHECK(j.at("backend") == backend());
    if (backend() == "cpu") CHECK(j.at("device").get<std::string>().rfind("CPU", 0) == 0);
    CHECK(j.at("context_size") == 2048);
    CHECK(j.at("kv_cache_type") == "f32");  // cpu always; cuda's default for stories260K's F32 matrices
    CHECK(j.at("batch_invariant") == (backend() == "cpu"));  // cuda only with --batch-invariant
    CHECK(j.at("sequences_max") == 16);
    CHECK(j.at("sequences_running") == 0);
    CHECK(j.at("queue_length") == 0);
    CHECK(j.at("residency_verified") == (backend() == "cuda"));  // the CPU backend holds host RAM
    CHECK(j.at("compute_capability").is_null() == (backend() == "cpu"));
    CHECK(j.at("vram_bytes").at("weights").at("used").get<uint64_t>() > 0);
    CHECK(j.at("uptime_s").get<double>() > 0);

    const HttpReply m = c.request("GET", "/v1/models");  // the same connection
    REQUIRE(m.status == 200);
    const json models = json::parse(m.body);
    CHECK(models.at("object") == "list");
    REQUIRE(models.at("data").size() == 1);
    CHECK(models["data"][0].at("id") == "stories260K");
    CHECK(models["data"][0].at("max_model_len") == 2048);

    // "Expect: 100-continue" (curl, for larger bodies): the go-ahead first, then the answer.
    const std::string body = R"({"prompt": "Hi", "max_tokens": 2})";
    const HttpReply go = c.raw(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Expect: 100-continue\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n\r\n");
    CHECK(go.status == 100);
    const HttpReply answer = c.raw(body);
    CHECK(answer.status == 200);
    CHECK(json::parse(answer.body).at("usage").at("completion_tokens") == 2);

    // Memory as it is now, not as it was at load: the CPU backend's KV blocks take RAM when first
    // written, so a worker that has answered holds some (the CUDA backend's arena is all handed out).
    const json kv = json::parse(c.request("GET", "/health").body).at("vram_bytes").at("kv_cache");
    CHECK(kv.at("used").get<uint64_t>() > 0);
    CHECK(kv.at("used").get<uint64_t>() <= kv.at("reserved").get<uint64_t>());
}

TEST_CASE("completions: whole and streamed answers agree, with usage", "[worker]") {
    const int port = shared_worker().port();
    const json body = with(kGreedy, {{"prompt", "Once upon a time"}, {"max_tokens", 40}, {"ignore_eos", true}});
    const json whole = post_ok(port, "/v1/completions", body);
    CHECK(whole.at("object") == "text_completion");
    CHECK(whole.at("model") == "stories260K");
    CHECK(whole.at("id").get<std::string>().rfind("cmpl-", 0) == 0);
    const json& choice = whole.at("choices").at(0);
    const std::string text = choice.at("text");
    CHECK(text.rfind(", there was a little girl named Lily.", 0) == 0);  // the model's greedy story
    CHECK(choice.at("finish_reason") == "length");
    const json tokenized = post_ok(port, "/tokenize", {{"prompt", "Once upon a time"}});
    CHECK(whole.at("usage").at("prompt_tokens") == tokenized.at("count"));
    CHECK(whole.at("usage").at("completion_tokens") == 40);
    CHECK(whole.at("usage").at("total_tokens") == tokenized.at("count").get<int>() + 40);

    const Streamed s = stream(port, "/v1/completions", with(body, {{"stream_options", {{"include_usage", true}}}}));
    CHECK(s.text == text);
    CHECK(s.finish_reason == "length");
    CHECK(s.usage == whole.at("usage"));
    CHECK(s.chunks.size() >= 10);                  // streamed, not one block
    CHECK(s.chunks.back().at("choices").empty());  // the usage chunk comes last

    // The same prompt as token ids, alone or in a list of one; unknown fields are ignored (as vLLM does).
    CHECK(post_ok(port, "/v1/completions", with(body, {{"prompt", tokenized.at("tokens")}}))
              .at("choices")
              .at(0)
              .at("text") == text);
    CHECK(post_ok(port, "/v1/completions", with(body, {{"prompt", {tokenized.at("tokens")}}}))
              .at("choices")
              .at(0)
              .at("text") == text);
    CHECK(post_ok(port, "/v1/completions", with(body, {{"prompt", {"Once upon a time"}}, {"frobnicate", 1}}))
              .at("choices")
              .at(0)
              .at("text") == text);
}

TEST_CASE("chat completions: the template, whole and streamed", "[worker]") {
    const int port = shared_worker().port();
    const json messages = json::array({{{"role", "system"}, {"content", "You tell stories."}},
                                       {{"role", "user"}, {"content", "Tell me about a dog."}}});
    const json body = with(kGreedy, {{"messages", messages}, {"max_tokens", 24}});
    const json whole = post_ok(port, "/v1/chat/completions", body);
    CHECK(whole.at("object") == "chat.completion");
    CHECK(whole.at("id").get<std::string>().rfind("chatcmpl-", 0) == 0);
    const json& choice = whole.at("choices").at(0);
    CHECK(choice.at("message").at("role") == "assistant");
    const std::string text = choice.at("message").at("content");
    // The prompt is the chat template (ChatML for this model) tokenized: /tokenize renders the same.
    const json tokenized = post_ok(port, "/tokenize", {{"messages", messages}});
    CHECK(whole.at("usage").at("prompt_tokens") == tokenized.at("count"));

    const Streamed s = stream(port, "/v1/chat/completions", body);
    CHECK(s.text == text);
    CHECK(s.finish_reason == choice.at("finish_reason").get<std::string>());
    REQUIRE(!s.chunks.empty());
    CHECK(s.chunks.front().at("choices").at(0).at("delta").at("role") == "assistant");
    CHECK(s.chunks.back().at("choices").at(0).at("delta").empty());  // the finish chunk
    CHECK(s.id.rfind("chatcmpl-", 0) == 0);

    // Content as a list of text parts means the same.
    const json parts = json::array(
        {{{"role", "system"}, {"content", json::array({{{"type", "text"}, {"text", "You tell stories."}}})}},
         messages[1]});
    CHECK(post_ok(port, "/v1/chat/completions", with(body, {{"messages", parts}}))
              .at("choices")
              .at(0)
              .at("message")
              .at("content") == text);

    // max_completion_tokens is the newer name of max_tokens.
    const json shorter =
        post_ok(port, "/v1/chat/completions",
                with(kGreedy, {{"messages", messages}, {"max_completion_tokens", 3}, {"ignore_eos", true}}));
    CHECK(shorter.at("usage").at("completion_tokens") == 3);
    CHECK(shorter.at("choices").at(0).at("finish_reason") == "length");
}

TEST_CASE("logprobs in OpenAI's shapes", "[worker]") {
    const int port = shared_worker().port();
    const json c = post_ok(
        port, "/v1/completions",
        with(kGreedy, {{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"logprobs", 3}, {"ignore_eos", true}}));
    const json& lp = c.at("choices").at(0).at("logprobs");
    REQUIRE(lp.at("tokens").size() == 8);
    REQUIRE(lp.at("token_logprobs").size() == 8);
    REQUIRE(lp.at("top_logprobs").size() == 8);
    REQUIRE(lp.at("text_offset").size() == 8);
    std::string joined;
    for (size_t i = 0; i < 8; ++i) {
        CHECK(lp["token_logprobs"][i].get<double>() <= 0);
        CHECK(lp["top_logprobs"][i].size() <= 3);
        CHECK(lp["top_logprobs"][i].size() >= 1);
        CHECK(lp["text_offset"][i] == joined.size());
        joined += lp["tokens"][i].get<std::string>();
    }
    CHECK(joined == c.at("choices").at(0).at("text").get<std::string>());

    const json chat = post_ok(port, "/v1/chat/completions",
                              with(kGreedy, {{"messages", {{{"role", "user"}, {"content", "Hi"}}}},
                                             {"max_tokens", 5},
                                             {"logprobs", true},
                                             {"top_logprobs", 2},
                                             {"ignore_eos", true}}));
    const json& content = chat.at("choices").at(0).at("logprobs").at("content");
    REQUIRE(content.size() == 5);
    for (const auto& e : content) {
        CHECK(e.at("token").is_string());
        CHECK(e.at("logprob").get<double>() <= 0);
        CHECK(e.at("bytes").is_array());
        REQUIRE(e.at("top_logprobs").size() == 2);
        // Greedy: the chosen token is the most likely one.
        CHECK(e["top_logprobs"][0].at("logprob").get<double>() == Approx(e["logprob"].get<double>()));
    }

    // Streamed chunks carry the logprobs of their own tokens.
    const Streamed s = stream(
        port, "/v1/completions",
        with(kGreedy, {{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"logprobs", 0}, {"ignore_eos", true}}));
    size_t n = 0;
    for (const auto& ch : s.chunks)
        for (const auto& choice : ch.at("choices"))
            if (!choice.at("logprobs").is_null()) n += choice["logprobs"].at("tokens").size();
    CHECK(n == 8);
}

TEST_CASE("return_token_ids: the prompt's and the generated token ids (vLLM's extension)", "[worker]") {
    const int port = shared_worker().port();
    const json messages = json::array({{{"role", "user"}, {"content", "Tell me about a cat."}}});
    const json body = with(kGreedy, {{"messages", messages},
                                     {"max_tokens", 12},
                                     {"ignore_eos", true},
                                     {"return_token_ids", true},
                                     {"logprobs", true}});
    const json whole = post_ok(port, "/v1/chat/completions", body);
    const json tokenized = post_ok(port, "/tokenize", {{"messages", messages}});
    CHECK(whole.at("prompt_token_ids") == tokenized.at("tokens"));
    const json& ids = whole.at("choices").at(0).at("token_ids");
    REQUIRE(ids.size() == 12);
    CHECK(post_ok(port, "/detokenize", {{"tokens", ids}}).at("prompt") ==
          whole["choices"][0].at("message").at("content"));
    const json& lp = whole["choices"][0].at("logprobs").at("content");
    REQUIRE(lp.size() == 12);

    // Streamed: prompt_token_ids once, in the role chunk; each chunk's token_ids add up to the same ids
    // in the same order as the logprobs entries.
    const Streamed s = stream(port, "/v1/chat/completions", with(body, {{"stream", true}}));
    REQUIRE(!s.chunks.empty());
    CHECK(s.chunks.front().at("prompt_token_ids") == tokenized.at("tokens"));
    json streamed_ids = json::array();
    int with_prompt_ids = 0;
    for (const auto& ch : s.chunks) {
        with_prompt_ids += ch.contains("prompt_token_ids");
        for (const auto& choice : ch.at("choices"))
            if (choice.contains("token_ids"))
                for (const auto& id : choice["token_ids"]) streamed_ids.push_back(id);
    }
    CHECK(with_prompt_ids == 1);
    CHECK(streamed_ids == ids);
    // Without the flag, neither field appears.
    const json plain = post_ok(port, "/v1/chat/completions", with(body, {{"return_token_ids", false}}));
    CHECK(!plain.contains("prompt_token_ids"));
    CHECK(!plain.at("choices").at(0).contains("token_ids"));
}

TEST_CASE("sampling parameters and stop strings", "[worker]") {
    const int port = shared_worker().port();
    const json greedy =
        post_ok(port, "/v1/completions", with(kGreedy, {{"prompt", "Once upon a time"}, {"max_tokens", 30}}));
    const std::string text = greedy.at("choices").at(0).at("text");
    REQUIRE(text.find("Lily") != std::string::npos);

    const json stopped = post_ok(port, "/v1/completions",
                                 with(kGreedy, {{"prompt", "Once upon a time"}, {"max_tokens", 30}, {"stop", "Lily"}}));
    CHECK(stopped.at("choices").at(0).at("text") == text.substr(0, text.find("Lily")));
    CHECK(stopped.at("choices").at(0).at("finish_reason") == "stop");
    const Streamed s =
        stream(port, "/v1/completions",
               with(kGreedy, {{"prompt", "Once upon a time"}, {"max_tokens", 30}, {"stop", {"zzz", "Lily"}}}));
    CHECK(s.text == text.substr(0, text.find("Lily")));
    CHECK(s.finish_reason == "stop");

    // Seeded sampling repeats itself; every parameter is accepted in range.
    const json sampled = {{"prompt", "Once upon a time"},
                          {"max_tokens", 20},
                          {"temperature", 0.9},
                          {"top_p", 0.9},
                          {"top_k", 40},
                          {"min_p", 0.05},
                          {"presence_penalty", 0.5},
                          {"frequency_penalty", 0.5},
                          {"repetition_penalty", 1.1},
                          {"seed", 1234},
                          {"logit_bias", {{"13", -100}}}};
    const json a = post_ok(port, "/v1/completions", sampled);
    const json b = post_ok(port, "/v1/completions", sampled);
    CHECK(a.at("choices").at(0).at("text") == b.at("choices").at(0).at("text"));
}

TEST_CASE("16 concurrent greedy streams each equal their solo result", "[worker]") {
    const int port = shared_worker().port();
    const std::vector<std::string> prompts = {"Once upon a time",
                                              "The cat",
                                              "Lily and Tom",
                                              "One day, a little bird",
                                              "The sun was",
                                              "Tim had a red ball",
                                              "Mom said",
                                              "In the park",
                                              "The dog ran",
                                              "She was happy",
                                              "There was a big tree",
                                              "The boy",
                                              "A little girl named Sue",
                                              "They played",
                                              "The fish",
                                              "At night"};
    std::vector<json> bodies;
    std::vector<std::string> solo;
    for (const auto& p : prompts) {
        bodies.push_back(with(kGreedy, {{"prompt", p}, {"max_tokens", 48}}));
        solo.push_back(post_ok(port, "/v1/completions", bodies.back()).at("choices").at(0).at("text"));
    }
    std::vector<std::string> texts(prompts.size()), errors(prompts.size());
    std::vector<bool> framed(prompts.size(), false);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < prompts.size(); ++i)
        threads.emplace_back([&, i] {
            try {
                SseStream s(port, "/v1/completions", with(bodies[i], {{"stream", true}}).dump());
                bool done = false;
                bool valid = s.status() == 200;
                while (auto e = s.next()) {
                    if (*e == "[DONE]") {
                        done = true;
                        continue;
                    }
                    valid = valid && !done && loom::tokenizer::is_valid_utf8(*e);
                    texts[i] += json::parse(*e).at("choices").at(0).at("text").get<std::string>();
                }
                framed[i] = valid && done;
            } catch (const std::exception& ex) {
                errors[i] = ex.what();
            }
        });
    for (auto& t : threads) t.join();
    for (size_t i = 0; i < prompts.size(); ++i) {
        INFO(prompts[i] << " " << errors[i]);
        CHECK(errors[i].empty());
        CHECK(framed[i]);
        CHECK(texts[i] == solo[i]);
    }
}

TEST_CASE("a client that disconnects mid-stream frees its sequence", "[worker]") {
    const int port = shared_worker().port();
    const double cancelled = metric(port, kCancelled);
    const json body =
        with(kGreedy, {{"prompt", "Once upon a time"}, {"max_tokens", 2000}, {"ignore_eos", true}, {"stream", true}});
    {
        SseStream s(port, "/v1/completions", body.dump());
        REQUIRE(s.next());  // decoding has begun
        wait_metric(port, kRunning, 1);
        s.disconnect();
    }
    wait_metric(port, kCancelled, cancelled + 1);
    wait_metric(port, kRunning, 0);
    const json health = json::parse(http_request(port, "GET", "/health").body);
    CHECK(health.at("kv_blocks_free") == health.at("kv_blocks_total"));

    // A whole (non-streamed) request whose client leaves is cancelled too.
    {
        HttpConnection c(port);
        c.send("POST", "/v1/completions", with(body, {{"stream", false}}).dump());
        wait_metric(port, kRunning, 1);  // the answer comes whole at the end: leave before it
        c.disconnect();
    }
    wait_metric(port, kCancelled, cancelled + 2);
    wait_metric(port, kRunning, 0);
}

TEST_CASE("/cancel ends a stream with finish_reason abort and is idempotent", "[worker]") {
    const int port = shared_worker().port();
    SseStream s(
        port, "/v1/completions",
        with(kGreedy, {{"prompt", "Once upon a time"}, {"max_tokens", 2000}, {"ignore_eos", true}, {"stream", true}})
            .dump());
    const std::string id = s.headers().at("x-request-id");
    REQUIRE(id.rfind("cmpl-", 0) == 0);
    REQUIRE(s.next());
    const json first = post_ok(port, "/cancel", {{"id", id}});
    CHECK(first.at("cancelled") == true);
    const Streamed rest = read_stream(s, false);
    CHECK(rest.finish_reason == "abort");
    const json again = post_ok(port, "/cancel", {{"id", id}});
    CHECK(again.at("cancelled") == false);
    CHECK(post_ok(port, "/cancel", {{"id", "cmpl-0123456789abcdef01234567"}}).at("cancelled") == false);
    CHECK(post_ok(port, "/cancel", {{"id", "banana"}}).at("cancelled") == false);  // any string may be an id
    CHECK(error_param(post(port, "/cancel", {{"id", 5}})) == "id");
    CHECK(post(port, "/cancel", {{"id", 5}}).status == 400);
    CHECK(post(port, "/cancel", json::object()).status == 400);
    wait_metric(port, kRunning, 0);
}

// A request body that breaks one parameter, and that parameter.
struct MalformedCase {
    std::string path;
    json body;
    std::string param;
};

// Every parameter broken one way at a time, from well-formed completions and chat bodies.
std::vector<MalformedCase> malformed_cases() {
    const json ok = {{"prompt", "Hi"}, {"max_tokens", 2}};
    const json chat_ok = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 2}};
    std::string long_prompt;
    for (int i = 0; i < 3000; ++i) long_prompt += "hello ";
    const std::string cmpl = "/v1/completions", chat = "/v1/chat/completions";
    return {
        {cmpl, with(ok, {{"temperature", "hot"}}), "temperature"},
        {cmpl, with(ok, {{"temperature", 5}}), "temperature"},
        {cmpl, with(ok, {{"temperature", -1}}), "temperature"},
        {cmpl, with(ok, {{"top_p", 0}}), "top_p"},
        {cmpl, with(ok, {{"top_p", 1.5}}), "top_p"},
        {cmpl, with(ok, {{"top_k", -5}}), "top_k"},
        {cmpl, with(ok, {{"top_k", 1.5}}), "top_k"},
        {cmpl, with(ok, {{"min_p", 2}}), "min_p"},
        {cmpl, with(ok, {{"presence_penalty", 3}}), "presence_penalty"},
        {cmpl, with(ok, {{"frequency_penalty", "x"}}), "frequency_penalty"},
        {cmpl, with(ok, {{"repetition_penalty", 0}}), "repetition_penalty"},
        {cmpl, with(ok, {{"seed", "x"}}), "seed"},
        {cmpl, with(ok, {{"seed", 1.5}}), "seed"},
        {cmpl, with(ok, {{"max_tokens", 0}}), "max_tokens"},
        {cmpl, with(ok, {{"max_tokens", "10"}}), "max_tokens"},
        {cmpl, with(ok, {{"stop", 5}}), "stop"},
        {cmpl, with(ok, {{"stop", {""}}}), "stop"},
        {cmpl, with(ok, {{"stop", {1, 2}}}), "stop"},
        {cmpl, with(ok, {{"logit_bias", {{"abc", 1}}}}), "logit_bias"},
        {cmpl, with(ok, {{"logit_bias", {{"99999", 1}}}}), "logit_bias"},
        {cmpl, with(ok, {{"logit_bias", {{"1", "x"}}}}), "logit_bias"},
        {cmpl, with(ok, {{"logit_bias", {{"1", 500}}}}), "logit_bias"},
        {cmpl, with(ok, {{"logit_bias", json::array()}}), "logit_bias"},
        {cmpl, with(ok, {{"logprobs", 50}}), "logprobs"},
        {cmpl, with(ok, {{"logprobs", true}}), "logprobs"},
        {cmpl, with(ok, {{"n", 2}}), "n"},
        {cmpl, with(ok, {{"n", "1"}}), "n"},
        {cmpl, with(ok, {{"stream", "yes"}}), "stream"},
        {cmpl, with(ok, {{"stream_options", 1}}), "stream_options"},
        {cmpl, with(ok, {{"echo", true}}), "echo"},
        {cmpl, {{"max_tokens", 2}}, "prompt"},
        {cmpl, with(ok, {{"prompt", 5}}), "prompt"},
        {cmpl, with(ok, {{"prompt", json::array()}}), "prompt"},
        {cmpl, with(ok, {{"prompt", {99999}}}), "prompt"},
        {cmpl, with(ok, {{"prompt", {"a", "b"}}}), "prompt"},
        {cmpl, with(ok, {{"prompt", long_prompt}}), "prompt"},
        {chat, {{"max_tokens", 2}}, "messages"},
        {chat, with(chat_ok, {{"messages", json::array()}}), "messages"},
        {chat, with(chat_ok, {{"messages", "hi"}}), "messages"},
        {chat, with(chat_ok, {{"messages", {{{"role", 1}, {"content", "x"}}}}}), "messages"},
        {chat, with(chat_ok, {{"messages", {{{"role", "user"}, {"content", 7}}}}}), "messages"},
        {chat, with(chat_ok, {{"messages", {{{"role", "user"}, {"content", long_prompt}}}}}), "messages"},
        {chat, with(chat_ok, {{"logprobs", 1}}), "logprobs"},
        {chat, with(chat_ok, {{"top_logprobs", 2}}), "top_logprobs"},
        {chat, with(chat_ok, {{"logprobs", true}, {"top_logprobs", 21}}), "top_logprobs"},
        {chat, with(chat_ok, {{"max_completion_tokens", -1}}), "max_completion_tokens"},
        {chat, with(chat_ok, {{"n", 3}}), "n"},
        {chat, with(chat_ok, {{"tools", {{{"type", "function"}}}}}), "tools"},
    };
}

TEST_CASE("every malformed request gets a 400 naming the parameter, and the worker keeps serving", "[worker]") {
    const int port = shared_worker().port();
    const json ok = {{"prompt", "Hi"}, {"max_tokens", 2}};
    const json chat_ok = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 2}};
    const std::string cmpl = "/v1/completions", chat = "/v1/chat/completions";
    for (const auto& c : malformed_cases()) {
        const HttpReply r = post(port, c.path, c.body);
        INFO(c.path << " " << c.body.dump().substr(0, 200) << " -> " << r.status << " " << r.body.substr(0, 300));
        CHECK(r.status == 400);
        if (r.status == 400) {
            CHECK(error_param(r) == c.param);
            CHECK(json::parse(r.body)["error"]["type"] == "invalid_request_error");
        }
    }
    // n > 1 says that it is not supported.
    CHECK(post(port, cmpl, with(ok, {{"n", 2}})).body.find("not supported") != std::string::npos);

    for (const std::string bad : {"{", "[1, 2]", "", "{\"prompt\": \"x\",}"}) {
        const HttpReply r = http_request(port, "POST", cmpl, bad);
        INFO(bad << " -> " << r.body);
        CHECK(r.status == 400);
        CHECK(error_param(r).empty());
    }
    const HttpReply unknown_model = post(port, cmpl, with(ok, {{"model", "gpt-4"}}));
    CHECK(unknown_model.status == 404);
    CHECK(error_param(unknown_model) == "model");
    CHECK(post(port, cmpl, with(ok, {{"model", "stories260K"}})).status == 200);
    CHECK(http_request(port, "GET", "/v1/nothing").status == 404);
    CHECK(http_request(port, "GET", cmpl).status == 405);

    // Transport-level limits: a body over 1 MiB, a head over 16 KiB, bytes that are not HTTP.
    {
        HttpConnection c(port);
        const std::string big(1200000, 'a');
        CHECK(c.request("POST", cmpl, "{\"prompt\": \"" + big + "\"}").status == 413);
    }
    {
        HttpConnection c(port);
        CHECK(c.request("GET", "/health", "", {{"X-Filler", std::string(20000, 'x')}}).status == 431);
    }
    {
        HttpConnection c(port);
        CHECK(c.raw("NOT HTTP AT ALL\r\n\r\n").status == 400);
        CHECK(c.closed_by_server());
    }

    // Still serving.
    CHECK(post(port, cmpl, ok).status == 200);
    CHECK(post(port, chat, chat_ok).status == 200);
    CHECK(http_request(port, "GET", "/health").status == 200);
}

TEST_CASE("/tokenize and /detokenize round trip", "[worker]") {
    const int port = shared_worker().port();
    const std::string text = "Once upon a time, there was a dog named Max. He liked to run!";
    const json t = post_ok(port, "/tokenize", {{"prompt", text}, {"add_special_tokens", false}});
    REQUIRE(t.at("count") == t.at("tokens").size());
    REQUIRE(t.at("count").get<int>() > 5);
    CHECK(t.at("max_model_len") == 2048);
    CHECK(post_ok(port, "/detokenize", {{"tokens", t.at("tokens")}}).at("prompt") == text);
    const json with_bos = post_ok(port, "/tokenize", {{"prompt", text}});
    CHECK(with_bos.at("count").get<int>() == t.at("count").get<int>() + 1);  // stories260K adds BOS
    CHECK(post(port, "/detokenize", {{"tokens", {1, 99999}}}).status == 400);
    CHECK(error_param(post(port, "/detokenize", {{"tokens", "x"}})) == "tokens");
    CHECK(error_param(post(port, "/tokenize", {{"prompt", 3}})) == "prompt");
}

TEST_CASE("--log engine=debug logs each request entering and leaving the engine, naming the backend", "[worker]") {
    Worker w({"--log", "info,engine=debug"});
    const json body = with(kGreedy, {{"prompt", "Once upon a time"}, {"max_tokens", 3}, {"ignore_eos", true}});
    CHECK(post_ok(w.port(), "/v1/completions", body).at("usage").at("completion_tokens") == 3);
    const std::string log = w.log();
    INFO(log);
    const auto line_with = [&](const std::string& what) {
        const size_t at = log.find(what);
        if (at == std::string::npos) return std::string();
        const size_t begin = log.rfind('\n', at) == std::string::npos ? 0 : log.rfind('\n', at) + 1;
        return log.substr(begin, log.find('\n', at) - begin);
    };
    const std::string added = line_with("] [engine] [debug] request ");
    CHECK(added.find("added: ") != std::string::npos);
    CHECK(added.find("at most 3 new") != std::string::npos);
    CHECK(added.find("[" + backend() + " ") != std::string::npos);  // every line names backend and device
    const std::string finished = line_with("+ 3 completion tokens");
    CHECK(finished.find("] [engine] [debug] request ") != std::string::npos);
    CHECK(finished.find("finished (max_tokens): ") != std::string::npos);
    CHECK(line_with("warm-up request").find("[engine] [debug]") != std::string::npos);
    CHECK(log.find("] [] [") ==
          std::string::npos);  // no line without a component (stories260K has no chat template: a warning)
}

TEST_CASE("a full queue answers 429 with Retry-After", "[worker]") {
    Worker w({"--max-seqs", "1", "--max-queue", "1"});
    const int port = w.port();
    const json body =
        with(kGreedy, {{"prompt", "Once upon a time"}, {"max_tokens", 2000}, {"ignore_eos", true}, {"stream", true}});
    SseStream running(port, "/v1/completions", body.dump());
    REQUIRE(running.next());  // holds the only sequence
    SseStream waiting(port, "/v1/completions", body.dump());
    REQUIRE(waiting.status() == 200);
    const std::string waiting_id = waiting.headers().at("x-request-id");
    const HttpReply refused = post(port, "/v1/completions", with(body, {{"stream", false}}));
    CHECK(refused.status == 429);
    CHECK(refused.headers.count("retry-after") == 1);
    CHECK(json::parse(refused.body).at("error").at("type") == "rate_limit_error");
    CHECK(metric(port, "loom_requests_rejected_total{reason=\"queue_full\"}") == 1);
    const json health = json::parse(http_request(port, "GET", "/health").body);
    CHECK(health.at("sequences_running") == 1);
    CHECK(health.at("queue_length") == 1);

    running.disconnect();
    CHECK(post_ok(port, "/cancel", {{"id", waiting_id}}).at("cancelled") == true);
    CHECK(read_stream(waiting, false).finish_reason == "abort");
    wait_metric(port, kRunning, 0);
    CHECK(post(port, "/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 2}}).status == 200);
}

TEST_CASE("API keys guard everything but /health and /metrics", "[worker]") {
    Worker w({"--api-key", "k1", "--api-key", "k2"});
    const int port = w.port();
    const json body = {{"prompt", "Hi"}, {"max_tokens", 2}};
    const HttpReply none = post(port, "/v1/completions", body);
    CHECK(none.status == 401);
    CHECK(json::parse(none.body).at("error").at("type") == "authentication_error");
    CHECK(post(port, "/v1/completions", body, {{"Authorization", "Bearer nope"}}).status == 401);
    CHECK(post(port, "/v1/completions", body, {{"Authorization", "k1"}}).status == 401);
    CHECK(post(port, "/v1/completions", body, {{"Authorization", "Bearer k1"}}).status == 200);
    CHECK(post(port, "/v1/completions", body, {{"Authorization", "Bearer k2"}}).status == 200);
    CHECK(http_request(port, "GET", "/v1/models").status == 401);
    CHECK(post(port, "/tokenize", {{"prompt", "x"}}).status == 401);
    CHECK(post(port, "/cancel", {{"id", 1}}).status == 401);
    CHECK(http_request(port, "GET", "/health").status == 200);
    CHECK(http_request(port, "GET", "/metrics").status == 200);
}

TEST_CASE("SIGTERM lets running streams finish, then exits 0", "[worker]") {
    Worker w({});
    const int port = w.port();
    SseStream s(
        port, "/v1/completions",
        with(kGreedy, {{"prompt", "Once upon a time"}, {"max_tokens", 300}, {"ignore_eos", true}, {"stream", true}})
            .dump());
    REQUIRE(s.next());
    w.signal(SIGTERM);
    const Streamed rest = read_stream(s, false);
    CHECK(rest.finish_reason == "length");
    const auto code = w.wait_exit(std::chrono::seconds(30));
    INFO(w.log());
    REQUIRE(code.has_value());
    CHECK(*code == 0);
    CHECK(w.log().find("drained; exiting") != std::string::npos);
}

TEST_CASE("SIGTERM while the model is still loading exits 0 at once", "[worker]") {
    // A FIFO nobody writes as the model file: the worker listens, then blocks opening it for as long
    // as the test likes — a load that would take minutes.
    const std::filesystem::path fifo = temp_dir() / ("loading-" + std::to_string(getpid()) + ".gguf");
    std::filesystem::remove(fifo);
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    const std::filesystem::path log_path = temp_dir() / ("loading-" + std::to_string(getpid()) + ".log");
    const pid_t pid =
        spawn_logged({worker_bin(), "--model", fifo.string(), "--backend", "cpu", "--port", "0"}, log_path);
    const auto log = [&] {
        std::ifstream in(log_path);
        return std::string(std::istreambuf_iterator<char>(in), {});
    };
    const auto deadline = [](int seconds) { return std::chrono::steady_clock::now() + std::chrono::seconds(seconds); };
    for (const auto until = deadline(30); log().find("listening on") == std::string::npos;) {
        REQUIRE(std::chrono::steady_clock::now() < until);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const auto sent = std::chrono::steady_clock::now();
    REQUIRE(kill(pid, SIGTERM) == 0);
    int status = 0;
    pid_t waited = 0;
    for (const auto until = deadline(10); (waited = waitpid(pid, &status, WNOHANG)) == 0;) {
        if (std::chrono::steady_clock::now() >= until) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (waited == 0) {  // still loading: the signal was not taken
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    INFO(log());
    CHECK(waited == pid);
    CHECK(std::chrono::steady_clock::now() - sent < std::chrono::seconds(5));
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(log().find("SIGTERM while loading: exiting before serving") != std::string::npos);
    std::filesystem::remove(fifo);
}

TEST_CASE("SmolLM2: chat through its own template, streamed and concurrent", "[worker][smollm2]") {
    // Not require_smollm2(): its absence must not skip the stories260K cases above.
    std::filesystem::path model;
    if (const char* v = std::getenv("LOOM_SMOLLM2"); v && *v)
        model = v;
    else if (const char* c = std::getenv("LOOM_MODEL_CACHE"); c && *c)
        model = std::filesystem::path(c) / "SmolLM2-135M-Instruct.Q4_1.gguf";
    if (model.empty() || !std::filesystem::exists(model)) {
        WARN("SmolLM2 is not in the model cache (test-models/fetch smollm2-135m-instruct-q4_1): case not run");
        return;
    }
    Worker w({"--ctx", "512", "--max-seqs", "4"}, model);
    const int port = w.port();
    const json health = json::parse(http_request(port, "GET", "/health").body);
    CHECK(health.at("model") == "SmolLM2-135M-Instruct.Q4_1");

    const std::vector<std::string> questions = {"What is the capital of France?", "Write a haiku about the sea.",
                                                "Name three colors.", "What is 2 + 2?"};
    std::vector<json> bodies;
    std::vector<json> solo;
    for (const auto& q : questions) {
        bodies.push_back(with(kGreedy, {{"messages", {{{"role", "user"}, {"content", q}}}}, {"max_tokens", 24}}));
        solo.push_back(post_ok(port, "/v1/chat/completions", bodies.back()));
    }
    const std::string paris = solo[0].at("choices").at(0).at("message").at("content");
    INFO(paris);
    CHECK(paris.find("Paris") != std::string::npos);
    // The template's <|im_end|> ends the answer before max_tokens, as a stop token: not in the text.
    CHECK(paris.find("<|im_end|>") == std::string::npos);

    const Streamed s = stream(port, "/v1/chat/completions", bodies[0]);
    CHECK(s.text == paris);
    CHECK(s.finish_reason == solo[0].at("choices").at(0).at("finish_reason").get<std::string>());

    std::vector<std::string> texts(questions.size()), errors(questions.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < questions.size(); ++i)
        threads.emplace_back([&, i] {
            try {
                SseStream st(port, "/v1/chat/completions", with(bodies[i], {{"stream", true}}).dump());
                while (auto e = st.next())
                    if (*e != "[DONE]")
                        texts[i] += json::parse(*e)
                                        .at("choices")
                                        .at(0)
                                        .at("delta")
                                        .value("content", json(""))
                                        .get<std::string>();
            } catch (const std::exception& ex) {
                errors[i] = ex.what();
            }
        });
    for (auto& t : threads) t.join();
    for (size_t i = 0; i < questions.size(); ++i) {
        INFO(questions[i] << " " << errors[i]);
        CHECK(errors[i].empty());
        CHECK(texts[i] == solo[i].at("choices").at(0).at("message").at("content").get<std::string>());
    }
}

TEST_CASE("the shared worker drains on SIGTERM and exits 0 after all of the above", "[worker]") {
    auto& w = shared_worker_slot();
    if (!w) return;  // a filtered run that never started it
    w->signal(SIGTERM);
    const auto code = w->wait_exit(std::chrono::seconds(30));
    INFO(w->log());
    REQUIRE(code.has_value());
    CHECK(*code == 0);
    w.reset();
}
