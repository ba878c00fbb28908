// OrchestratorApp: parses client requests, hands them to ProxyProducers, and answers /health,
// /v1/models, /metrics and /cancel from the worker pool.
#include "orchestrator/orchestrator_app.h"

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <csignal>
#include <map>
#include <nlohmann/json.hpp>
#include <pthread.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <thread>

#include "http/api_keys.h"
#include "http/daemon_signals.h"
#include "http/http_server.h"
#include "http/secure_random.h"
#include "orchestrator/metrics.h"
#include "orchestrator/proxy.h"
#include "orchestrator/upstream.h"
#include "orchestrator/worker_pool.h"

namespace loom::orchestrator {

using http::error_response;
using http::HttpRequest;
using http::HttpResponse;
using http::json_response;
using http::HttpServer;
using nlohmann::json;

namespace {

std::shared_ptr<spdlog::logger> log() {
    if (auto l = spdlog::get("orchestrator")) return l;
    return spdlog::default_logger();
}

// A whole answer that another thread sets later (a call to a worker): /cancel's.
class LateAnswer : public http::ResponseProducer {
public:
    void start(std::function<void()> notify) override {
        std::lock_guard lock(mu_);
        notify_ = std::move(notify);
        if (answer_) notify_();
    }
    Progress poll() override {
        std::lock_guard lock(mu_);
        Progress p;
        if (!answer_) return p;
        p.done = true;
        p.whole = std::move(*answer_);
        return p;
    }
    void abandoned() override {}
    void set(HttpResponse r) {
        std::lock_guard lock(mu_);
        answer_ = std::move(r);
        if (notify_) notify_();
    }

private:
    std::mutex mu_;
    std::function<void()> notify_;
    std::optional<HttpResponse> answer_;
};

}  // namespace

void configure_logging(const std::string& level) {
    const auto l = spdlog::level::from_str(level);
    if (l == spdlog::level::off && level != "off")
        throw std::invalid_argument("--log: unknown level '" + level +
                                    "' (trace, debug, info, warn, error, critical, off)");
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    for (const char* name : {"http", "orchestrator"}) {
        spdlog::drop(name);
        auto logger = std::make_shared<spdlog::logger>(name, sink);
        logger->set_level(l);
        spdlog::register_logger(logger);
    }
    spdlog::set_default_logger(spdlog::get("orchestrator"));
}

struct OrchestratorApp::State {
    Options o;
    boost::asio::io_context ioc;  // the client side: health polls and upstream calls
    Metrics metrics;
    WorkerPool pool;
    http::ApiKeys keys;
    std::mutex live_mu;
    std::map<std::string, std::weak_ptr<ProxyProducer>> live;  // orchestrator id -> request, for /cancel
    size_t live_swept_at = 64;  // the size of `live` at which its ended requests are swept next
    HttpServer server;

    explicit State(Options options)
        : o(std::move(options)),
          pool(ioc, o.workers, o.routing, metrics),
          keys(o.api_keys) {}

    // The route's handler behind the API-key check.
    HttpServer::Handler guarded(HttpServer::Handler h) const { return keys.guarded(std::move(h)); }

