// WorkerApp: opens the port first (so /health can say "loading"), loads the named backend (never
// falling back), warms it up, serves the routes, and drains on SIGTERM.
#include "worker/worker_app.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <pthread.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <stdexcept>
#include <thread>

#include "engine/errors.h"
#include "engine/make_backend.h"
#include "engine/memory_budget.h"
#include "gguf/reader.h"
#include "tokenizer/tokenizer.h"
#include "http/api_keys.h"
#include "http/daemon_signals.h"
#include "worker/engine_loop.h"
#include "worker/gpu_options.h"
#include "http/http_server.h"
#include "http/url.h"
#include "worker/metrics.h"
#include "worker/openai_api.h"
#include "worker/request_registry.h"
#ifdef LOOM_HAVE_CUDA
#include "kernels/device_info.h"
#endif

namespace loom::worker {

using http::ApiKeys;
using http::error_response;
using http::HttpHeaders;
using http::HttpLimits;
using http::HttpRequest;
using http::HttpResponse;
using http::json_response;
using http::HttpServer;
using http::ResponseProducer;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kComponents[] = {"http", "engine", "worker"};

std::shared_ptr<spdlog::logger> log() {
    if (auto l = spdlog::get("worker")) return l;
    return spdlog::default_logger();
}

HttpResponse api_error(const ApiError& e) {
    return error_response(e.status(), e.what(), e.type(), e.param(), e.code());
}

// SIGTERM or SIGINT while the model loads ends the process at once, exit 0: nothing runs yet to
// drain, a large model's load takes minutes, and a supervisor that asks a worker to stop should not
// have to wait for it (or kill it). Once the load returns, the serving loop takes the signals again.
class LoadWatch {
public:
    explicit LoadWatch(const sigset_t& signals) : signals_(signals), thread_([this] { watch(); }) {}
    ~LoadWatch() {
        done_ = true;
        thread_.join();
    }
    LoadWatch(const LoadWatch&) = delete;
    LoadWatch& operator=(const LoadWatch&) = delete;

private:
    void watch() {
        const timespec poll_interval{0, 50'000'000};
        while (!done_) {
            const int sig = sigtimedwait(&signals_, nullptr, &poll_interval);
            if (sig != SIGTERM && sig != SIGINT) continue;
            log()->info("{} while loading: exiting before serving", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { l->flush(); });
            std::_Exit(0);
        }
    }

    sigset_t signals_;
    std::atomic<bool> done_{false};
    std::thread thread_;  // last: it starts once the members it reads exist
};

int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// The device --gpu names (index or UUID, device 0 when not given); index -1 with `why` and the exit
// code when there is none: kExitNoBackend without a usable device, kExitBadInput for a bad --gpu.
struct CudaTarget {
    int index = -1;
    std::string name, uuid, compute_capability, why;
    int exit_code = 0;
};

CudaTarget find_cuda_device(const std::string& gpu) {
    CudaTarget t;
#ifdef LOOM_HAVE_CUDA
    const auto inv = kernels::query_cuda(false);  // no context on any device before the choice
    if (inv.devices.empty()) {
        t.why = "no usable CUDA device (" + inv.error + ")";
        t.exit_code = kExitNoBackend;
        return t;
    }
    std::vector<GpuCandidate> visible;
    for (const auto& d : inv.devices) visible.push_back({d.index, d.name, d.uuid});
    try {
        const std::string spec = gpu.empty() ? "0" : gpu;  // named: the result refers into `visible`, not it
        const GpuCandidate& g = select_gpu(spec, visible);
        const auto& d = inv.devices[static_cast<size_t>(&g - visible.data())];
        t.index = d.index;
        t.name = d.name;
        t.uuid = d.uuid;
        t.compute_capability = std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor);
    } catch (const std::invalid_argument& e) {
        t.why = e.what();
        t.exit_code = kExitBadInput;
    }
#else
    (void)gpu;
    t.why = "this build of loom has no CUDA support (configured with LOOM_WITH_CUDA=OFF)";
    t.exit_code = kExitNoBackend;
#endif
    return t;
}

