// What the worker test programs share: the real loom-worker on this program's backend, requests and
// SSE streams read with their framing checked, Prometheus samples and OpenAI error objects.
#pragma once

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "support/test_data.h"
#include "support/worker_process.h"
#include "tokenizer/utf8.h"
#include "worker/http_client.h"

namespace loom::test {

using json = nlohmann::json;

// The backend every worker here runs on: cpu, unless LOOM_WORKER_BACKEND names cuda (the GPU host).
inline std::string backend() {
    const char* b = std::getenv("LOOM_WORKER_BACKEND");
    return b && *b ? b : "cpu";
}

// loom-worker on stories260K (or `model`) with this program's backend and `extra` arguments.
struct Worker : WorkerProcess {
    explicit Worker(std::vector<std::string> extra, std::filesystem::path model = {})
        : WorkerProcess(model.empty() ? require_stories260k() : model, backend(), std::move(extra)) {}
};

// A worker on the CPU backend whatever LOOM_WORKER_BACKEND says: for tests whose timing assumes the
// CPU's pace (a request that must still be running a second later), not the backend's results.
struct CpuWorker : WorkerProcess {
    explicit CpuWorker(std::vector<std::string> extra)
        : WorkerProcess(require_stories260k(), "cpu", std::move(extra)) {}
};

inline HttpReply post(int port, const std::string& path, const json& body, const HeaderList& headers = {}) {
    return http_request(port, "POST", path, body.dump(), headers);
}

inline json post_ok(int port, const std::string& path, const json& body) {
    const HttpReply r = post(port, path, body);
    INFO(path << " " << body.dump() << " -> " << r.status << " " << r.body);
    REQUIRE(r.status == 200);
    return json::parse(r.body);
}

// A Prometheus sample: the first line starting with `series` (name plus its labels as rendered),
// or nullopt when the worker renders none (a labelled counter appears once it counts).
inline std::optional<double> find_metric(int port, const std::string& series) {
    const HttpReply r = http_request(port, "GET", "/metrics");
    REQUIRE(r.status == 200);
    size_t at = 0;
    while ((at = r.body.find(series, at)) != std::string::npos) {
        if (at == 0 || r.body[at - 1] == '\n') {
            const size_t sp = r.body.find(' ', at + series.size());
            return std::stod(r.body.substr(sp + 1, r.body.find('\n', sp) - sp - 1));
        }
        at += series.size();
    }
    return std::nullopt;
}

inline double metric(int port, const std::string& series) {
    const auto v = find_metric(port, series);
    if (!v) FAIL("no metric " << series << " in\n" << http_request(port, "GET", "/metrics").body);
    return v.value_or(0);
}

inline const std::string kRunning = "vllm:num_requests_running{model_name=\"stories260K\"}";
inline const std::string kCancelled = "loom_requests_cancelled_total";

// Waits until the metric holds `value` (the engine loop updates it at its next step).
inline void wait_metric(int port, const std::string& series, double value) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    double seen = metric(port, series);
    while (seen != value && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        seen = metric(port, series);
    }
    INFO(series);
    REQUIRE(seen == value);
}

// A streamed answer: its chunks, and what they add up to.
struct Streamed {
    std::vector<json> chunks;  // every event before [DONE]
    std::string text;
    std::string finish_reason;
    json usage;
    std::string id;
};

// Reads a stream to its end, checking the SSE framing: JSON events, each complete UTF-8, and
// data: [DONE] last.
inline Streamed read_stream(SseStream& s, bool chat) {
    Streamed out;
    bool done = false;
    while (auto event = s.next()) {
        REQUIRE_FALSE(done);  // nothing after [DONE]
        if (*event == "[DONE]") {
            done = true;
            continue;
        }
        REQUIRE(loom::tokenizer::is_valid_utf8(*event));
        json j = json::parse(*event);
        REQUIRE(!j.contains("error"));
        out.id = j.at("id").get<std::string>();
        REQUIRE(j.at("object") == (chat ? "chat.completion.chunk" : "text_completion"));
        if (j.contains("usage") && !j["usage"].is_null()) out.usage = j["usage"];
        for (const auto& c : j.at("choices")) {
            const json& piece = chat ? c.at("delta").value("content", json("")) : c.at("text");
            out.text += piece.get<std::string>();
            if (!c.at("finish_reason").is_null()) out.finish_reason = c["finish_reason"].get<std::string>();
        }
        out.chunks.push_back(std::move(j));
    }
    REQUIRE(done);
    REQUIRE(loom::tokenizer::is_valid_utf8(s.raw()));
    return out;
}

inline Streamed stream(int port, const std::string& path, json body) {
    body["stream"] = true;
    SseStream s(port, path, body.dump());
    REQUIRE(s.status() == 200);
    REQUIRE(s.headers().at("content-type") == "text/event-stream");
    REQUIRE(s.headers().at("transfer-encoding") == "chunked");
    return read_stream(s, path.find("chat") != std::string::npos);
}

// The OpenAI error object, checked for shape; returns its param.
inline std::string error_param(const HttpReply& r) {
    const json j = json::parse(r.body);
    const json& e = j.at("error");
    REQUIRE(e.at("message").is_string());
    REQUIRE(e.at("type").is_string());
    return e.at("param").is_null() ? std::string() : e.at("param").get<std::string>();
}

inline const json kGreedy = {{"temperature", 0}};

inline json with(json base, const json& extra) {
    for (const auto& [k, v] : extra.items()) base[k] = v;
    return base;
}

}  // namespace loom::test
