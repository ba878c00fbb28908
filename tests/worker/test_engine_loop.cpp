// The worker's EngineLoop on the CPU backend with stories260K: concurrent streams equal their solo
// runs, cancellation frees KV blocks, a bounded queue, stop strings, max_tokens, validation, metrics,
// an idle loop that sleeps, drain, and a backend failure that poisons the loop.
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "engine/errors.h"
#include "engine/generator.h"
#include "engine/make_backend.h"
#include "gguf/reader.h"
#include "support/test_data.h"
#include "tokenizer/tokenizer.h"
#include "worker/engine_loop.h"
#include "worker/metrics.h"

using namespace loom;
using namespace loom::worker;
using namespace std::chrono_literals;
using engine::Backend;
using engine::FinishReason;

namespace {

struct Stories {
    gguf::File file;
    tokenizer::Tokenizer tok;
};

const Stories& stories() {
    static const Stories s = [] {
        auto file = gguf::File::open(test::require_stories260k());
        auto tok = tokenizer::Tokenizer::from_gguf(file);
        return Stories{std::move(file), std::move(tok)};
    }();
    return s;
}

constexpr int kCtx = 512;

std::unique_ptr<engine::Backend> make_backend(int max_seqs, int max_batch_tokens = 64) {
    return engine::make_backend("cpu", stories().file,
                                {.n_ctx = kCtx, .limits = {max_seqs, 0, max_batch_tokens}, .threads = 1});
}

Metrics make_metrics() { return Metrics(MetricsInfo{"stories260K", "cpu", "CPU, 1 thread"}); }

int32_t bos() { return *stories().tok.special_ids().bos; }

std::vector<int32_t> random_prompt(int n, uint32_t seed) {
    const int32_t n_vocab = static_cast<int32_t>(stories().tok.vocab_size());
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> id(3, n_vocab - 1);
    std::vector<int32_t> p(static_cast<size_t>(n));
    for (auto& t : p) t = id(rng);
    return p;
}

GenerationRequest greedy(std::vector<int32_t> prompt, int max_tokens, bool stop_at_eos = true) {
    GenerationRequest r;
    r.prompt = std::move(prompt);
    r.options.max_tokens = max_tokens;
    r.options.sampling.temperature = 0;
    if (stop_at_eos) r.options.stop_ids = engine::end_of_generation_ids(stories().tok);
    return r;
}

bool valid_utf8(const std::string& s) {
    for (size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        const size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        if (n == 0 || i + n > s.size()) return false;
        for (size_t k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
        i += n;
    }
    return true;
}

// What one stream delivered, checked for the stream's invariants on the way.
struct Collected {
    std::string text;
    std::vector<int32_t> ids;
    StreamEvent last;  // the finished event
    int events = 0;
};

// Every event of a stream until its finished event (at most 60 s); no assertions, so client threads
// may call it (Catch2 assertions are for the main thread).
std::vector<StreamEvent> gather(RequestStream& s) {
    std::vector<StreamEvent> all;
    const auto give_up = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < give_up && (all.empty() || !all.back().finished))
        for (StreamEvent& e : s.wait(100ms)) all.push_back(std::move(e));
    return all;
}

Collected fold(std::vector<StreamEvent> events) {
    Collected c;
    for (StreamEvent& e : events) {
        REQUIRE_FALSE(c.last.finished);
        CHECK(valid_utf8(e.text));
        ++c.events;
        c.text += e.text;
        for (const auto& t : e.tokens) c.ids.push_back(t.token);
        if (e.finished) {
            CHECK(e.completion_tokens == static_cast<int>(c.ids.size()));
            c.last = std::move(e);
        }
    }
    REQUIRE(c.last.finished);
    return c;
}

// Takes events until `until` holds (default: the finished event came); at most 60 s.
Collected collect(RequestStream& s, Collected c = {}, const std::function<bool(const Collected&)>& until = {}) {
    const auto give_up = std::chrono::steady_clock::now() + 60s;
    bool done = false;
    while (!done) {
        REQUIRE(std::chrono::steady_clock::now() < give_up);
        for (StreamEvent& e : s.wait(100ms)) {
            REQUIRE_FALSE(c.last.finished);  // nothing after the finished event
            CHECK(valid_utf8(e.text));
            ++c.events;
            c.text += e.text;
            for (const auto& t : e.tokens) c.ids.push_back(t.token);
            if (e.finished) {
                CHECK(e.completion_tokens == static_cast<int>(c.ids.size()));
                c.last = std::move(e);
            }
        }
        done = until ? until(c) : c.last.finished;
    }
    return c;
}

Collected run_solo(EngineLoop& loop, const GenerationRequest& r) {
    auto s = loop.submit(r);
    REQUIRE(s);
    return collect(*s);
}

// Forwards to a real backend; `before_step(n, entries)` runs before step n (1-based) of `entries`
// sequences and may sleep or throw.
class HookBackend : public Backend {
public:
    HookBackend(Backend& inner, std::function<void(int, size_t)> before_step)
        : inner_(inner), before_step_(std::move(before_step)) {}
    std::string name() const override { return inner_.name(); }
    std::string device() const override { return inner_.device(); }
    const engine::ModelConfig& config() const override { return inner_.config(); }
    int n_ctx() const override { return inner_.n_ctx(); }
    int max_batch_tokens() const override { return inner_.max_batch_tokens(); }
    engine::KvCapacity kv_capacity() const override { return inner_.kv_capacity(); }
    bool batch_invariant() const override { return inner_.batch_invariant(); }
    std::vector<engine::BatchOutput> execute(const engine::StepPlan& plan) override {
        before_step_(++steps_, plan.entries.size());
        return inner_.execute(plan);
    }
    engine::MemoryReport memory() const override { return inner_.memory(); }

private:
    Backend& inner_;
    std::function<void(int, size_t)> before_step_;
    int steps_ = 0;
};

const auto slow_steps = [](int, size_t) { std::this_thread::sleep_for(5ms); };

double process_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

// The value of the exposition line that starts with `series` followed by a space.
double metric_value(const std::string& text, const std::string& series) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    FAIL("no series " << series);
    return 0;
}

}  // namespace