// A generation's answer as the engine loop produces it: SSE chunks or one JSON body. Its id stays
// in the registry (cancellable) while the answer is being sent.
class GenerationProducer : public ResponseProducer {
public:
    GenerationProducer(std::shared_ptr<RequestStream> stream, std::weak_ptr<EngineLoop> loop, ResponseWriter writer,
                       bool streaming, std::shared_ptr<RequestRegistry> registry, HttpHeaders headers)
        : stream_(std::move(stream)),
          loop_(std::move(loop)),
          writer_(std::move(writer)),
          streaming_(streaming),
          registry_(std::move(registry)),
          headers_(std::move(headers)) {}
    ~GenerationProducer() override { registry_->remove(writer_.id()); }

    void start(std::function<void()> notify) override { stream_->on_ready(std::move(notify)); }

    Progress poll() override {
        Progress p;
        if (streaming_ && !started_) p.data = writer_.stream_start();
        started_ = true;
        for (const StreamEvent& e : stream_->take()) {
            if (streaming_)
                p.data += writer_.stream_event(e);
            else
                writer_.add(e);
            if (e.finished) finished_ = true;
        }
        p.done = finished_;
        if (p.done && !streaming_) {
            p.whole = json_response(writer_.failed() ? 500 : 200, writer_.whole());
            p.whole.headers = headers_;
        }
        return p;
    }

    // The client left: its sequence goes back to the pool at the loop's next step.
    void abandoned() override {
        if (finished_) return;
        if (auto loop = loop_.lock()) loop->cancel(stream_->id());
    }

private:
    std::shared_ptr<RequestStream> stream_;
    std::weak_ptr<EngineLoop> loop_;
    ResponseWriter writer_;
    bool streaming_;
    std::shared_ptr<RequestRegistry> registry_;
    HttpHeaders headers_;  // whole answers: sent with the body at the end (streams sent them first)
    bool started_ = false;
    bool finished_ = false;
};

}  // namespace

void configure_logging(const std::string& spec) {
    std::map<std::string, spdlog::level::level_enum> levels;
    for (const char* c : kComponents) levels[c] = spdlog::level::info;
    const auto level_of = [](const std::string& word) {
        const auto l = spdlog::level::from_str(word);
        // from_str answers "off" for anything it does not know
        if (l == spdlog::level::off && word != "off")
            throw std::invalid_argument("--log: unknown level '" + word +
                                        "' (trace, debug, info, warn, error, critical, off)");
        return l;
    };
    size_t pos = 0;
    while (pos <= spec.size() && !spec.empty()) {
        const size_t end = std::min(spec.find(',', pos), spec.size());
        const std::string part = spec.substr(pos, end - pos);
        const size_t eq = part.find('=');
        if (eq == std::string::npos) {
            const auto l = level_of(part);
            for (auto& [name, level] : levels) level = l;
        } else {
            const std::string name = part.substr(0, eq);
            if (!levels.contains(name))
                throw std::invalid_argument("--log: unknown component '" + name + "' (http, engine, worker)");
            levels[name] = level_of(part.substr(eq + 1));
        }
        pos = end + 1;
    }
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    for (const auto& [name, level] : levels) {
        spdlog::drop(name);
        auto logger = std::make_shared<spdlog::logger>(name, sink);
        logger->set_level(level);
        spdlog::register_logger(logger);
    }
    spdlog::set_default_logger(spdlog::get("worker"));  // the libraries' own lines (e.g. the tokenizer's) under a name
}

enum class Phase { loading, ready, draining, poisoned };

struct WorkerApp::State {
    WorkerOptions o;
    std::atomic<Phase> phase{Phase::loading};
    Clock::time_point started = Clock::now();
    std::string model_name;
    std::string backend_name, device_name, compute_capability;
    std::string kv_cache_type;  // what K and V are stored as: "f16" or "f32"
    CudaTarget gpu;             // the chosen CUDA device (index -1 on the CPU backend)
    int n_ctx = 0;