    // The request as it goes upstream: a seed drawn when the client gave none (so a continuation can
    // reproduce the run), token ids always asked for (the failover needs them).
    ProxiedRequest parse(const HttpRequest& req, bool chat) {
        ProxiedRequest p;
        p.chat = chat;
        p.body = json::parse(req.body);  // json::exception: the caller's 400
        if (!p.body.is_object()) throw std::invalid_argument("the body must be a JSON object");
        const auto field = [&](const char* name) { return p.body.contains(name) ? p.body[name] : json(); };
        if (!field("model").is_null() && !field("model").is_string()) throw std::domain_error("model");
        if (!field("stream").is_null() && !field("stream").is_boolean()) throw std::domain_error("stream");
        p.model = field("model").is_string() ? field("model").get<std::string>() : "";
        p.stream = field("stream").is_boolean() && field("stream").get<bool>();
        p.want_token_ids = field("return_token_ids").is_boolean() && field("return_token_ids").get<bool>();
        for (const char* name : chat ? std::vector<const char*>{"max_completion_tokens", "max_tokens"}
                                     : std::vector<const char*>{"max_tokens"})
            if (!p.max_tokens && field(name).is_number_integer()) p.max_tokens = field(name).get<int64_t>();
        if (field("seed").is_null()) p.body["seed"] = http::random_u64() >> 1;
        p.seed = p.body["seed"].dump();
        p.body["return_token_ids"] = true;
        p.id = (chat ? "chatcmpl-" : "cmpl-") + http::random_hex(12);
        p.authorization = req.header("authorization");
        return p;
    }

    HttpResponse generate(const HttpRequest& req, bool chat) {
        ProxiedRequest p;
        try {
            p = parse(req, chat);
        } catch (const json::exception& e) {
            metrics.count_request(400);
            return error_response(400, std::string("the body is not valid JSON: ") + e.what(), "invalid_request_error");
        } catch (const std::domain_error& e) {
            metrics.count_request(400);
            return error_response(400, std::string(e.what()) + " has the wrong type", "invalid_request_error", e.what());
        } catch (const std::invalid_argument& e) {
            metrics.count_request(400);
            return error_response(400, e.what(), "invalid_request_error");
        }
        const std::string id = p.id;
        const bool stream = p.stream;
        auto producer = std::make_shared<ProxyProducer>(ProxyContext{ioc, pool, metrics, o.retries}, std::move(p));
        if (auto refused = producer->route()) {
            metrics.count_request(refused->status);
            return *refused;
        }
        {
            std::lock_guard lock(live_mu);
            // Ended requests are swept when the map has doubled since the last sweep: sweeping on every
            // request cost O(streams) each, O(streams^2) in all (bench/orchestrator_overhead).
            if (live.size() >= live_swept_at) {
                std::erase_if(live, [](const auto& kv) { return kv.second.expired(); });
                live_swept_at = std::max<size_t>(64, 2 * live.size());
            }
            live[id] = producer;
        }
        log()->debug("{} {}: {}{}", req.method, req.path, id, stream ? ", streaming" : "");
        HttpResponse r;
        r.producer = producer;  // a whole answer at first; a 200 stream upstream makes it a stream
        return r;
    }

    // POST /cancel {"id"}: forwarded to the worker running that request under its own id, with the
    // caller's key (the worker checks that the key owns it); 200 {"cancelled": bool}.
    HttpResponse cancel(const HttpRequest& req) {
        const json body = json::parse(req.body, nullptr, false);
        if (!body.is_object() || !body.contains("id") || !body["id"].is_string())
            return error_response(400, "id must be a request id (the X-Request-Id header)", "invalid_request_error",
                                  "id");
        const std::string id = body["id"];
        std::optional<std::pair<WorkerUrl, std::string>> target;
        {
            std::lock_guard lock(live_mu);
            if (auto it = live.find(id); it != live.end())
                if (auto p = it->second.lock()) target = p->live_upstream();
        }
        if (!target) return json_response(200, {{"id", id}, {"cancelled", false}});
        auto answer = std::make_shared<LateAnswer>();
        auto reply = std::make_shared<std::string>();
        UpstreamRequest up{target->first, "POST", "/cancel", json{{"id", target->second}}.dump(), {}};
        if (!req.header("authorization").empty()) up.headers.emplace_back("Authorization", req.header("authorization"));
        up.total_timeout = std::chrono::milliseconds(5000);
        UpstreamHandlers h;
        h.on_data = [reply](std::string d) { *reply += d; };
        h.on_end = [answer, reply, id](const UpstreamEnd& end) {
            const json j = end.complete ? json::parse(*reply, nullptr, false) : json();
            const bool cancelled = j.is_object() && j.value("cancelled", false);
            answer->set(json_response(200, {{"id", id}, {"cancelled", cancelled}}));
        };
        call_upstream(ioc, std::move(up), std::move(h));
        HttpResponse r;
        r.producer = answer;
        return r;
    }