TEST_CASE("16 concurrent greedy streams from 4 threads equal their solo runs", "[worker][loop]") {
    std::vector<GenerationRequest> requests;
    for (int i = 0; i < 16; ++i)
        requests.push_back(
            greedy(i == 0 ? std::vector<int32_t>{bos()} : random_prompt(1 + (i * 13) % 90, 100 + i), 8 + (i * 7) % 30));

    // Solo: one request at a time on its own loop; also what engine::generate() makes of it.
    std::vector<Collected> solo;
    {
        auto backend = make_backend(6);
        Metrics metrics = make_metrics();
        EngineLoop loop(*backend, stories().tok, {}, metrics);
        for (const auto& r : requests) solo.push_back(run_solo(loop, r));
    }
    auto reference = make_backend(6);  // the same limits: the same prompt chunk boundaries
    for (size_t i = 0; i < requests.size(); ++i) {
        INFO("request " << i);
        engine::GenerateOptions g;
        g.max_tokens = requests[i].options.max_tokens;
        g.sampling = requests[i].options.sampling;
        const auto r = engine::generate(*reference, stories().tok, requests[i].prompt, g);
        CHECK(solo[i].ids == r.ids);
        CHECK(solo[i].text == r.text);
        CHECK(solo[i].last.finish == r.finish);
        CHECK(solo[i].last.prompt_tokens == static_cast<int>(requests[i].prompt.size()));
    }

    // Together: 6 slots for 16 requests, prompts over 58 tokens cut into chunks.
    auto backend = make_backend(6);
    Metrics metrics = make_metrics();
    EngineLoop loop(*backend, stories().tok, {}, metrics);
    std::vector<std::vector<StreamEvent>> events(requests.size());
    std::atomic<int> refused{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < 4; ++t)
        clients.emplace_back([&, t] {
            std::vector<std::pair<size_t, std::shared_ptr<RequestStream>>> mine;
            for (size_t i = static_cast<size_t>(t); i < requests.size(); i += 4)
                mine.emplace_back(i, loop.submit(requests[i]));
            for (auto& [i, s] : mine) {
                if (s)
                    events[i] = gather(*s);
                else
                    ++refused;
            }
        });
    for (auto& c : clients) c.join();
    REQUIRE(refused.load() == 0);
    int64_t prompt_tokens = 0, completion_tokens = 0;
    for (size_t i = 0; i < requests.size(); ++i) {
        INFO("request " << i);
        const Collected together = fold(std::move(events[i]));
        CHECK(together.ids == solo[i].ids);
        CHECK(together.text == solo[i].text);
        CHECK(together.last.finish == solo[i].last.finish);
        CHECK(together.last.completion_tokens == solo[i].last.completion_tokens);
        prompt_tokens += together.last.prompt_tokens;
        completion_tokens += together.last.completion_tokens;
    }
    CHECK(metrics.prompt_tokens() == prompt_tokens);
    CHECK(metrics.generation_tokens() == completion_tokens);
    CHECK(loop.status().kv_blocks_free == loop.status().kv_blocks_total);
}