    std::unique_ptr<gguf::File> file;
    std::optional<tokenizer::Tokenizer> tok;
    std::unique_ptr<engine::Backend> backend;
    std::unique_ptr<Metrics> metrics;
    std::unique_ptr<OpenAiApi> api;
    std::shared_ptr<EngineLoop> loop;  // producers hold it weakly: a late disconnect after shutdown is harmless
    ApiKeys keys;
    std::shared_ptr<RequestRegistry> registry = std::make_shared<RequestRegistry>();
    HttpServer server;

    explicit State(WorkerOptions options)
        : o(std::move(options)), keys(o.api_keys), server("loom-worker", HttpLimits{}) {}

    // The loop may fail or start draining before run() notices.
    Phase current_phase() const {
        const Phase p = phase.load();
        if (p == Phase::ready && loop->poisoned()) return Phase::poisoned;
        if (p == Phase::ready && loop->draining()) return Phase::draining;
        return p;
    }

    void set_log_pattern() {
        spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& l) {
            const std::string device =
                gpu.index >= 0 ? "device " + std::to_string(gpu.index) + " (" + gpu.name + ")" : device_name;
            l->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [" + backend_name + " " + device + "] [%n] [%l] %v");
        });
    }

    // 503 while nothing can be generated; with Retry-After so clients come back.
    std::optional<HttpResponse> unavailable() const {
        const Phase p = current_phase();
        if (p == Phase::ready) return std::nullopt;
        HttpResponse r;
        if (p == Phase::loading)
            r = error_response(503, "the model is loading", "service_unavailable");
        else if (p == Phase::draining)
            r = error_response(503, "the worker is shutting down", "service_unavailable");
        else
            r = error_response(503, "the engine failed: " + loop->poison_message(), "service_unavailable");
        r.headers.emplace_back("Retry-After", "1");
        return r;
    }

    // What served an answer: "cpu", or "cuda; device=0; uuid=GPU-…".
    std::string backend_header() const {
        if (gpu.index < 0) return backend_name;
        return backend_name + "; device=" + std::to_string(gpu.index) + "; uuid=" + gpu.uuid;
    }

    // The key a request was made with ("" when the worker needs none): who owns its generations.
    std::string owner(const HttpRequest& req) const { return keys.match(req.header("authorization")).value_or(""); }

    // The route's handler behind the API-key check.
    HttpServer::Handler guarded(HttpServer::Handler h) const { return keys.guarded(std::move(h)); }

    HttpResponse health() const {
        const Phase p = current_phase();
        if (p == Phase::loading) {
            HttpResponse r = json_response(503, {{"status", "loading"}});
            r.headers.emplace_back("Retry-After", "1");
            return r;
        }
        const LoopStatus st = loop->status();
        json vram = json::object();
        const engine::MemoryReport memory = backend->memory();  // now: CPU KV blocks take RAM as they fill
        for (const auto& u : memory.uses) vram[u.purpose] = {{"reserved", u.reserved}, {"used", u.used}};
        json j = {{"status", p == Phase::ready      ? "ok"
                             : p == Phase::draining ? "draining"
                                                    : "error"},
                  {"model", model_name},
                  {"backend", backend_name},
                  {"device", device_name},
                  {"device_index", gpu.index >= 0 ? json(gpu.index) : json(nullptr)},
                  {"device_uuid", gpu.index >= 0 ? json(gpu.uuid) : json(nullptr)},
                  {"vram_budget_bytes", o.vram_budget > 0 ? json(o.vram_budget) : json(nullptr)},
                  {"compute_capability", compute_capability.empty() ? json(nullptr) : json(compute_capability)},
                  {"memory", memory.where},
                  {"kv_cache_type", kv_cache_type},
                  {"batch_invariant", backend->batch_invariant()},
                  {"vram_bytes", vram},
                  {"residency_verified", memory.device_resident},
                  {"context_size", n_ctx},
                  {"sequences_running", st.running},
                  {"sequences_max", st.max_seqs},
                  {"queue_length", st.waiting},
                  {"kv_blocks_free", st.kv_blocks_free},
                  {"kv_blocks_total", st.kv_blocks_total},
                  {"uptime_s", std::chrono::duration<double>(Clock::now() - started).count()}};
        if (p == Phase::poisoned) j["error"] = loop->poison_message();
        return json_response(p == Phase::ready ? 200 : 503, j);
    }

    HttpResponse generate(const HttpRequest& req, Endpoint endpoint) {
        if (auto r = unavailable()) return *r;
        ApiRequest ar;
        try {
            ar = api->parse(endpoint, req.body);
        } catch (const ApiError& e) {
            metrics->count_error("invalid_request");
            log()->debug("{} {}: {} ({})", req.method, req.path, e.what(), e.param());
            return api_error(e);
        }
        const uint64_t seed = ar.generation.options.sampling.seed;
        const bool streaming = ar.stream;
        std::shared_ptr<RequestStream> stream;
        try {
            stream = loop->submit(ar.generation);
        } catch (const engine::RequestError& e) {  // sampling parameters too: field() names the parameter
            metrics->count_error("invalid_request");
            std::string param = e.field();
            if (param == "prompt" && endpoint == Endpoint::chat) param = "messages";
            return error_response(400, e.what(), "invalid_request_error", param);
        }
        if (!stream) {
            if (auto r = unavailable()) return *r;  // draining or poisoned since the check above
            HttpResponse r = error_response(
                429, "the queue is full (" + std::to_string(o.max_queue) + " requests waiting); retry later",
                "rate_limit_error", {}, "rate_limit_exceeded");
            r.headers.emplace_back("Retry-After", "1");
            return r;
        }
        ResponseWriter writer(*api, ar, RequestRegistry::new_id(id_prefix(endpoint)), unix_now());
        registry->add(writer.id(), stream->id(), owner(req));
        log()->debug("{} {}: {} with {} prompt tokens, max_tokens {}, seed {}{}", req.method, req.path, writer.id(),
                     ar.generation.prompt.size(), ar.generation.options.max_tokens, seed,
                     streaming ? ", streaming" : "");
        HttpResponse r;
        r.headers = {{"X-Request-Id", writer.id()},
                     {"X-Seed", std::to_string(seed)},  // repeats this answer when sent as "seed"
                     {"X-Backend", backend_header()}};
        r.stream = streaming;
        r.content_type = "text/event-stream";
        r.producer = std::make_shared<GenerationProducer>(std::move(stream), loop, std::move(writer), streaming,
                                                          registry, r.headers);
        return r;
    }

    // POST /cancel {"id": "cmpl-…" | "chatcmpl-…"}: always 200; "cancelled" says whether this call
    // ended a live request of the caller's API key (a repeat, a finished request, an unknown id or
    // another key's request all give false, so ids cannot be probed).
    HttpResponse cancel(const HttpRequest& req) {
        if (phase.load() == Phase::loading) return *unavailable();
        json body;
        try {
            body = json::parse(req.body);
        } catch (const json::exception& e) {
            metrics->count_error("invalid_request");
            return error_response(400, std::string("the body is not valid JSON: ") + e.what(), "invalid_request_error");
        }
        const json* id = nullptr;
        if (body.is_object())
            for (const char* key : {"id", "request_id"})
                if (body.contains(key)) id = &body[key];
        if (!id || !id->is_string()) {
            metrics->count_error("invalid_request");
            return error_response(400, "id must be a request id such as \"cmpl-…\" (the X-Request-Id header)",
                                  "invalid_request_error", "id");
        }
        const auto live = registry->find(id->get<std::string>(), owner(req));
        const bool cancelled = live && loop->cancel(*live);
        log()->info("cancel {}: {}", id->dump(), cancelled ? "cancelled" : "not live");
        return json_response(200, {{"id", *id}, {"cancelled", cancelled}});
    }

    HttpResponse metrics_text() const {
        if (phase.load() == Phase::loading) return *unavailable();
        HttpResponse r;
        r.content_type = "text/plain; version=0.0.4; charset=utf-8";
        r.body = metrics->render(loop->status(), backend->memory());
        return r;
    }

    // A handler that answers ApiError in OpenAI's error shape and needs the model loaded.
    HttpServer::Handler api_call(std::function<json(const HttpRequest&)> f) {
        return guarded([this, f = std::move(f)](const HttpRequest& req) {
            if (phase.load() == Phase::loading) return *unavailable();
            try {
                return json_response(200, f(req));
            } catch (const ApiError& e) {
                if (e.status() == 400) metrics->count_error("invalid_request");
                return api_error(e);
            }
        });
    }

    void add_routes() {
        server.enable_mux();  // the orchestrator's calls, many over one connection
        server.route("GET", "/health", [this](const HttpRequest&) { return health(); });
        server.route("GET", "/metrics", [this](const HttpRequest&) { return metrics_text(); });
        server.route("GET", "/v1/models", api_call([this](const HttpRequest&) { return api->models(unix_now()); }));
        server.route_prefix("GET", "/v1/models/", api_call([this](const HttpRequest& req) {
                                return api->model(
                                    http::percent_decoded(req.path.substr(std::string_view("/v1/models/").size())),
                                    unix_now());
                            }));
        server.route("POST", "/v1/completions",
                     guarded([this](const HttpRequest& req) { return generate(req, Endpoint::completions); }));
        server.route("POST", "/v1/chat/completions",
                     guarded([this](const HttpRequest& req) { return generate(req, Endpoint::chat); }));
        server.route("POST", "/tokenize", api_call([this](const HttpRequest& req) { return api->tokenize(req.body); }));
        server.route("POST", "/detokenize",
                     api_call([this](const HttpRequest& req) { return api->detokenize(req.body); }));
        server.route("POST", "/cancel", guarded([this](const HttpRequest& req) { return cancel(req); }));
    }

    // The device: --gpu and --vram-budget only with cuda; the CUDA device chosen before anything is
    // allocated on it (no context is made on the others). An exit code.
    int choose_device() {
        backend_name = o.backend;
        if (o.backend == "cpu") {
            device_name = "CPU";
            set_log_pattern();
            if (o.kv_type == "f16") {
                log()->error("--kv-type f16 is a cuda option; the cpu backend keeps its KV cache in f32");
                return kExitBadInput;
            }
            if (o.gpu.empty() && o.vram_budget == 0) return 0;
            log()->error("{}, but --backend cpu runs on the CPU; drop it or use --backend cuda",
                         !o.gpu.empty() ? "--gpu selects a CUDA device" : "--vram-budget limits CUDA device memory");
            return kExitBadInput;
        }
        gpu = find_cuda_device(o.gpu);
        if (gpu.index < 0) {
            log()->error(
                "--backend cuda: {}{}", gpu.why,
                gpu.exit_code == kExitNoBackend ? "; run with --backend cpu to use the CPU reference backend" : "");
            return gpu.exit_code;
        }
        device_name = "device " + std::to_string(gpu.index) + " (" + gpu.name + ")";
        set_log_pattern();
        log()->info("CUDA device {}: {}, {}, compute capability {}{}", gpu.index, gpu.name, gpu.uuid,
                    gpu.compute_capability,
                    o.vram_budget > 0 ? ", VRAM budget " + engine::mib(o.vram_budget) : std::string());
        return 0;
    }

    // Opens the model file and its tokenizer and checks --kv-tokens against the context; an exit code.
    int open_model() {
        try {
            file = std::make_unique<gguf::File>(gguf::File::open(o.model));
            tok.emplace(tokenizer::Tokenizer::from_gguf(*file));
            const int ctx = o.ctx > 0 ? o.ctx : engine::ModelConfig::from_gguf(*file).n_ctx_train;
            if (o.kv_tokens > 0 && o.kv_tokens < ctx) {
                log()->error(
                    "--kv-tokens {} cannot hold one sequence of the context ({} tokens); raise --kv-tokens or "
                    "lower --ctx",
                    o.kv_tokens, ctx);
                return kExitBadInput;
            }
        } catch (const std::exception& e) {
            log()->error("cannot load {}: {}", o.model, e.what());
            return kExitBadInput;
        }
        return 0;
    }

    // The named backend with the model resident; an exit code (never a fallback to the other backend).
    int create_backend() {
        engine::BackendOptions options{
            .n_ctx = o.ctx,
            .limits = {.max_seqs = o.max_seqs, .kv_tokens = o.kv_tokens, .vram_budget = o.vram_budget},
            .device = std::max(gpu.index, 0),
            .batch_invariant = o.batch_invariant};
        options.on_load_step = [](const engine::LoadStep& step) {  // the upload's progress at debug level
            const bool partial = step.kind == engine::LoadStep::Kind::weights && step.bytes < step.total;
            log()->log(partial ? spdlog::level::debug : spdlog::level::info, "load: {}", engine::describe(step));
        };
        try {
            if (!o.kv_type.empty()) options.kv_type = engine::parse_kv_cache_type(o.kv_type);
            backend = engine::make_backend(o.backend, *file, options);
        } catch (const engine::DeviceError& e) {
            log()->error("--backend {}: {}", o.backend, e.what());
            return kExitNoBackend;
        } catch (const engine::MemoryBudgetError& e) {
            log()->error("--vram-budget: the model does not fit: {}", e.what());
            return kExitBadInput;
        } catch (const std::exception& e) {
            log()->error("cannot load {} on the {} backend: {}", o.model, o.backend, e.what());
            return kExitBadInput;
        }
        return 0;
    }

    // "weights 1.0 MiB + KV cache 20.0 MiB + workspace 40.0 MiB = 61.0 MiB reserved, the KV cache for
    // 32768 tokens[, within a budget of 64.0 MiB]"
    std::string memory_summary(const engine::MemoryReport& memory) const {
        engine::MemoryPlan plan;
        for (const auto& u : memory.uses) {
            if (u.purpose == "weights") plan.weights = u.reserved;
            if (u.purpose == "kv_cache") plan.kv_cache = u.reserved;
            if (u.purpose == "workspace") plan.workspace = u.reserved;
        }
        const engine::KvCapacity kv = backend->kv_capacity();
        std::string out = engine::describe(plan) + " reserved, the " + kv_cache_type + " KV cache for " +
                          std::to_string(int64_t{kv.blocks} * kv.block_tokens) + " tokens";
        if (o.vram_budget > 0) out += ", within a budget of " + engine::mib(o.vram_budget);
        if (backend->batch_invariant()) out += "; batch-invariant numerics";
        return out;
    }

    // Loads the model on the named backend; returns an exit code, 0 when it is ready to serve.
    int load() {
        const auto t0 = Clock::now();
        if (const int rc = open_model(); rc != 0) return rc;
        if (const int rc = create_backend(); rc != 0) return rc;
        backend_name = backend->name();
        device_name = backend->device();
        compute_capability = gpu.compute_capability;
        n_ctx = backend->n_ctx();
        kv_cache_type = backend->kv_capacity().type;
        set_log_pattern();
        model_name = o.served_name.empty() ? std::filesystem::path(o.model).stem().string() : o.served_name;
        metrics = std::make_unique<Metrics>(MetricsInfo{model_name, backend_name, device_name});
        api = std::make_unique<OpenAiApi>(*file, *tok, model_name, n_ctx);
        loop = std::make_shared<EngineLoop>(*backend, *tok, LoopLimits{.max_queue = o.max_queue}, *metrics);
        try {
            loop->warm_up();
        } catch (const std::exception& e) {
            log()->error("warm-up failed: {}", e.what());
            return kExitFailure;
        }
        const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
        const engine::MemoryReport memory = backend->memory();
        log()->info("{} loaded in {:.2f} s: context {}, {} sequences, queue {}, memory in {}{}", model_name, secs,
                    n_ctx, o.max_seqs, o.max_queue, memory.where,
                    memory.device_resident ? " (device-resident, verified)" : "");
        log()->info("memory: {}", memory_summary(memory));
        return 0;
    }
};

