// `loom bench -m MODEL`: prefill and batched decode step timings on the named backend, next to the
// bandwidth floor of reading the weights once per step, as a table or JSON. The measuring is
// engine/step_timing's, the same code bench/decode_bench runs.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/open_backend.h"
#include "cli/table.h"
#include "engine/model_config.h"
#include "engine/step_timing.h"
#include "models/model_cache.h"

namespace loom::cli {
namespace {

constexpr int kWarmupSteps = 8;  // decode steps before timing (CUDA graphs captured)

struct Options {
    std::string model;
    std::string backend = "cuda";
    int prompt = 512;
    int steps = 64;
    int prefill_runs = 5;
    std::vector<int> batches = {1, 8, 32};
    int ctx = 0;
    int threads = 0;
    bool json = false;
};

struct Decode {
    int batch;
    double ms_per_step, tok_s, floor_fraction;
};

double mean(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / static_cast<double>(v.size());
}

Decode time_decode(engine::Backend& backend, const Options& o, int batch, double floor) {
    engine::DecodeSteps steps(backend, batch, std::min(1024, backend.n_ctx()));
    for (int i = 0; i < kWarmupSteps; ++i) steps.step();
    std::vector<double> s;
    for (int i = 0; i < o.steps; ++i) s.push_back(steps.step());
    const double ms = mean(s) * 1e3;
    return {batch, ms, batch / (ms / 1e3), floor / ms};
}

double time_prefill_ms(engine::Backend& backend, const Options& o) {
    engine::PrefillSteps prefill(backend, o.prompt);
    prefill.run();  // warm-up
    std::vector<double> s;
    for (int i = 0; i < o.prefill_runs; ++i) s.push_back(prefill.run());
    return mean(s) * 1e3;
}

std::string fixed(double v, int digits) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
    return buf;
}

void print_table(const nlohmann::json& j) {
    std::printf("%s on backend %s, device %s\n", j["model"].get<std::string>().c_str(),
                j["backend"].get<std::string>().c_str(), j["device"].get<std::string>().c_str());
    std::printf("weights %s, copy bandwidth %.1f GB/s -> floor %.3f ms per step\n",
                human_bytes(j["weight_bytes"].get<int64_t>()).c_str(), j["bandwidth_gbps"].get<double>(),
                j["floor_ms"].get<double>());
    std::vector<std::vector<std::string>> rows = {{"TEST", "MS/STEP", "TOKENS/S", "FLOOR MS", "OF FLOOR"}};
    const auto& p = j["prefill"];
    rows.push_back(
        {"prefill " + std::to_string(p["tokens"].get<int>()), fixed(p["ms"], 3), fixed(p["tok_s"], 1), "-", "-"});
    for (const auto& d : j["decode"])
        rows.push_back({"decode batch " + std::to_string(d["batch"].get<int>()), fixed(d["ms_per_step"], 3),
                        fixed(d["tok_s"], 1), fixed(j["floor_ms"], 3),
                        fixed(100 * d["floor_fraction"].get<double>(), 1) + "%"});
    std::fputs(render_table(rows).c_str(), stdout);
}

void check_options(const Options& o, int n_ctx_train) {
    check_backend_kind(o.backend);
    const int ctx = o.ctx > 0 ? o.ctx : std::min(4096, n_ctx_train);
    if (o.prompt > ctx)
        throw std::invalid_argument("--prompt " + std::to_string(o.prompt) + " exceeds the context (" +
                                    std::to_string(ctx) + "; set --ctx)");
    for (int b : o.batches)
        if (b < 1 || b > 256) throw std::invalid_argument("--batch values must be 1 .. 256, not " + std::to_string(b));
}

int run(const Options& o) {
    check_backend_kind(o.backend);
    check_backend_usable(o.backend);
    const auto file = gguf::File::open(o.model);
    const int n_ctx_train = engine::ModelConfig::from_gguf(file).n_ctx_train;
    check_options(o, n_ctx_train);
    const int max_batch = *std::max_element(o.batches.begin(), o.batches.end());
    engine::BackendOptions bo;
    bo.n_ctx = o.ctx > 0 ? o.ctx : std::min(4096, n_ctx_train);
    bo.threads = o.threads;
    bo.limits = {max_batch, 0, std::max(o.prompt, max_batch)};
    const auto backend = open_backend(o.backend, file, bo);
    const uint64_t weights = engine::weight_bytes(*backend);
    const double gbps = engine::measure_copy_bandwidth_gbps(*backend);
    const double floor = engine::floor_ms(weights, gbps);
    const double prefill_ms = time_prefill_ms(*backend, o);
    nlohmann::json decode = nlohmann::json::array();
    for (int b : o.batches) {
        const Decode d = time_decode(*backend, o, b, floor);
        decode.push_back({{"batch", d.batch},
                          {"steps", o.steps},
                          {"ms_per_step", d.ms_per_step},
                          {"tok_s", d.tok_s},
                          {"floor_fraction", d.floor_fraction}});
    }
    const nlohmann::json j = {{"model", o.model},
                              {"backend", backend->name()},
                              {"device", backend->device()},
                              {"weight_bytes", weights},
                              {"bandwidth_gbps", gbps},
                              {"floor_ms", floor},
                              {"prefill",
                               {{"tokens", o.prompt},
                                {"runs", o.prefill_runs},
                                {"ms", prefill_ms},
                                {"tok_s", o.prompt / (prefill_ms / 1e3)}}},
                              {"decode", decode}};
    if (o.json)
        std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    else
        print_table(j);
    return 0;
}

}  // namespace

void register_bench(CLI::App& app, int& exit_code) {
    auto* cmd = app.add_subcommand("bench", "Time prefill and batched decode against the bandwidth floor");
    auto o = std::make_shared<Options>();
    cmd->add_option("-m,--model", o->model, "GGUF model file or cached model name")
        ->required()
        ->transform(models::file_or_cached_model());
    cmd->add_option("--backend", o->backend, "cuda (default) or cpu (the reference backend; only when named)");
    cmd->add_option("--prompt", o->prompt, "Prefill length in tokens")->check(CLI::Range(1, 1 << 20));
    cmd->add_option("-n,--steps", o->steps, "Timed decode steps per batch size")->check(CLI::Range(1, 1 << 20));
    cmd->add_option("--prefill-runs", o->prefill_runs, "Timed prefills")->check(CLI::Range(1, 10000));
    cmd->add_option("--batch", o->batches, "Decode batch sizes (repeatable; default 1 8 32)")->delimiter(',');
    cmd->add_option("--ctx", o->ctx, "Context size in tokens (default: the model's, at most 4096)")
        ->check(CLI::Range(0, 1 << 24));
    cmd->add_option("--threads", o->threads, "CPU threads (default: all)")->check(CLI::Range(0, 1024));
    cmd->add_flag("--json", o->json, "Print one JSON object instead of the table");
    cmd->callback([o, &exit_code] { exit_code = run_model_command("bench", o->model, [&] { return run(*o); }); });
}

}  // namespace loom::cli
