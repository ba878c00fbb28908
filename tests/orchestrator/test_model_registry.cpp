// The model registry: keep_alive forms, model entries and the memory estimate as units; then
// loom-orchestrator with configured models on stories260K and CPU workers whose --vram-budget
// stands in for GPU memory: a request loads its model (its TTFT includes the load), the least
// recently used idle model is evicted for another, a busy one never is (503 + Retry-After after
// --load-wait), keep_alive unloads idle models, the admin routes, and bad keep_alive values; workers
// started with --spawn take their device's memory (what they report), and so do --worker's on this
// host (a loopback URL) but not one whose URL names another host; a worker not ready within
// --load-timeout is stopped and its request refused while other models are served.
#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <fstream>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <regex>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "gguf/memory_estimate.h"
#include "gguf/reader.h"
#include "orchestrator/admission.h"
#include "orchestrator/local_workers.h"
#include "orchestrator/model_specs.h"
#include "orchestrator/placement.h"
#include "orchestrator/spawn_plan.h"
#include "orchestrator/orchestrator_process.h"
#include "support/run_command.h"
#include "worker/worker_api.h"

namespace {

using namespace loom::test;
using loom::orchestrator::parse_keep_alive;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

const std::string kAdminKey = "admin-key-17";
const HeaderList kAdmin = {{"Authorization", "Bearer " + kAdminKey}};
constexpr int kContext = 256;
constexpr int kMaxSeqs = 2;

// The estimate the orchestrator makes for every configured model here (the same file and demand).
uint64_t model_estimate(int max_seqs = kMaxSeqs, int context = kContext) {
    const auto f = loom::gguf::File::open(require_stories260k());
    return loom::gguf::estimate_memory(f, {context, max_seqs, 512}).total();
}

json model_entry(const std::string& name, const json& extra = json::object()) {
    json m = {{"name", name}, {"model", require_stories260k().string()}, {"context", kContext}, {"max_seqs", kMaxSeqs}};
    for (const auto& [k, v] : extra.items()) m[k] = v;
    return m;
}

std::string write_file(const std::string& name, const std::string& text) {
    const auto path = temp_dir() / name;
    std::ofstream(path) << text;
    return path.string();
}

// An orchestrator with `models` on one CPU stand-in device holding `models_fitting` estimates.
std::vector<std::string> registry_args(const json& models, double models_fitting, double load_wait_s = 30) {
    const json config = {{"models", models},
                         {"backend", "cpu"},
                         {"worker_bin", worker_bin()},
                         {"admin_key", kAdminKey},
                         {"vram_budget", std::to_string(static_cast<uint64_t>(model_estimate() * models_fitting))},
                         {"load_wait", load_wait_s}};
    return {"--config", write_file("registry.json", config.dump())};
}

json admin_models(int port) {
    const HttpReply r = http_request(port, "GET", "/admin/models", {}, kAdmin);
    REQUIRE(r.status == 200);
    return json::parse(r.body);
}

json model_status(int port, const std::string& name) {
    const json all = admin_models(port);
    for (const json& m : all.at("models"))
        if (m.at("name") == name) return m;
    FAIL("no model " << name);
    return {};
}

template <class F>
bool eventually(F done, std::chrono::seconds limit = std::chrono::seconds(30)) {
    const auto deadline = Clock::now() + limit;
    while (!done()) {
        if (Clock::now() > deadline) return false;
        std::this_thread::sleep_for(milliseconds(20));
    }
    return true;
}

bool state_is(int port, const std::string& name, const std::string& state) {
    return model_status(port, name).at("state") == state;
}

const json kHello = {{"messages", json::array({{{"role", "user"}, {"content", "Tell me a story"}}})},
                     {"max_tokens", 12},
                     {"temperature", 0}};

json chat(const std::string& model, const json& extra = json::object()) {
    json body = kHello;
    body["model"] = model;
    for (const auto& [k, v] : extra.items()) body[k] = v;
    return body;
}

// A streamed chat request: the client's time to its first event, and the whole stream.
struct Timed {
    double first_event_s = 0;
    Streamed streamed;
};

Timed timed_stream(int port, const std::string& model) {
    json body = chat(model);
    body["stream"] = true;
    const auto t0 = Clock::now();
    SseStream s(port, "/v1/chat/completions", body.dump());
    REQUIRE(s.status() == 200);
    Timed t;
    t.first_event_s = std::chrono::duration<double>(Clock::now() - t0).count();
    t.streamed = read_stream(s, true);
    return t;
}

}  // namespace