WorkerApp::WorkerApp(WorkerOptions options) : s_(std::make_unique<State>(std::move(options))) {}

WorkerApp::~WorkerApp() = default;

int WorkerApp::run() {
    State& s = *s_;
    if (s.o.backend != "cuda" && s.o.backend != "cpu") {
        log()->error("--backend must be cuda or cpu, not '{}'", s.o.backend);
        return kExitBadInput;
    }
    if (s.o.max_seqs < 1 || s.o.max_queue < 0 || s.o.ctx < 0 || s.o.port < 0 || s.o.port > 65535) {
        log()->error("--max-seqs must be >= 1, --max-queue and --ctx >= 0, --port in 0..65535");
        return kExitBadInput;
    }
    if (const int rc = s.choose_device(); rc != 0) return rc;

    // Signals are taken synchronously by this thread; every thread started from here inherits the mask.
    const sigset_t signals = http::block_stop_signals();

    const RegistrationOptions& reg = s.o.registration;
    try {
        if (!reg.orchestrator_url.empty())
            check_registration(reg, s.o.host);
        else if (!reg.secret.empty() || !reg.advertise_url.empty())
            throw BadRegistration("--register-secret and --advertise-url need --register");
    } catch (const BadRegistration& e) {
        log()->error("{}", e.what());
        return kExitBadInput;
    }

    s.add_routes();
    uint16_t port = 0;
    try {
        port = s.server.listen(s.o.host, static_cast<uint16_t>(s.o.port));
    } catch (const std::exception& e) {
        log()->error("{}", e.what());
        return kExitBadInput;
    }
    s.server.start(s.o.http_threads);
    // Tests and supervisors read this line for the port (with --port 0 it is chosen by the system).
    log()->info("listening on http://{}:{} (loading {})", s.o.host, port, s.o.model);
    // Announced while loading: the orchestrator routes nothing here until /health says ready.
    std::optional<Registration> registration;
    if (!reg.orchestrator_url.empty()) registration.emplace(reg, advertised_url(reg, s.o.host, port));

    int loaded = 0;
    {
        LoadWatch watch(signals);
        loaded = s.load();
    }
    if (loaded != 0) {
        s.server.stop();
        return loaded;
    }
    s.phase = Phase::ready;
    log()->info("ready on http://{}:{}", s.o.host, port);

    const timespec poll_interval{0, 100'000'000};
    for (;;) {
        const int sig = sigtimedwait(&signals, nullptr, &poll_interval);
        if (sig == SIGTERM || sig == SIGINT) {
            log()->info("{}: draining (deadline {} ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                        s.o.drain_deadline.count());
            break;
        }
        if (s.loop->poisoned()) {
            s.phase = Phase::poisoned;
            log()->critical("the engine failed and cannot continue: {}; exiting so a supervisor restarts the worker",
                            s.loop->poison_message());
            // Streams have their error events; let the sessions write them, then leave without tearing
            // down the backend: a faulted CUDA context can hang or abort in its destructors.
            s.server.stop(std::chrono::milliseconds(1000));
            spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { l->flush(); });
            std::_Exit(kExitFailure);
        }
    }
    s.phase = Phase::draining;
    if (registration) registration->stop();
    s.server.stop_accepting();
    s.loop->drain(s.o.drain_deadline);
    s.server.stop(std::chrono::milliseconds(5000));
    s.loop.reset();
    log()->info("drained; exiting");
    return 0;
}

}  // namespace loom::worker