TEST_CASE("cancel mid-stream frees the KV blocks and ends the stream cancelled", "[worker][loop]") {
    auto inner = make_backend(1);
    HookBackend backend(*inner, slow_steps);
    Metrics metrics = make_metrics();
    EngineLoop loop(backend, stories().tok, {}, metrics);

    auto running = loop.submit(greedy({bos()}, 400, false));
    auto queued = loop.submit(greedy({bos()}, 400, false));  // one slot: this one waits
    REQUIRE(running);
    REQUIRE(queued);
    Collected c = collect(*running, {}, [](const Collected& c) { return c.ids.size() >= 3; });
    CHECK(loop.status().running == 1);
    CHECK(loop.status().kv_blocks_free < loop.status().kv_blocks_total);

    CHECK(loop.cancel(queued->id()));
    const Collected q = collect(*queued);
    CHECK(q.last.finish == FinishReason::cancelled);
    CHECK(q.last.completion_tokens == 0);

    CHECK(loop.cancel(running->id()));
    loop.cancel(running->id());  // a second cancel on its way changes nothing (one finished event, one count)
    c = collect(*running, std::move(c));
    CHECK(c.last.finish == FinishReason::cancelled);
    CHECK(c.last.completion_tokens >= 3);
    CHECK(c.last.completion_tokens < 400);
    CHECK_FALSE(loop.cancel(running->id()));  // finished: unknown now
    CHECK_FALSE(loop.cancel(987654));

    const LoopStatus st = loop.status();
    CHECK(st.running == 0);
    CHECK(st.waiting == 0);
    CHECK(st.kv_blocks_free == st.kv_blocks_total);
    CHECK(metrics.cancelled() == 2);
    CHECK(metric_value(metrics.render(st, inner->memory()), "loom_requests_cancelled_total") == 2);
}

TEST_CASE("a full queue refuses with nullptr and counts the rejection", "[worker][loop]") {
    auto inner = make_backend(1);
    HookBackend backend(*inner, slow_steps);
    Metrics metrics = make_metrics();
    EngineLoop loop(backend, stories().tok, LoopLimits{2}, metrics);

    auto a = loop.submit(greedy({bos()}, 400, false));
    REQUIRE(a);
    Collected ca = collect(*a, {}, [](const Collected& c) { return !c.ids.empty(); });  // a holds the slot
    auto b = loop.submit(greedy({bos()}, 5));
    auto c = loop.submit(greedy({bos()}, 5));
    REQUIRE(b);
    REQUIRE(c);
    CHECK(loop.status().waiting == 2);
    CHECK(loop.status().running == 1);
    CHECK(loop.submit(greedy({bos()}, 5)) == nullptr);
    CHECK(metrics.rejected("queue_full") == 1);
    CHECK(metric_value(metrics.render(loop.status(), inner->memory()),
                       "loom_requests_rejected_total{reason=\"queue_full\"}") == 1);

    loop.cancel(a->id());
    CHECK(collect(*a, std::move(ca)).last.finish == FinishReason::cancelled);
    CHECK(collect(*b).last.finish == FinishReason::max_tokens);
    CHECK(collect(*c).last.finish == FinishReason::max_tokens);
    auto d = loop.submit(greedy({bos()}, 5));  // room again
    REQUIRE(d);
    CHECK(collect(*d).last.finish == FinishReason::max_tokens);
    CHECK(metrics.rejected("queue_full") == 1);
}