TEST_CASE("keep_alive takes Ollama's forms", "[registry]") {
    CHECK(parse_keep_alive(json(300)) == milliseconds(300'000));
    CHECK(parse_keep_alive(json(1.5)) == milliseconds(1'500));
    CHECK(parse_keep_alive(json(0)) == milliseconds(0));
    CHECK(parse_keep_alive(json("0")) == milliseconds(0));
    CHECK(parse_keep_alive(json("300")) == milliseconds(300'000));
    CHECK(parse_keep_alive(json("5m")) == milliseconds(300'000));
    CHECK(parse_keep_alive(json("1h30m")) == milliseconds(5'400'000));
    CHECK(parse_keep_alive(json("2.5s")) == milliseconds(2'500));
    CHECK(parse_keep_alive(json("500ms")) == milliseconds(500));
    CHECK(parse_keep_alive(json(-1)) == loom::orchestrator::kKeepForever);
    CHECK(parse_keep_alive(json("-1m")) == loom::orchestrator::kKeepForever);
    for (const json& bad : {json("5x"), json("m"), json(""), json("1..2s"), json(true), json::array(), json("5 m"),
                            json(1e12), json("9999999h")})
        CHECK_FALSE(parse_keep_alive(bad).has_value());
    json body = {{"keep_alive", "soon"}};
    try {
        loom::orchestrator::take_keep_alive(body);
        FAIL("no throw");
    } catch (const loom::orchestrator::BadField& e) {
        CHECK(e.param == "keep_alive");
    }
    body = {{"keep_alive", "2m"}, {"model", "m"}};
    CHECK(loom::orchestrator::take_keep_alive(body) == milliseconds(120'000));
    CHECK_FALSE(body.contains("keep_alive"));  // the worker is not told
}

TEST_CASE("the memory estimate follows the GGUF's tensors and hyperparameters", "[registry]") {
    const auto f = loom::gguf::File::open(require_stories260k());
    uint64_t tensor_bytes = 0;
    for (const auto& t : f.tensors()) tensor_bytes += t.n_bytes;
    const auto small = loom::gguf::estimate_memory(f, {128, 1, 512});
    const auto large = loom::gguf::estimate_memory(f, {256, 4, 512});
    CHECK(small.weights >= tensor_bytes);
    CHECK(small.weights < tensor_bytes + (256 + 4 * 256) * f.tensors().size());  // + a repacked matrix's streams
    const std::string arch = f.get_string("general.architecture");
    const uint64_t layers = f.get_uint(arch + ".block_count"), heads = f.get_uint(arch + ".attention.head_count");
    const uint64_t kv_heads = f.find_uint(arch + ".attention.head_count_kv").value_or(heads);
    const uint64_t head_dim = f.get_uint(arch + ".embedding_length") / heads;
    // K and V in f32: stories260K's matrices are F32, so the CUDA backend's default cache is f32.
    const uint64_t per_position = layers * kv_heads * head_dim * 2 * 4;
    CHECK(small.kv_cache >= per_position * 128);
    CHECK(small.kv_cache < per_position * 128 + 256);
    const auto f16_kv = loom::gguf::estimate_memory(f, {128, 1, 512, 2});  // --kv-type f16
    CHECK(f16_kv.kv_cache >= per_position / 2 * 128);
    CHECK(f16_kv.kv_cache < per_position / 2 * 128 + 256);
    CHECK(loom::gguf::estimate_memory(f, {128, 1, 512, 4}).kv_cache == small.kv_cache);
    CHECK(large.kv_cache >= 8 * small.kv_cache - 8 * 256);  // twice the context, four times the sequences
    CHECK(small.workspace > (uint64_t{64} << 20));
    CHECK(small.total() == small.weights + small.kv_cache + small.workspace);
}

TEST_CASE("model entries: bad ones name the entry and the field", "[registry][config]") {
    const auto resolve = [](const std::string& s) {
        if (s == "missing") throw std::invalid_argument("'missing' is no file");
        return s;
    };
    using loom::orchestrator::BadModelSpec;
    using loom::orchestrator::parse_model_flags;
    const auto spec = parse_model_flags(
        {R"({"name":"a","model":"x.gguf","gpus":[0,"GPU-1"],"replicas":2,"keep_alive":"1m"})"}, resolve);
    REQUIRE(spec.size() == 1);
    CHECK(spec[0].gpus == std::vector<std::string>{"0", "GPU-1"});
    CHECK(spec[0].replicas == 2);
    CHECK(spec[0].keep_alive == milliseconds(60'000));
    CHECK(parse_model_flags({R"({"name":"a","model":"x"})"}, resolve)[0].keep_alive == milliseconds(300'000));
    const std::vector<std::pair<std::string, std::string>> cases = {
        {R"({"name":"a","model":"x","keep_alive":"soon"})", "model 1 (a): keep_alive must be"},
        {R"({"name":"a","model":"missing"})", "model 1 (a): model: 'missing' is no file"},
        {R"({"name":"a b","model":"x"})", "model 1: name must be"},
        {R"({"name":"a","model":"x","replicas":0})", "replicas must be an integer in [1, 64]"},
        {R"({"name":"a","model":"x","gpus":[]})", "gpus must be a non-empty array"},
        {R"({"name":"a","model":"x","ctx":5})", "unknown field 'ctx'"},
        {R"({"name":"a")", "model 1: not valid JSON"},
    };
    for (const auto& [text, message] : cases) {
        INFO(text);
        try {
            parse_model_flags({text}, resolve);
            FAIL("no throw");
        } catch (const BadModelSpec& e) {
            CHECK(std::string(e.what()).find(message) != std::string::npos);
        }
    }
    try {
        parse_model_flags({R"({"name":"a","model":"x"})", R"({"name":"a","model":"y"})"}, resolve);
        FAIL("no throw");
    } catch (const BadModelSpec& e) {
        CHECK(std::string(e.what()).find("model 2: the name 'a' is given twice") != std::string::npos);
    }
}

TEST_CASE("a request loads its model on demand; the load counts in its TTFT; admin routes", "[registry]") {
    OrchestratorProcess orch({}, registry_args(json::array({model_entry("alpha"), model_entry("beta")}), 2.5));
    const int port = orch.port();
    json listed = admin_models(port);
    REQUIRE(listed.at("models").size() == 2);
    CHECK(listed.at("models")[0].at("state") == "unloaded");
    CHECK(listed.at("devices")[0].at("id") == "cpu0");
    CHECK(listed.at("devices")[0].at("budget_bytes").get<uint64_t>() == static_cast<uint64_t>(model_estimate() * 2.5));
    CHECK(listed.at("models")[0].at("vram_estimate_bytes").at("total") == model_estimate());
    // Configured models are listed before they load.
    const json v1 = json::parse(http_request(port, "GET", "/v1/models").body);
    CHECK(v1.at("data").size() == 2);

    const Timed first = timed_stream(port, "alpha");
    CHECK(first.streamed.finish_reason == "length");
    const json alpha = model_status(port, "alpha");
    CHECK(alpha.at("state") == "ready");
    REQUIRE(alpha.at("replicas").size() == 1);
    CHECK(alpha.at("replicas")[0].at("device") == "cpu0");
    CHECK(alpha.at("last_used").is_number());
    CHECK(alpha.at("keep_alive_s") == 300);
    // The worker's load, as the orchestrator logged it (seen by a 100 ms tick, hence the margin), is
    // inside the first request's time to its first byte.
    std::smatch m;
    std::string log;
    const std::regex ready("model alpha: ready on device cpu0 \\(worker w\\d+, (\\d+) ms\\)");
    REQUIRE(eventually([&] { return std::regex_search(log = orch.log(), m, ready); }));
    const double load_s = std::stod(m[1].str()) / 1000 - 0.15;
    CHECK(first.first_event_s >= load_s);
    const Timed second = timed_stream(port, "alpha");
    CHECK(second.first_event_s < first.first_event_s);
    CHECK(second.streamed.text == first.streamed.text);  // greedy: the same answer once loaded
    const json recent = json::parse(http_request(port, "GET", "/dashboard/state").body).at("requests");
    CHECK(recent.back().at("ttft_s").get<double>() >= load_s);  // the oldest: the first request

    {  // /health shows the estimate beside the worker's real use
        const json health = json::parse(http_request(port, "GET", "/health").body);
        REQUIRE(health.at("workers").size() == 1);
        CHECK(health.at("workers")[0].at("model") == "alpha");
        CHECK(health.at("workers")[0].at("vram_estimate_bytes").at("total") == model_estimate());
        CHECK(health.at("models").size() == 2);
        // When keep_alive (5 minutes) unloads it, as `loom ps` shows under UNTIL.
        json until;
        REQUIRE(eventually([&] {
            until = json::parse(http_request(port, "GET", "/health").body).at("workers")[0].at("until");
            return until.is_number();
        }));
        const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
        CHECK(until.get<double>() > now + 290);
        CHECK(until.get<double>() <= now + 301);
    }
    {  // admin load, unload, errors and the key
        HttpReply r = http_request(port, "POST", "/admin/models/beta/load", "", kAdmin);
        CHECK(r.status == 202);
        REQUIRE(eventually([&] { return state_is(port, "beta", "ready"); }));
        CHECK(model_status(port, "alpha").at("state") == "ready");  // room for both: nothing evicted
        r = http_request(port, "POST", "/admin/models/beta/load", "", kAdmin);
        CHECK(r.status == 200);
        r = http_request(port, "POST", "/admin/models/beta/unload", "", kAdmin);
        CHECK(r.status == 200);
        CHECK(json::parse(r.body).at("state") == "unloading");
        REQUIRE(eventually([&] { return state_is(port, "beta", "unloaded"); }));
        CHECK(http_request(port, "POST", "/admin/models/gamma/load", "", kAdmin).status == 404);
        CHECK(http_request(port, "POST", "/admin/models/beta/reload", "", kAdmin).status == 404);
        CHECK(http_request(port, "POST", "/admin/models/beta/load").status == 401);
        CHECK(http_request(port, "GET", "/admin/models").status == 401);
        // The unloaded model loads again for a request.
        CHECK(post(port, "/v1/chat/completions", chat("beta")).status == 200);
    }
}

TEST_CASE("the least recently used idle model is evicted for another", "[registry]") {
    const json models = json::array({model_entry("alpha"), model_entry("beta"), model_entry("gamma")});
    OrchestratorProcess orch({}, registry_args(models, 2.5));  // room for two
    const int port = orch.port();
    REQUIRE(post(port, "/v1/chat/completions", chat("alpha")).status == 200);
    REQUIRE(post(port, "/v1/chat/completions", chat("beta")).status == 200);
    std::this_thread::sleep_for(milliseconds(400));                            // past the idle grace: both idle
    REQUIRE(post(port, "/v1/chat/completions", chat("alpha")).status == 200);  // alpha used last: beta is LRU
    std::this_thread::sleep_for(milliseconds(400));
    const HttpReply r = post(port, "/v1/chat/completions", chat("gamma"));
    INFO(r.body);
    REQUIRE(r.status == 200);
    CHECK(json::parse(r.body).at("model") == "gamma");
    CHECK(model_status(port, "alpha").at("state") == "ready");
    CHECK(model_status(port, "gamma").at("state") == "ready");
    REQUIRE(eventually([&] { return state_is(port, "beta", "unloaded"); }));
    CHECK(orch.log().find("model beta: unloading: evicted (least recently used) to make room for gamma") !=
          std::string::npos);
}

TEST_CASE("a busy model is never evicted: the other waits --load-wait, then 503 + Retry-After", "[registry]") {
    const json models = json::array({model_entry("alpha"), model_entry("beta")});
    OrchestratorProcess orch({}, registry_args(models, 1.5, 1.0));  // room for one; wait 1 s for room
    const int port = orch.port();
    REQUIRE(post(port, "/v1/chat/completions", chat("alpha")).status == 200);
    // Two clients keep alpha busy with back-to-back streams.
    std::atomic<bool> stop{false};
    std::atomic<int> served{0}, failed{0};
    std::vector<std::thread> load;
    for (int i = 0; i < 2; ++i)
        load.emplace_back([&] {
            while (!stop) {
                const HttpReply a = post(port, "/v1/chat/completions", chat("alpha", {{"max_tokens", 60}}));
                (a.status == 200 ? served : failed)++;
            }
        });
    while (served < 2) std::this_thread::sleep_for(milliseconds(10));
    const auto t0 = Clock::now();
    const HttpReply r = post(port, "/v1/chat/completions", chat("beta"));
    const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
    stop = true;
    for (auto& t : load) t.join();
    INFO(r.body);
    CHECK(r.status == 503);
    CHECK(r.headers.count("retry-after") == 1);
    CHECK(error_param(r) == "model");
    CHECK(json::parse(r.body).at("error").at("message").get<std::string>().find("is busy") != std::string::npos);
    CHECK(waited >= 0.9);
    CHECK(failed == 0);
    CHECK(model_status(port, "alpha").at("state") == "ready");
    CHECK(model_status(port, "alpha").at("replicas")[0].at("state") == "ready");
    // Once alpha is idle, beta takes its place.
    std::this_thread::sleep_for(milliseconds(400));
    const HttpReply after = post(port, "/v1/chat/completions", chat("beta"));
    CHECK(after.status == 200);
    REQUIRE(eventually([&] { return state_is(port, "alpha", "unloaded"); }));
}

TEST_CASE("keep_alive unloads idle models; a request's keep_alive overrides it; bad ones are 400", "[registry]") {
    const json models =
        json::array({model_entry("alpha", {{"keep_alive", "1s"}}), model_entry("beta"), model_entry("gamma")});
    OrchestratorProcess orch({}, registry_args(models, 3.5));
    const int port = orch.port();

    {  // the configured keep_alive: loaded for about a second after the request
        REQUIRE(post(port, "/v1/chat/completions", chat("alpha")).status == 200);
        const auto ended = Clock::now();
        CHECK(model_status(port, "alpha").at("until").is_number());
        REQUIRE(eventually([&] { return state_is(port, "alpha", "unloaded"); }, std::chrono::seconds(10)));
        CHECK(Clock::now() - ended >= milliseconds(900));
    }
    {  // keep_alive 0 in the request: unloaded right after it
        REQUIRE(post(port, "/v1/chat/completions", chat("beta", {{"keep_alive", 0}})).status == 200);
        const auto ended = Clock::now();
        REQUIRE(eventually([&] { return !state_is(port, "beta", "ready"); }, std::chrono::seconds(10)));
        CHECK(Clock::now() - ended < milliseconds(1500));
    }
    {  // a longer keep_alive in the request keeps it
        REQUIRE(post(port, "/v1/chat/completions", chat("alpha", {{"keep_alive", "10m"}})).status == 200);
        std::this_thread::sleep_for(milliseconds(2000));
        CHECK(model_status(port, "alpha").at("state") == "ready");
        CHECK(model_status(port, "alpha").at("keep_alive_s") == 600);
    }
    {  // bad keep_alive values: 400 naming the field, nothing loaded
        for (const json& bad : {json("5x"), json(true), json("forever"), json::object()}) {
            const HttpReply r = post(port, "/v1/chat/completions", chat("gamma", {{"keep_alive", bad}}));
            INFO(bad.dump() << " -> " << r.body);
            CHECK(r.status == 400);
            CHECK(error_param(r) == "keep_alive");
        }
        CHECK(model_status(port, "gamma").at("state") == "unloaded");
        CHECK(model_status(port, "gamma").at("last_used").is_null());
    }
}

TEST_CASE("a model whose worker cannot start: its waiting request gets 503 with the exit", "[registry]") {
    const json config = {{"models", json::array({model_entry("alpha")})},
                         {"backend", "cpu"},
                         {"worker_bin", worker_bin()},
                         {"worker_args", {"--max-queue=-1"}}};  // the worker refuses it: exit 2, not restarted
    OrchestratorProcess orch({}, {"--config", write_file("broken.json", config.dump())});
    const HttpReply r = post(orch.port(), "/v1/chat/completions", chat("alpha"));
    INFO(r.body);
    CHECK(r.status == 503);
    CHECK(r.headers.count("retry-after") == 1);
    CHECK(json::parse(r.body).at("error").at("message").get<std::string>().find("could not be loaded: its worker w0 "
                                                                                "exited (exit_2)") !=
          std::string::npos);
    const json alpha = json::parse(http_request(orch.port(), "GET", "/admin/models").body).at("models")[0];
    CHECK(alpha.at("state") == "unloaded");
    CHECK(alpha.at("error").get<std::string>().find("exit_2") != std::string::npos);
}

TEST_CASE("bad model configurations exit 2 naming the model", "[registry][config]") {
    const std::string bin = orchestrator_bin();
    const auto run_with = [&](const json& config) {
        return run_command(shell_quote(bin) + " --config " + shell_quote(write_file("bad-models.json", config.dump())));
    };
    const json base = {{"backend", "cpu"}, {"worker_bin", worker_bin()}};
    const std::vector<std::pair<json, std::string>> cases = {
        {with(base, {{"models", json::array({model_entry("a", {{"keep_alive", "later"}})})}}),
         "model 1 (a): keep_alive must be"},
        {with(base, {{"models", json::array({model_entry("a", {{"model", "/no/such.gguf"}})})}}),
         "model a (/no/such.gguf): cannot open"},
        {with(base, {{"models", json::array({model_entry("a"), model_entry("a")})}}), "the name 'a' is given twice"},
        {with(base, {{"models", json::array({model_entry("a")})}, {"vram_budget", "lots"}}),
         "--vram-budget: 'lots' is not a byte size"},
        {{{"workers", {"http://127.0.0.1:1"}}, {"load_wait", 3}}, "--load-wait needs --registry-model"},
    };
    for (const auto& [config, message] : cases) {
        const CommandResult r = run_with(config);
        INFO(config.dump() << " -> " << r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.err.find(message) != std::string::npos);
    }
}

namespace {

// The memory a worker's /health entry reports, as placement counts it.
uint64_t reported(const json& worker) {
    uint64_t sum = 0;
    if (worker.at("vram_bytes").is_object())
        for (const auto& [purpose, v] : worker.at("vram_bytes").items())
            sum += std::max(v.at("reserved").get<uint64_t>(), v.at("used").get<uint64_t>());
    return sum;
}

bool process_exists(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

}  // namespace

TEST_CASE("the GPUs' memory as nvidia-smi reports it", "[registry]") {
    using loom::orchestrator::parse_gpu_memory;
    const auto m = parse_gpu_memory("81559, 1024\n");
    REQUIRE(m.has_value());
    CHECK(m->total == uint64_t{81559} << 20);
    CHECK(m->used == uint64_t{1024} << 20);
    CHECK(m->free() == uint64_t{80535} << 20);
    for (const char* bad : {"", "81559", "81559, ", "[N/A], [N/A]", "81559, 1024, 3", "0, 0", "10, 20", "-1, 0"}) {
        INFO(bad);
        CHECK_FALSE(parse_gpu_memory(bad).has_value());
    }
    CHECK_FALSE(loom::orchestrator::query_gpu_memory("0; true").has_value());  // never reaches a shell
    // On a host with a GPU the driver answers; without one, nothing is made up.
    const auto gpu0 = loom::orchestrator::query_gpu_memory("0");
    if (loom::orchestrator::count_visible_gpus() == 0) {
        CHECK_FALSE(gpu0.has_value());
    } else {
        REQUIRE(gpu0.has_value());
        CHECK(gpu0->total > (uint64_t{1} << 30));
        CHECK(gpu0->used <= gpu0->total);
    }
}

TEST_CASE("workers started with --spawn take their device's memory: placement counts what they report", "[registry]") {
    // A budget that holds "big" alone, and "alpha" beside the spawned worker, but not "big" beside it.
    // Every worker gets --ctx 256 --max-seqs 2 (the spawned one is estimated from them); the models'
    // estimates are for their entries: the model's context, 16 and 20 sequences.
    const uint64_t alpha_estimate = model_estimate(16, 0), big_estimate = model_estimate(20, 0);
    const json path = require_stories260k().string();
    const json models = json::array(
        {{{"name", "alpha"}, {"model", path}}, {{"name", "big"}, {"model", path}, {"max_seqs", 20}}});  // never started
    const json config = {{"spawn", path},
                         {"backend", "cpu"},
                         {"worker_bin", worker_bin()},
                         {"worker_args", {"--ctx=256", "--max-seqs=2"}},
                         {"admin_key", kAdminKey},
                         {"models", models},
                         {"vram_budget", std::to_string(big_estimate)}};
    OrchestratorProcess orch({}, {"--config", write_file("residents.json", config.dump())});
    const int port = orch.port();
    json spawned;
    REQUIRE(eventually([&] {
        const json workers = json::parse(http_request(port, "GET", "/health").body).at("workers");
        if (workers.size() != 1 || workers[0].at("state") != "ready") return false;
        spawned = workers[0];
        return reported(spawned) > 0;
    }));
    const uint64_t resident = reported(spawned);
    INFO("alpha " << alpha_estimate << ", big " << big_estimate << ", the spawned worker reports " << resident);
    REQUIRE(resident < big_estimate - alpha_estimate);  // else the arithmetic above does not hold
    // Until the spawned worker reported, its estimate (alpha's: the same demand) stood for it.
    REQUIRE(eventually([&] { return admin_models(port).at("devices")[0].at("resident_bytes") == resident; }));

    const HttpReply big = post(port, "/v1/chat/completions", chat("big"));
    INFO(big.body);
    CHECK(big.status == 503);
    CHECK(big.headers.count("retry-after") == 1);
    CHECK(json::parse(big.body).at("error").at("message").get<std::string>().find(
              "beside the workers started with --spawn") != std::string::npos);
    CHECK(model_status(port, "big").at("replicas").empty());  // no worker was started for it

    const HttpReply alpha = post(port, "/v1/chat/completions", chat("alpha"));
    INFO(alpha.body);
    REQUIRE(alpha.status == 200);
    const json device = admin_models(port).at("devices")[0];
    CHECK(device.at("placed_estimate_bytes") == alpha_estimate);
    CHECK(device.at("held_bytes").get<uint64_t>() >= alpha_estimate + resident);
    CHECK(device.at("gpu_free_bytes").is_null());  // a CPU stand-in: no driver to ask
    CHECK(model_status(port, "alpha").at("replicas")[0].at("device") == "cpu0");
}

TEST_CASE("a worker not ready within --load-timeout is stopped; its request gets 503; other models are served",
          "[registry]") {
    // The worker for "slow" gets a fifo nobody writes as its model file: it listens, its /health says
    // "loading", and it never becomes ready. Every other model's worker starts as it is.
    const auto fifo = temp_dir() / "slow-model.fifo";
    std::filesystem::remove(fifo);
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    const std::string wrapper = write_file("slow-worker.sh",
                                           "#!/usr/bin/env bash\n"
                                           "args=(\"$@\")\n"
                                           "if [[ \" $* \" == *\" --served-name slow \"* ]]; then\n"
                                           "  for i in \"${!args[@]}\"; do [[ ${args[i]} == --model ]] && args[i+1]=" +
                                               shell_quote(fifo.string()) +
                                               "; done\n"
                                               "fi\n"
                                               "exec " +
                                               shell_quote(worker_bin()) + " \"${args[@]}\"\n");
    std::filesystem::permissions(wrapper, std::filesystem::perms::owner_all);
    const json config = {{"models", json::array({model_entry("slow"), model_entry("alpha")})},
                         {"backend", "cpu"},
                         {"worker_bin", wrapper},
                         {"admin_key", kAdminKey},
                         {"load_timeout", 2.5}};
    OrchestratorProcess orch({}, {"--config", write_file("load-timeout.json", config.dump())});
    const int port = orch.port();

    HttpReply slow;
    double waited = 0;
    std::thread client([&] {
        const auto t0 = Clock::now();
        slow = post(port, "/v1/chat/completions", chat("slow"));
        waited = std::chrono::duration<double>(Clock::now() - t0).count();
    });
    // The half-started worker: listening, loading.
    json worker;
    REQUIRE(eventually([&] {
        const json workers = json::parse(http_request(port, "GET", "/admin/workers", {}, kAdmin).body).at("workers");
        if (workers.empty() || workers[0].at("state") != "loading" || !workers[0].at("pid").is_number()) return false;
        worker = workers[0];
        return true;
    }));
    CHECK(model_status(port, "slow").at("state") == "loading");
    // Meanwhile another model loads and answers.
    const HttpReply alpha = post(port, "/v1/chat/completions", chat("alpha"));
    CHECK(alpha.status == 200);
    client.join();
    INFO(slow.body);
    CHECK(slow.status == 503);
    CHECK(slow.headers.count("retry-after") == 1);
    CHECK(json::parse(slow.body).at("error").at("message").get<std::string>().find(
              "could not be loaded: its worker " + worker.at("id").get<std::string>() +
              " was not ready after 2.5 s (--load-timeout)") != std::string::npos);
    CHECK(waited >= 2.4);
    CHECK(waited < 10);
    // The worker is stopped (SIGKILL a second after its SIGTERM: loading, it does not act on SIGTERM).
    const pid_t pid = worker.at("pid").get<pid_t>();
    CHECK(eventually([&] { return !process_exists(pid); }, std::chrono::seconds(10)));
    REQUIRE(eventually([&] { return state_is(port, "slow", "unloaded"); }, std::chrono::seconds(10)));
    CHECK(model_status(port, "slow").at("error").get<std::string>().find("--load-timeout") != std::string::npos);
    // The orchestrator still serves.
    CHECK(post(port, "/v1/chat/completions", chat("alpha")).status == 200);
    CHECK(http_request(port, "GET", "/health").status == 200);
    std::filesystem::remove(fifo);
}

namespace {

using loom::orchestrator::DeviceIdentity;
using loom::orchestrator::WorkerStatus;

// This machine's first IPv4 address that is not loopback ("" when it has none): a URL naming it
// reaches a worker here without a network, yet does not look like this host to placement.
std::string non_loopback_address() {
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) return "";
    std::string out;
    for (ifaddrs* a = list; a && out.empty(); a = a->ifa_next) {
        if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET || !(a->ifa_flags & IFF_UP)) continue;
        const in_addr address = reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr;
        if ((ntohl(address.s_addr) >> 24) == 127) continue;
        char text[INET_ADDRSTRLEN] = {};
        if (inet_ntop(AF_INET, &address, text, sizeof text)) out = text;
    }
    freeifaddrs(list);
    return out;
}

// loom-worker on the CPU listening on `host` (WorkerProcess reads a 127.0.0.1 line): its port from
// its log; SIGTERM when it goes. Ready once an orchestrator's /health says so.
class WorkerOn {
public:
    explicit WorkerOn(const std::string& host) : host_(host), log_(temp_dir() / ("worker-on-" + host + ".log")) {
        pid_ = spawn_logged({worker_bin(), "--model", require_stories260k().string(), "--backend", "cpu", "--host",
                             host, "--port", "0", "--log", "info"},
                            log_);
        const std::string listening = "listening on http://" + host + ":";
        const auto deadline = Clock::now() + std::chrono::seconds(30);
        while (port_ == 0 && Clock::now() < deadline) {
            std::ifstream in(log_);
            const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
            if (const size_t at = text.find(listening); at != std::string::npos)
                port_ = std::atoi(text.c_str() + at + listening.size());
            std::this_thread::sleep_for(milliseconds(20));
        }
    }
    ~WorkerOn() {
        kill(pid_, SIGTERM);
        int status = 0;
        waitpid(pid_, &status, 0);
    }
    WorkerOn(const WorkerOn&) = delete;
    WorkerOn& operator=(const WorkerOn&) = delete;
    int port() const { return port_; }  // 0: it never said it listens
    std::string url() const { return "http://" + host_ + ":" + std::to_string(port_); }

private:
    std::string host_;
    std::filesystem::path log_;
    pid_t pid_ = -1;
    int port_ = 0;
};

// The only worker an orchestrator's /health lists, once it is ready and reported its memory.
json reported_worker(int port) {
    json worker;
    REQUIRE(eventually([&] {
        const json workers = json::parse(http_request(port, "GET", "/health").body).at("workers");
        if (workers.size() != 1 || workers[0].at("state") != "ready") return false;
        worker = workers[0];
        return reported(worker) > 0;
    }));
    return worker;
}

WorkerStatus status_of(const std::string& url, const std::string& backend, const std::string& uuid = {}) {
    WorkerStatus w;
    w.id = "w9";
    w.url = url;
    w.origin = "static";
    w.state = loom::orchestrator::WorkerState::ready;
    w.backend = backend;
    w.device_uuid = uuid;
    w.vram = {{"weights", 1000, 900}, {"kv_cache", 500, 0}};
    return w;
}

}  // namespace

TEST_CASE("workers not started here: loopback hosts, GPU UUIDs and CPU stand-ins name their device", "[registry]") {
    using loom::orchestrator::is_loopback_host;
    using loom::orchestrator::local_device;
    for (const char* host : {"127.0.0.1", "127.3.2.1", "localhost", "LocalHost", "::1", "[::1]", "::ffff:127.0.0.1"}) {
        INFO(host);
        CHECK(is_loopback_host(host));
    }
    for (const char* host : {"192.0.2.7", "10.0.0.1", "0.0.0.0", "128.0.0.1", "::", "[::2]", "::ffff:10.0.0.1",
                             "localhost.example", "gpu-host", "", "[]", "127.0.0.1.example"}) {
        INFO(host);
        CHECK_FALSE(is_loopback_host(host));
    }
    // GPUs named by index, one of them identified by UUID (its own worker reported it), one by --gpus.
    const std::vector<DeviceIdentity> gpus = {{"0", "GPU-aaa", false}, {"1", "", false}, {"GPU-ccc", "GPU-ccc", false}};
    CHECK(local_device(status_of("http://127.0.0.1:8001", "cuda", "GPU-aaa"), gpus) == "0");
    CHECK(local_device(status_of("http://localhost:8001", "cuda", "GPU-ccc"), gpus) == "GPU-ccc");
    CHECK(local_device(status_of("http://127.0.0.1:8001", "cuda", "GPU-bbb"), gpus).empty());  // not identified yet
    CHECK(local_device(status_of("http://127.0.0.1:8001", "cuda"), gpus).empty());
    CHECK(local_device(status_of("http://192.0.2.7:8001", "cuda", "GPU-aaa"), gpus).empty());  // another host's GPU
    CHECK(local_device(status_of("http://127.0.0.1:8001", "cpu"), gpus).empty());              // no CPU stand-in
    // CPU stand-ins are slots: a CPU worker here is on the only one, and on none of several.
    CHECK(local_device(status_of("http://127.0.0.1:8001", "cpu"), {{"cpu0", "", true}}) == "cpu0");
    CHECK(local_device(status_of("http://[::1]:8001", "cpu"), {{"cpu0", "", true}}) == "cpu0");
    CHECK(local_device(status_of("http://192.0.2.7:8001", "cpu"), {{"cpu0", "", true}}).empty());
    CHECK(local_device(status_of("http://127.0.0.1:8001", "cpu"), {{"cpu0", "", true}, {"cpu1", "", true}}).empty());
    CHECK(local_device(status_of("http://127.0.0.1:8001", "cuda", "GPU-aaa"), {{"cpu0", "", true}}).empty());

    // Counted at what they report; spawned ones (counted as such), unhealthy ones and silent ones not.
    WorkerStatus spawned = status_of("http://127.0.0.1:8002", "cpu"), dead = spawned, silent = spawned;
    spawned.origin = "spawned";
    dead.state = loom::orchestrator::WorkerState::unhealthy;
    silent.vram.clear();
    const auto residents = loom::orchestrator::local_residents(
        {status_of("http://127.0.0.1:8001", "cpu"), spawned, dead, silent}, {{"cpu0", "", true}});
    REQUIRE(residents.size() == 1);
    CHECK(residents[0].device == "cpu0");
    CHECK(residents[0].estimate == 1500);
}

TEST_CASE("a --worker on this host takes its device's memory; one whose URL names another host does not",
          "[registry]") {
    // A budget that holds "alpha" beside nothing, but not beside half of what a CPU worker reports.
    CpuWorker local({});
    const uint64_t held = reported(json::parse(http_request(local.port(), "GET", "/health").body));
    const uint64_t alpha_estimate = model_estimate();
    INFO("alpha " << alpha_estimate << ", the --worker reports " << held);
    REQUIRE(held > 0);
    const json config = {{"models", json::array({model_entry("alpha")})},
                         {"backend", "cpu"},
                         {"worker_bin", worker_bin()},
                         {"admin_key", kAdminKey},
                         {"vram_budget", std::to_string(alpha_estimate + held / 2)}};
    const std::string config_file = write_file("local-workers.json", config.dump());
    {
        OrchestratorProcess orch({local.port()}, {"--config", config_file});
        const int port = orch.port();
        REQUIRE(reported(reported_worker(port)) == held);
        REQUIRE(eventually([&] { return admin_models(port).at("devices")[0].at("resident_bytes") == held; }));
        const HttpReply alpha = post(port, "/v1/chat/completions", chat("alpha"));
        INFO(alpha.body);
        CHECK(alpha.status == 503);
        CHECK(json::parse(alpha.body).at("error").at("message").get<std::string>().find("on this host") !=
              std::string::npos);
        CHECK(model_status(port, "alpha").at("replicas").empty());
        CHECK(orch.log().find("runs on this host: placement counts its") != std::string::npos);
    }
    const std::string address = non_loopback_address();
    if (address.empty()) {
        WARN("no IPv4 address but loopback here: a worker behind another host's address is not tried");
        return;
    }
    WorkerOn remote(address);  // this machine, under an address that is not loopback
    REQUIRE(remote.port() > 0);
    OrchestratorProcess orch({}, {"--worker", remote.url(), "--config", config_file});
    const int port = orch.port();
    CHECK(reported(reported_worker(port)) == held);
    // Its report is in the pool before this request's placement reads it: counted, it would refuse.
    const HttpReply alpha = post(port, "/v1/chat/completions", chat("alpha"));
    INFO(alpha.body);
    CHECK(alpha.status == 200);
    const json device = admin_models(port).at("devices")[0];
    CHECK(device.at("resident_bytes") == 0);
    CHECK(model_status(port, "alpha").at("replicas")[0].at("device") == "cpu0");
}
