// OrchestratorApp: parses client requests, hands them to ProxyProducers (generations) or relays them
// (/tokenize, /detokenize, /v1/models/{id}), admits registering workers, and answers /health,
// /v1/models, /metrics and /cancel from the worker pool.
#include "orchestrator/orchestrator_app.h"

#include <atomic>
#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <csignal>
#include <filesystem>
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
#include "http/url.h"
#include "orchestrator/admin_api.h"
#include "orchestrator/admission.h"
#include "orchestrator/dashboard.h"
#include "orchestrator/metrics.h"
#include "orchestrator/model_registry.h"
#include "orchestrator/passthrough.h"
#include "orchestrator/prefix_router.h"
#include "orchestrator/presets.h"
#include "orchestrator/proxy.h"
#include "orchestrator/registration.h"
#include "orchestrator/request_log.h"
#include "orchestrator/spawn_plan.h"
#include "orchestrator/supervisor.h"
#include "orchestrator/upstreams.h"
#include "orchestrator/worker_metrics.h"
#include "orchestrator/worker_pool.h"
#include "orchestrator/worker_status_json.h"

namespace loom::orchestrator {

using http::error_response;
using http::HttpRequest;
using http::HttpResponse;
using http::json_response;
using http::HttpServer;
using nlohmann::json;

namespace {

// Spawned workers drain themselves on SIGTERM; those still there after this get SIGKILL.
constexpr std::chrono::milliseconds kWorkerStopGrace{10'000};

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
    boost::asio::io_context ioc;  // the client side: health polls, queue timers and calls made off the server threads
    Metrics metrics;
    WorkerPool pool;
    Admission admission;
    PrefixRouter router;
    http::ApiKeys keys;
    std::map<std::string, KeyEntry> key_entries;  // --api-keys, by key
    Registry registry;
    WorkerMetrics worker_metrics;
    RequestLog requests;  // the dashboard's recent requests and tokens/s
    std::mutex live_mu;
    std::map<std::string, std::weak_ptr<ProxyProducer>> live;  // orchestrator id -> request, for /cancel
    HttpServer server{"loom-orchestrator"};
    Upstreams upstreams{o.upstream};         // after the server: its sockets belong to the server's io_contexts
    std::atomic<bool> stopping{false};       // SIGTERM came: new requests get 503
    std::unique_ptr<Supervisor> supervisor;  // the spawned workers (--spawn), if any
    std::unique_ptr<AdminApi> admin;
    std::unique_ptr<ModelRegistry> on_demand;  // configured models loaded on demand, if any
    size_t live_swept_at = 64;                 // the size of `live` at which its ended requests are swept next

    explicit State(Options options)
        : o(std::move(options)),
          pool(ioc, o.workers, o.routing, metrics),
          admission(
              ioc, pool,
              AdmissionOptions{o.queue_size, std::chrono::milliseconds(static_cast<int64_t>(o.promote_after_s * 1000)),
                               o.worker_queue}),
          router(o.routing),
          keys(all_keys(o)),
          registry(ioc, pool, o.register_secret),
          worker_metrics(ioc, pool) {
        for (const KeyEntry& k : o.key_file) key_entries[k.key] = k;
    }

    static std::vector<std::string> all_keys(const Options& o) {
        std::vector<std::string> keys = o.api_keys;
        for (const KeyEntry& k : o.key_file) keys.push_back(k.key);
        return keys;
    }

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
        if (field("model").is_string())
            if (const auto it = o.presets.find(field("model").get<std::string>()); it != o.presets.end()) {
                apply_preset(it->second, p.body, chat);  // before the fields below are read: its defaults count
                p.preset = it->first;
            }
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
        p.admission = take_admission_fields(p.body);
        if (!p.admission.timeout_s && o.request_timeout_s > 0) p.admission.timeout_s = o.request_timeout_s;
        p.session = req.header("x-session-id");
        if (p.session.empty() && field("user").is_string()) p.session = field("user").get<std::string>();
        return p;
    }