TEST_CASE("stop strings end the stream with stop and the text before the match", "[worker][loop]") {
    auto backend = make_backend(2);
    Metrics metrics = make_metrics();
    EngineLoop loop(*backend, stories().tok, {}, metrics);
    const Collected full = run_solo(loop, greedy({bos()}, 64, false));
    REQUIRE(full.last.finish == FinishReason::max_tokens);
    REQUIRE(full.text.size() > 60);

    // A stop string inside one token, one across tokens, and one of two where the other never occurs.
    for (const std::vector<std::string>& stops : std::vector<std::vector<std::string>>{
             {"little girl"}, {full.text.substr(20, 9)}, {"zzzq", full.text.substr(41, 5)}, {"."}}) {
        INFO("stop " << stops.back());
        GenerationRequest r = greedy({bos()}, 64, false);
        r.stop_strings = stops;
        const Collected c = run_solo(loop, r);
        size_t at = std::string::npos;
        for (const auto& s : stops) at = std::min(at, full.text.find(s));
        REQUIRE(at != std::string::npos);
        CHECK(c.last.finish == FinishReason::stop_string);
        CHECK(c.text == full.text.substr(0, at));
        CHECK(c.ids == std::vector<int32_t>(full.ids.begin(), full.ids.begin() + static_cast<long>(c.ids.size())));
        CHECK(c.ids.size() < full.ids.size());
    }

    // Beginnings that keep matching without completing change nothing.
    GenerationRequest r = greedy({bos()}, 64, false);
    r.stop_strings = {"Lily. She loved to dance", "a little girl named Tom"};
    const Collected c = run_solo(loop, r);
    CHECK(c.last.finish == FinishReason::max_tokens);
    CHECK(c.text == full.text);
    CHECK(loop.status().kv_blocks_free == loop.status().kv_blocks_total);
}

TEST_CASE("max_tokens ends the stream with length; usage counts the tokens", "[worker][loop]") {
    auto backend = make_backend(2);
    Metrics metrics = make_metrics();
    EngineLoop loop(*backend, stories().tok, {}, metrics);
    for (int n : {1, 7, 33}) {
        const Collected c = run_solo(loop, greedy(random_prompt(5, 7), n, false));
        CHECK(c.last.finish == FinishReason::max_tokens);
        CHECK(c.last.completion_tokens == n);
        CHECK(c.last.prompt_tokens == 5);
        CHECK(static_cast<int>(c.ids.size()) == n);
    }
    // The context bounds prompt + completion (OpenAI's "length" too).
    const Collected c = run_solo(loop, greedy(random_prompt(kCtx - 4, 9), 100, false));
    CHECK(c.last.finish == FinishReason::context_full);
    CHECK(c.last.completion_tokens == 4);
}

TEST_CASE("invalid requests throw naming the field and queue nothing", "[worker][loop]") {
    using loom::test::contains;
    auto backend = make_backend(2);
    Metrics metrics = make_metrics();
    EngineLoop loop(*backend, stories().tok, {}, metrics);
    const auto with = [](const std::function<void(GenerationRequest&)>& edit) {
        GenerationRequest r = greedy({bos()}, 8);
        edit(r);
        return r;
    };
    CHECK_THROWS_WITH(loop.submit(with([](auto& r) { r.prompt.clear(); })), contains("prompt"));
    CHECK_THROWS_WITH(loop.submit(with([](auto& r) { r.prompt = {bos(), 512}; })), contains("prompt: token id 512"));
    CHECK_THROWS_WITH(loop.submit(with([](auto& r) { r.prompt = {-1}; })), contains("prompt"));
    CHECK_THROWS_WITH(loop.submit(with([](auto& r) { r.prompt = random_prompt(kCtx, 1); })), contains("prompt"));
    CHECK_THROWS_AS(loop.submit(with([](auto& r) { r.prompt = random_prompt(kCtx, 1); })), engine::RequestError);
    CHECK_THROWS_WITH(loop.submit(with([](auto& r) { r.options.max_tokens = 0; })), contains("max_tokens"));
    CHECK_THROWS_WITH(loop.submit(with([](auto& r) { r.options.top_logprobs = 21; })), contains("top_logprobs"));
    CHECK_THROWS_WITH(loop.submit(with([](auto& r) { r.options.sampling.top_p = 1.5f; })), contains("top_p"));
    CHECK_THROWS_WITH(loop.submit(with([](auto& r) { r.options.sampling.temperature = -1; })), contains("temperature"));
    CHECK_THROWS_AS(loop.submit(with([](auto& r) { r.options.sampling.temperature = -1; })),
                    engine::SamplingParamError);
    CHECK_THROWS_WITH(loop.submit(with([](auto& r) {
        r.options.sampling.logit_bias = {{600, 1.0f}};
    })),
                      contains("logit_bias"));
    CHECK_THROWS_WITH(loop.submit(with([](auto& r) {
        r.options.sampling.logit_bias.assign(engine::kMaxLogitBiasEntries + 1, {5, 1.0f});
    })),
                      contains("logit_bias"));
    CHECK_THROWS_WITH(loop.submit(with([](auto& r) { r.stop_strings = {"ok", ""}; })), contains("stop"));
    const LoopStatus st = loop.status();
    CHECK(st.waiting == 0);
    CHECK(st.running == 0);
    CHECK(metrics.rejected("queue_full") == 0);
    // The loop still serves.
    CHECK(run_solo(loop, greedy({bos()}, 3)).last.completion_tokens == 3);
}