    HttpResponse health() const {
        json workers = json::array();
        for (const WorkerStatus& w : pool.status())
            workers.push_back({{"url", w.url}, {"state", state_name(w.state)}, {"model", w.model},
                               {"backend", w.backend}, {"device", w.device}, {"running", w.running},
                               {"waiting", w.waiting}, {"outstanding_tokens", w.outstanding_tokens}});
        const bool ok = pool.any_ready();
        return json_response(ok ? 200 : 503, {{"status", ok ? "ok" : "no_worker_ready"}, {"workers", workers}});
    }

    HttpResponse models() const {
        json data = json::array();
        std::set<std::string> seen;
        for (const WorkerStatus& w : pool.status())
            if (w.state == WorkerState::ready && !w.model.empty() && seen.insert(w.model).second)
                data.push_back({{"id", w.model}, {"object", "model"}, {"owned_by", "loom"}});
        return json_response(200, {{"object", "list"}, {"data", data}});
    }

    void add_routes() {
        server.route("GET", "/health", [this](const HttpRequest&) { return health(); });
        server.route("GET", "/metrics", [this](const HttpRequest&) {
            HttpResponse r;
            r.content_type = "text/plain; version=0.0.4; charset=utf-8";
            r.body = metrics.render(pool.count_by_state());
            return r;
        });
        server.route("GET", "/v1/models", guarded([this](const HttpRequest&) { return models(); }));
        server.route("POST", "/v1/completions", guarded([this](const HttpRequest& r) { return generate(r, false); }));
        server.route("POST", "/v1/chat/completions",
                     guarded([this](const HttpRequest& r) { return generate(r, true); }));
        server.route("POST", "/cancel", guarded([this](const HttpRequest& r) { return cancel(r); }));
    }
};

OrchestratorApp::OrchestratorApp(Options options) : s_(std::make_unique<State>(std::move(options))) {}

OrchestratorApp::~OrchestratorApp() = default;

int OrchestratorApp::run() {
    State& s = *s_;
    const sigset_t signals = http::block_stop_signals();

    s.add_routes();
    uint16_t port = 0;
    try {
        port = s.server.listen(s.o.host, static_cast<uint16_t>(s.o.port));
    } catch (const std::exception& e) {
        log()->error("{}", e.what());
        return kExitBadInput;
    }
    auto work = boost::asio::make_work_guard(s.ioc);
    std::vector<std::thread> threads;
    for (int i = 0; i < s.o.client_threads; ++i) threads.emplace_back([&s] { s.ioc.run(); });
    s.pool.on_ejected([&s](const std::string& url) {
        std::vector<std::shared_ptr<ProxyProducer>> running;
        {
            std::lock_guard lock(s.live_mu);
            for (const auto& [id, weak] : s.live)
                if (auto p = weak.lock()) running.push_back(std::move(p));
        }
        for (const auto& p : running) p->worker_lost(url);
    });
    s.pool.start();
    s.server.start(s.o.http_threads);
    // Tests and supervisors read this line for the port (with --port 0 it is chosen by the system).
    log()->info("listening on http://{}:{} ({} workers, routing {})", s.o.host, port, s.o.workers.size(),
                s.o.routing == Routing::least_load ? "least-load" : "round-robin");

    const int sig = sigwaitinfo(&signals, nullptr);
    log()->info("{}: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    s.server.stop(std::chrono::milliseconds(2000));
    s.pool.stop();
    work.reset();
    s.ioc.stop();
    for (auto& t : threads) t.join();
    return 0;
}

}  // namespace loom::orchestrator