    HttpResponse generate(const HttpRequest& req, bool chat) {
        const auto arrived = std::chrono::steady_clock::now();
        if (stopping) {
            metrics.count_request("", 503);
            return error_response(503, "the orchestrator is shutting down", "server_error", {}, "shutting_down");
        }
        ProxiedRequest p;
        std::optional<std::chrono::milliseconds> keep_alive;
        try {
            p = parse(req, chat);
            keep_alive = take_keep_alive(p.body);
        } catch (const json::exception& e) {
            metrics.count_request("", 400);
            return error_response(400, std::string("the body is not valid JSON: ") + e.what(), "invalid_request_error");
        } catch (const BadField& e) {
            metrics.count_request("", 400);
            return error_response(400, e.what(), "invalid_request_error", e.param);
        } catch (const std::domain_error& e) {
            metrics.count_request("", 400);
            return error_response(400, std::string(e.what()) + " has the wrong type", "invalid_request_error",
                                  e.what());
        } catch (const std::invalid_argument& e) {
            metrics.count_request("", 400);
            return error_response(400, e.what(), "invalid_request_error");
        }
        if (auto over = limit_key(req, p)) {
            metrics.count_request("", over->status);
            return *over;
        }
        p.arrived = arrived;
        const std::string id = p.id;
        const bool stream = p.stream;
        const std::string key_name = p.key_name;
        const std::string preset = p.preset;
        if (on_demand) on_demand->requested(p.model, keep_alive);  // loads it when no worker serves it
        auto producer = std::make_shared<ProxyProducer>(context(), std::move(p));
        if (auto refused = producer->route()) {
            metrics.count_request("", refused->status);  // the name may be one no worker has: no label
            // A preset whose base model no worker serves is, to its client, a model that does not exist.
            if (refused->status == 404 && !preset.empty()) return no_worker_response(NoWorker::unknown_model, preset);
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
        log()->debug("{} {}: {}{}{}", req.method, req.path, id, stream ? ", streaming" : "",
                     key_name.empty() ? "" : ", key " + key_name);
        HttpResponse r;
        r.producer = producer;  // a whole answer at first; a 200 stream upstream makes it a stream
        return r;
    }

    // The key's name for the logs, and 429 when the key from --api-keys is over its limits.
    std::optional<HttpResponse> limit_key(const HttpRequest& req, ProxiedRequest& p) {
        const auto key = keys.match(req.header("authorization"));
        if (!key) return std::nullopt;
        const auto it = key_entries.find(*key);
        if (it == key_entries.end()) return std::nullopt;
        p.key_name = it->second.name;
        return admission.limit(it->second, initial_load(p));
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

    // On a server thread (a handler) the calls run on that thread's io_context, else on the client one.
    ProxyContext context() {
        boost::asio::io_context* here = http::serving_io_context();
        return ProxyContext{here ? *here : ioc, pool, metrics, o.retries, admission, &router, upstreams, &requests};
    }

    // POST /tokenize and /detokenize: to a ready worker serving the body's model (any without one).
    HttpResponse relay_by_body(const HttpRequest& req) {
        const json body = json::parse(req.body, nullptr, false);
        if (!body.is_object()) return error_response(400, "the body must be a JSON object", "invalid_request_error");
        if (body.contains("model") && !body["model"].is_null() && !body["model"].is_string())
            return error_response(400, "model has the wrong type", "invalid_request_error", "model");
        const std::string model = body.contains("model") && body["model"].is_string() ? body["model"] : "";
        return pass_through(context(), {"POST", req.path, req.body, model, req.header("authorization")});
    }

    bool served(const std::string& model) const {
        for (const WorkerStatus& w : pool.status())
            if (w.state == WorkerState::ready && w.model == model) return true;
        return false;
    }

    // GET /v1/models/{id}: the answer of a worker serving it (a preset's own object while its base
    // model is served); 404 model_not_found when none does.
    HttpResponse model(const HttpRequest& req) {
        const std::string id = http::percent_decoded(req.path.substr(std::string_view("/v1/models/").size()));
        if (const auto it = o.presets.find(id); it != o.presets.end())
            return served(it->second.model) ? json_response(200, preset_model_object(it->second))
                                            : no_worker_response(NoWorker::unknown_model, id);
        return pass_through(context(), {"GET", req.path, "", id, req.header("authorization")});
    }

    // /health's tokens_per_s: the tokens relayed from a worker over the last minute.
    static constexpr int kTokenRateSeconds = 60;

    HttpResponse health() const {
        json workers = json::array();
        for (const WorkerStatus& w : pool.status()) {
            workers.push_back(worker_status_json(w));
            workers.back()["tokens_per_s"] = requests.tokens_per_s(w.url, kTokenRateSeconds);
            // A configured model's worker: its estimate, and when keep_alive unloads it.
            workers.back().update(on_demand ? on_demand->worker_fields(w.id)
                                            : json{{"vram_estimate_bytes", nullptr}, {"until", nullptr}});
        }
        const bool ok = pool.any_ready() && !stopping;
        const char* status = stopping ? "draining" : ok ? "ok" : "no_worker_ready";
        json out = {{"status", status}, {"workers", workers}};
        if (on_demand) out["models"] = on_demand->status_json()["models"];
        return json_response(ok ? 200 : 503, out);
    }

    HttpResponse models() const {
        json data = json::array();
        std::set<std::string> seen;
        for (const WorkerStatus& w : pool.status())
            if (w.state == WorkerState::ready && !w.model.empty() && seen.insert(w.model).second)
                data.push_back({{"id", w.model}, {"object", "model"}, {"owned_by", "loom"}});
        if (on_demand)  // configured models, loaded or not: a request loads them
            for (const auto& [name, path] : on_demand->model_files())
                if (seen.insert(name).second) data.push_back({{"id", name}, {"object", "model"}, {"owned_by", "loom"}});
        for (const auto& [name, preset] : o.presets)
            if (seen.contains(preset.model)) data.push_back(preset_model_object(preset));
        return json_response(200, {{"object", "list"}, {"data", data}});
    }

    void add_routes() {
        server.route("GET", "/health", [this](const HttpRequest&) { return health(); });
        server.route("GET", "/metrics", [this](const HttpRequest&) {
            HttpResponse r;
            r.content_type = "text/plain; version=0.0.4; charset=utf-8";
            r.body = metrics.render(pool.count_by_state()) + admission.render_metrics() + worker_metrics.render() +
                     upstreams.render_metrics();
            return r;
        });
        // The page holds no data; the state it polls is behind the API keys, as /v1/* is.
        server.route("GET", "/", [](const HttpRequest&) { return dashboard_page(); });
        server.route("GET", "/dashboard/state", guarded([this](const HttpRequest&) {
                         return dashboard_state(pool, requests,
                                                on_demand ? on_demand->status_json()["models"] : json());
                     }));
        server.route("GET", "/v1/models", guarded([this](const HttpRequest&) { return models(); }));
        server.route("POST", "/v1/completions", guarded([this](const HttpRequest& r) { return generate(r, false); }));
        server.route("POST", "/v1/chat/completions",
                     guarded([this](const HttpRequest& r) { return generate(r, true); }));
        server.route("POST", "/cancel", guarded([this](const HttpRequest& r) { return cancel(r); }));
        server.route("POST", "/tokenize", guarded([this](const HttpRequest& r) { return relay_by_body(r); }));
        server.route("POST", "/detokenize", guarded([this](const HttpRequest& r) { return relay_by_body(r); }));
        server.route_prefix("GET", "/v1/models/", guarded([this](const HttpRequest& r) { return model(r); }));
        // Its own secret, not the API keys: workers announce themselves with it.
        server.route("POST", "/admin/register", [this](const HttpRequest& r) { return registry.handle(r); });
        admin = std::make_unique<AdminApi>(pool, supervisor.get(), o.admin_key, o.host);
        admin->add_routes(server);
        if (on_demand)
            on_demand->add_routes(server, [this](HttpServer::Handler h) { return admin->guarded(std::move(h)); });
    }

    // --spawn: the workers' commands, each under an id of the pool's; they join the pool as they
    // listen and leave it when they exit. Throws BadSpawn.
    void plan_spawned() {
        if (o.spawn.model.empty() && o.models.empty()) return;
        SupervisorOptions so;
        std::vector<std::string> spawned_ids;
        if (!o.spawn.model.empty())
            for (auto& argv : spawn_commands(o.spawn)) {
                spawned_ids.push_back(pool.new_id());
                so.workers.push_back({spawned_ids.back(), std::move(argv)});
            }
        SupervisorHooks hooks;
        hooks.listening = [this](const std::string& id, const WorkerUrl& url) { pool.join(url, "spawned", id); };
        hooks.exited = [this](const std::string&, const std::string& url, const std::string& cause, bool restarting) {
            if (!url.empty()) pool.retire(url);
            if (restarting) metrics.count_restart(cause);
        };
        supervisor = std::make_unique<Supervisor>(std::move(so), std::move(hooks));
        if (o.models.empty()) return;
        const auto seconds = [](double s) { return std::chrono::milliseconds(static_cast<int64_t>(s * 1000)); };
        on_demand = std::make_unique<ModelRegistry>(
            ioc, pool, admission, *supervisor,
            RegistryOptions{o.models, placement_devices(o.spawn, o.vram_budget), o.spawn, seconds(o.load_wait_s),
                            seconds(o.load_timeout_s), spawned_residents(o.spawn, spawned_ids)});
        admission.on_missing([this](const std::string& model) { return on_demand->will_load(model); });
    }

    // After SIGTERM: new requests get 503 while the running ones finish, for up to --drain-timeout
    // seconds; a second signal cuts the wait short.
    void drain_requests(const sigset_t& signals) {
        stopping = true;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.drain_timeout);
        for (bool first = true;; first = false) {
            size_t running = 0;
            {
                std::lock_guard lock(live_mu);
                std::erase_if(live, [](const auto& kv) { return kv.second.expired(); });
                running = live.size();
            }
            if (running == 0) return;
            if (first) log()->info("waiting up to {} s for {} running requests", o.drain_timeout, running);
            if (std::chrono::steady_clock::now() >= deadline) {
                log()->warn("{} requests still running after {} s: abandoned", running, o.drain_timeout);
                return;
            }
            const timespec tick{0, 50'000'000};
            if (sigtimedwait(&signals, nullptr, &tick) > 0) {
                log()->warn("second stop signal: {} running requests abandoned", running);
                return;
            }
        }
    }
};

OrchestratorApp::OrchestratorApp(Options options) : s_(std::make_unique<State>(std::move(options))) {}

OrchestratorApp::~OrchestratorApp() = default;

int OrchestratorApp::run() {
    State& s = *s_;
    const sigset_t signals = http::block_stop_signals();

    try {
        s.plan_spawned();
    } catch (const std::exception& e) {  // BadSpawn, or a configured model that cannot be estimated
        log()->error("{}", e.what());
        return kExitBadInput;
    }
    s.add_routes();
    uint16_t port = 0;
    try {
        // A spawned or configured model's own file gives prefix routing its tokenizer, as --tokenizer would.
        std::vector<std::string> tokenizer_files = s.o.tokenizers;
        std::vector<std::pair<std::string, std::string>> named;  // the worker's name for the model, its file
        if (!s.o.spawn.model.empty()) tokenizer_files.push_back(s.o.spawn.model);
        for (const std::string& path : tokenizer_files)
            named.emplace_back(std::filesystem::path(path).stem().string(), path);
        if (s.on_demand)
            for (const auto& np : s.on_demand->model_files()) named.push_back(np);
        for (const auto& [model, path] : named) {
            try {
                s.router.add_tokenizer(model, path);
            } catch (const std::exception& e) {
                throw std::runtime_error("--tokenizer " + path + ": " + e.what());
            }
            log()->info("tokenizer for {} loaded from {}", model, path);
        }
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
    s.admission.start();
    if (s.on_demand) s.on_demand->start();
    s.pool.start();
    s.registry.start();
    s.worker_metrics.start();
    s.upstreams.start(s.ioc);
    s.server.start(s.o.http_threads);
    // Tests and supervisors read this line for the port (with --port 0 it is chosen by the system).
    log()->info("listening on http://{}:{} ({} workers, {} spawned, routing {})", s.o.host, port, s.o.workers.size(),
                s.supervisor ? s.supervisor->status().size() : 0, routing_name(s.o.routing));
    if (s.supervisor) s.supervisor->start();  // after that line: its workers' relayed lines say "listening on" too

    const int sig = sigwaitinfo(&signals, nullptr);
    log()->info("{}: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    s.drain_requests(signals);
    s.server.stop(std::chrono::milliseconds(2000));
    if (s.on_demand) s.on_demand->stop();
    if (s.supervisor) s.supervisor->stop(kWorkerStopGrace);
    s.pool.stop();
    s.admission.stop();
    s.registry.stop();
    s.worker_metrics.stop();
    s.upstreams.stop();
    work.reset();
    s.ioc.stop();
    for (auto& t : threads) t.join();
    return 0;
}

}  // namespace loom::orchestrator