TEST_CASE("metrics render every required series; counters equal the tokens delivered", "[worker][loop][metrics]") {
    auto backend = make_backend(4);
    Metrics metrics = make_metrics();
    EngineLoop loop(*backend, stories().tok, {}, metrics);
    loop.warm_up();  // not counted
    CHECK(metrics.prompt_tokens() == 0);
    CHECK(metrics.generation_tokens() == 0);

    std::vector<std::shared_ptr<RequestStream>> streams;
    for (int i = 0; i < 3; ++i)
        streams.push_back(loop.submit(greedy(random_prompt(3 + 10 * i, 50 + i), 5 + 4 * i, false)));
    GenerationRequest stopped = greedy({bos()}, 64, false);
    stopped.stop_strings = {"little girl"};
    streams.push_back(loop.submit(stopped));
    int64_t prompt_tokens = 0, completion_tokens = 0;
    for (auto& s : streams) {
        REQUIRE(s);
        const Collected c = collect(*s);
        prompt_tokens += c.last.prompt_tokens;
        completion_tokens += c.last.completion_tokens;
    }
    metrics.count_error("invalid_request");

    const std::string text = metrics.render(loop.status(), backend->memory());
    const std::string m = "{model_name=\"stories260K\"}";
    for (const char* name : {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                             "vllm:prompt_tokens_total", "vllm:generation_tokens_total"}) {
        INFO(name);
        CHECK(text.find(std::string("# TYPE ") + name + " ") != std::string::npos);
        CHECK(text.find(std::string("\n") + name + m + " ") != std::string::npos);
    }
    for (const char* name :
         {"vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds", "vllm:e2e_request_latency_seconds"}) {
        INFO(name);
        const std::string n = name;
        CHECK(text.find("# TYPE " + n + " histogram") != std::string::npos);
        CHECK(text.find(n + "_bucket{model_name=\"stories260K\",le=\"+Inf\"}") != std::string::npos);
        CHECK(text.find(n + "_sum" + m) != std::string::npos);
        CHECK(metric_value(text, n + "_bucket{model_name=\"stories260K\",le=\"+Inf\"}") ==
              metric_value(text, n + "_count" + m));
    }
    CHECK(metric_value(text, "vllm:time_to_first_token_seconds_count" + m) == 4);
    CHECK(metric_value(text, "vllm:e2e_request_latency_seconds_count" + m) == 4);
    CHECK(metric_value(text, "vllm:inter_token_latency_seconds_count" + m) == completion_tokens - 4);
    CHECK(metric_value(text, "vllm:prompt_tokens_total" + m) == prompt_tokens);
    CHECK(metric_value(text, "vllm:generation_tokens_total" + m) == completion_tokens);
    CHECK(metric_value(text, "vllm:num_requests_running" + m) == 0);
    CHECK(metric_value(text, "vllm:num_requests_waiting" + m) == 0);
    CHECK(metric_value(text, "vllm:kv_cache_usage_perc" + m) == 0);
    for (const auto& u : backend->memory().uses) {
        CHECK(metric_value(text, "loom_vram_bytes{purpose=\"" + u.purpose + "\"}") == double(u.used));
        CHECK(metric_value(text, "loom_vram_reserved_bytes{purpose=\"" + u.purpose + "\"}") == double(u.reserved));
    }
    CHECK(metric_value(text, "loom_memory_device_resident") == 0);
    CHECK(metric_value(text, "loom_requests_cancelled_total") == 0);
    CHECK(metric_value(text, "loom_request_errors_total{kind=\"fatal\"}") == 0);
    CHECK(metric_value(text, "loom_request_errors_total{kind=\"invalid_request\"}") == 1);
    CHECK(metric_value(text, "loom_requests_rejected_total{reason=\"queue_full\"}") == 0);
    CHECK(metric_value(text, "loom_backend_info{backend=\"cpu\",device=\"CPU, 1 thread\"}") == 1);

    // Every sample line is `name[{labels}] number`; a histogram's buckets never decrease.
    std::istringstream in(text);
    std::string previous_name;
    double previous_bucket = 0;
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#') continue;
        const size_t space = line.rfind(' ');
        REQUIRE(space != std::string::npos);
        const double v = std::stod(line.substr(space + 1));
        const std::string name = line.substr(0, std::min(line.find('{'), space));
        if (name.ends_with("_bucket")) {
            if (name == previous_name) CHECK(v >= previous_bucket);
            previous_bucket = v;
        }
        previous_name = name;
    }
}

TEST_CASE("label values are escaped and the kv usage gauge is used/total", "[worker][metrics]") {
    Metrics metrics(MetricsInfo{"a \"quoted\" \\ name\n", "cuda", "GPU \"0\""});
    LoopStatus st;
    st.kv_blocks_total = 8;
    st.kv_blocks_free = 6;
    st.running = 2;
    st.waiting = 5;
    engine::MemoryReport mem;
    mem.device_resident = true;
    mem.uses = {{"weights", 100, 90}, {"kv_cache", 50, 10}};
    const std::string text = metrics.render(st, mem);
    const std::string m = "{model_name=\"a \\\"quoted\\\" \\\\ name\\n\"}";
    CHECK(metric_value(text, "vllm:kv_cache_usage_perc" + m) == 0.25);
    CHECK(metric_value(text, "vllm:num_requests_running" + m) == 2);
    CHECK(metric_value(text, "vllm:num_requests_waiting" + m) == 5);
    CHECK(metric_value(text, "loom_vram_bytes{purpose=\"weights\"}") == 90);
    CHECK(metric_value(text, "loom_vram_reserved_bytes{purpose=\"kv_cache\"}") == 50);
    CHECK(metric_value(text, "loom_memory_device_resident") == 1);
    CHECK(metric_value(text, "loom_backend_info{backend=\"cuda\",device=\"GPU \\\"0\\\"\"}") == 1);

    metrics.observe_time_to_first_token(0.005);  // on a bound: counted in that bucket (le is inclusive)
    metrics.observe_time_to_first_token(1000);   // beyond the last bound: +Inf only
    const std::string h = metrics.render(st, mem);
    const std::string b = "vllm:time_to_first_token_seconds_bucket{model_name=\"a \\\"quoted\\\" \\\\ name\\n\",le=";
    CHECK(metric_value(h, b + "\"0.001\"}") == 0);
    CHECK(metric_value(h, b + "\"0.005\"}") == 1);
    CHECK(metric_value(h, b + "\"160\"}") == 1);
    CHECK(metric_value(h, b + "\"+Inf\"}") == 2);
    CHECK(metric_value(h, "vllm:time_to_first_token_seconds_sum" + m) == 1000.005);
}

TEST_CASE("an idle loop sleeps instead of spinning", "[worker][loop]") {
    auto backend = make_backend(2);
    Metrics metrics = make_metrics();
    EngineLoop loop(*backend, stories().tok, {}, metrics);
    loop.warm_up();
    run_solo(loop, greedy({bos()}, 10));
    std::this_thread::sleep_for(50ms);
    const double t0 = process_cpu_seconds();
    std::this_thread::sleep_for(300ms);
    const double used = process_cpu_seconds() - t0;
    INFO("CPU time over 300 ms idle: " << used * 1000 << " ms");
    CHECK(used < 0.050);
    // And it wakes for the next request.
    CHECK(run_solo(loop, greedy({bos()}, 4)).last.completion_tokens == 4);
}

TEST_CASE("drain finishes running requests, cancels queued ones at once and the rest at the deadline",
          "[worker][loop]") {
    auto inner = make_backend(2);
    HookBackend backend(*inner, slow_steps);
    Metrics metrics = make_metrics();
    EngineLoop loop(backend, stories().tok, {}, metrics);

    auto shortr = loop.submit(greedy({bos()}, 30, false));
    auto longr = loop.submit(greedy({bos()}, 400, false));
    REQUIRE(shortr);
    REQUIRE(longr);
    Collected cl = collect(*longr, {}, [](const Collected& c) { return !c.ids.empty(); });
    auto queued = loop.submit(greedy({bos()}, 10, false));  // both slots are taken
    REQUIRE(queued);

    const auto t0 = std::chrono::steady_clock::now();
    auto drained = std::async(std::launch::async, [&] { loop.drain(800ms); });
    const Collected cq = collect(*queued);
    const double queued_after = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    drained.get();
    const double drain_took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    CHECK(cq.last.finish == FinishReason::cancelled);
    CHECK(cq.last.completion_tokens == 0);
    CHECK(queued_after < 0.4);
    CHECK(drain_took >= 0.75);
    CHECK(drain_took < 2.0);
    const Collected cs = collect(*shortr);
    CHECK(cs.last.finish == FinishReason::max_tokens);
    CHECK(cs.last.completion_tokens == 30);
    cl = collect(*longr, std::move(cl));
    CHECK(cl.last.finish == FinishReason::cancelled);
    CHECK(cl.last.completion_tokens < 400);

    CHECK(loop.draining());
    CHECK(loop.submit(greedy({bos()}, 5)) == nullptr);
    CHECK(metrics.rejected("draining") == 1);
    CHECK(metrics.rejected("queue_full") == 0);
    CHECK(loop.status().kv_blocks_free == loop.status().kv_blocks_total);
    CHECK(metrics.cancelled() == 2);
}

TEST_CASE("a backend failure that is not a request error poisons the loop", "[worker][loop]") {
    auto inner = make_backend(2);
    // The fault comes at the third step that runs both requests.
    int both = 0;
    HookBackend backend(*inner, [&both](int, size_t entries) {
        if (entries == 2 && ++both == 3) throw std::runtime_error("simulated device fault");
    });
    Metrics metrics = make_metrics();
    EngineLoop loop(backend, stories().tok, {}, metrics);
    auto a = loop.submit(greedy({bos()}, 400, false));
    auto b = loop.submit(greedy(random_prompt(9, 3), 400, false));
    REQUIRE(a);
    REQUIRE(b);
    for (auto* s : {a.get(), b.get()}) {
        const Collected c = collect(*s);
        CHECK(c.last.finish == FinishReason::error);
        CHECK_THAT(c.last.error, loom::test::contains("simulated device fault"));
        CHECK(c.last.completion_tokens < 400);
    }
    CHECK(loop.poisoned());
    CHECK_THAT(loop.poison_message(), loom::test::contains("simulated device fault"));
    CHECK(loop.submit(greedy({bos()}, 5)) == nullptr);
    CHECK(metrics.rejected("poisoned") == 1);
    CHECK(metrics.errors("fatal") == 1);
    CHECK_THROWS_AS(loop.warm_up(), std::runtime_error);
    loop.drain(100ms);  // nothing left: returns at once
}

TEST_CASE("a request error from a step fails the running requests and the loop keeps serving", "[worker][loop]") {
    auto inner = make_backend(2);
    HookBackend backend(*inner, [](int step, size_t) {
        if (step == 3) throw engine::RequestError("simulated refusal");
    });
    Metrics metrics = make_metrics();
    EngineLoop loop(backend, stories().tok, {}, metrics);
    auto a = loop.submit(greedy({bos()}, 20, false));
    REQUIRE(a);
    const Collected c = collect(*a);
    CHECK(c.last.finish == FinishReason::error);
    CHECK_THAT(c.last.error, loom::test::contains("simulated refusal"));
    CHECK_FALSE(loop.poisoned());
    CHECK(metrics.errors("request") == 1);
    CHECK(run_solo(loop, greedy({bos()}, 6, false)).last.finish == FinishReason::max_tokens);
    CHECK(loop.status().kv_blocks_free == loop.status().kv_blocks_total);
}

TEST_CASE("on_ready is called after events are queued, and at registration when some wait", "[worker][loop]") {
    auto backend = make_backend(2);
    Metrics metrics = make_metrics();
    EngineLoop loop(*backend, stories().tok, {}, metrics);
    std::atomic<int> calls{0};
    auto s = loop.submit(greedy({bos()}, 8, false));
    REQUIRE(s);
    s->on_ready([&] { ++calls; });
    const Collected c = collect(*s);
    CHECK(calls.load() >= 1);
    CHECK(s->finished());
    CHECK(s->take().empty());

    auto t = loop.submit(greedy({bos()}, 2, false));
    REQUIRE(t);
    while (!t->finished()) std::this_thread::sleep_for(5ms);
    std::atomic<int> late{0};
    t->on_ready([&] { ++late; });  // events wait: called here, once
    CHECK(late.load() == 1);
    CHECK(collect(*t).last.completion_tokens == 2);
}
