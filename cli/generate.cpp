// `loom generate`: one prompt through a named backend, streamed to stdout or reported as JSON.
// The default backend is cuda; the CPU reference backend runs only when named with --backend cpu.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "models/model_cache.h"
#include "cli/open_backend.h"
#include "cli/sampling_flags.h"
#include "engine/errors.h"
#include "engine/generator.h"
#include "engine/layer_dump.h"
#include "gguf/reader.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace loom::cli {
namespace {

constexpr int kExitBadInput = 2;

struct Options {
    std::string model;
    std::string backend = "cuda";
    std::string prompt;
    bool has_prompt = false;
    std::string chat;
    std::string system;
    int n = 128;
    int ctx = 0;
    int threads = 0;
    std::vector<std::string> stop;
    engine::SamplingParams sampling;
    bool ignore_eos = false;
    bool json = false;
    std::string dump_layers;
    std::string kv_type;  // empty: engine::default_kv_cache_type for the backend and model
    bool batch_invariant = false;
};

std::vector<int32_t> build_prompt(const Options& o, const gguf::File& file, const tokenizer::Tokenizer& tok) {
    if (!o.chat.empty()) {
        tokenizer::ChatTemplateInputs in;
        if (!o.system.empty()) in.messages.push_back({{"role", "system"}, {"content", o.system}});
        in.messages.push_back({{"role", "user"}, {"content", o.chat}});
        in.add_generation_prompt = true;
        const auto special = tokenizer::special_token_strings(file);
        in.bos_token = special.bos;
        in.eos_token = special.eos;
        const std::string rendered = tokenizer::ChatTemplate::from_gguf(file).render(in);
        return tok.encode(rendered, {.add_special = false, .parse_special = true});
    }
    if (o.prompt.empty()) {  // -p "": the prompt is just BOS
        if (!tok.special_ids().bos) throw engine::RequestError("-p \"\": the model has no BOS token");
        return {*tok.special_ids().bos};
    }
    return tok.encode(o.prompt, {.add_special = true, .parse_special = true});
}

int run(const Options& o) {
    check_backend_kind(o.backend);
    if (o.has_prompt == !o.chat.empty()) {
        std::fprintf(stderr, "loom generate: give exactly one of -p TEXT and --chat TEXT\n");
        return kExitBadInput;
    }
    if (!o.system.empty() && o.chat.empty()) {
        std::fprintf(stderr, "loom generate: --system needs --chat\n");
        return kExitBadInput;
    }
    check_backend_usable(o.backend);

    const auto t0 = std::chrono::steady_clock::now();
    const auto file = gguf::File::open(o.model);
    const auto tok = tokenizer::Tokenizer::from_gguf(file);
    const std::unique_ptr<engine::Backend> backend_ptr = open_backend(
        o.backend, file,
        {.n_ctx = o.ctx,
         .threads = o.threads,
         .kv_type = o.kv_type.empty() ? std::nullopt : std::optional(engine::parse_kv_cache_type(o.kv_type)),
         .batch_invariant = o.batch_invariant});
    engine::Backend& backend = *backend_ptr;
    const double load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const std::vector<int32_t> prompt = build_prompt(o, file, tok);

    engine::GenerateOptions g;
    g.max_tokens = o.n;
    g.sampling = o.sampling;
    g.ignore_eos = o.ignore_eos;
    g.stop_strings = o.stop;
    std::unique_ptr<engine::LayerDumpWriter> dump;
    if (!o.dump_layers.empty()) dump = std::make_unique<engine::LayerDumpWriter>(o.dump_layers, backend.config());

    const auto stream = [&](std::string_view piece) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
    };
    g.layer_observer = dump.get();
    const engine::GenerateResult r =
        engine::generate(backend, tok, prompt, g, o.json ? std::function<void(std::string_view)>() : stream);
    if (dump) dump->finish(o.model, backend.name(), backend.device());

    if (o.json) {
        const nlohmann::json j = {{"backend", backend.name()},
                                  {"device", backend.device()},
                                  {"batch_invariant", backend.batch_invariant()},
                                  {"model", o.model},
                                  {"prompt_ids", prompt},
                                  {"ids", r.ids},
                                  {"text", r.text},
                                  {"stop_reason", engine::to_string(r.finish)},
                                  {"timings",
                                   {{"load_ms", load_ms},
                                    {"prompt_ms", r.timings.prompt_ms},
                                    {"ttft_ms", r.timings.ttft_ms},
                                    {"decode_ms", r.timings.decode_ms},
                                    {"decode_tok_s", r.timings.decode_tok_s}}}};
        std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
        std::printf("\n");
        std::fprintf(stderr,
                     "[backend %s, device %s] prompt %zu tokens in %.1f ms, %zu generated, stop: %s, %.2f tok/s\n",
                     backend.name().c_str(), backend.device().c_str(), prompt.size(), r.timings.prompt_ms, r.ids.size(),
                     std::string(engine::to_string(r.finish)).c_str(), r.timings.decode_tok_s);
    }
    return 0;
}

}  // namespace

void register_generate(CLI::App& app, int& exit_code) {
    auto* cmd = app.add_subcommand("generate", "Generate text from a prompt (default backend: cuda)");
    auto o = std::make_shared<Options>();
    cmd->add_option("-m,--model", o->model, "GGUF model file or cached model name")
        ->required()
        ->transform(models::file_or_cached_model());
    cmd->add_option("--backend", o->backend, "cuda (default) or cpu (the reference backend; only when named)");
    cmd->add_option("-p,--prompt", o->prompt, "Prompt text (\"\" = just BOS)")->each([o](const std::string&) {
        o->has_prompt = true;
    });
    cmd->add_option("--chat", o->chat, "A user message, rendered with the model's chat template");
    cmd->add_option("--system", o->system, "A system message for --chat");
    cmd->add_option("-n", o->n, "Maximum tokens to generate")->check(CLI::Range(0, 1 << 24));
    cmd->add_option("--ctx", o->ctx, "Context size in tokens (default: the model's)")->check(CLI::Range(0, 1 << 24));
    cmd->add_option("--threads", o->threads, "CPU threads (default: all)")->check(CLI::Range(0, 1024));
    cmd->add_option("--kv-type", o->kv_type,
                    "KV cache values: f32 (reference-grade) or f16 (cuda only); default f32 for F32/F16/BF16 "
                    "matrices, f16 for quantized ones")
        ->check(CLI::IsMember({"f16", "f32"}));
    cmd->add_flag("--batch-invariant", o->batch_invariant,
                  "The prompt through the decode kernels too: the same bits however it is chunked (cuda; slower "
                  "prefill; cpu always is)");
    add_sampling_flags(*cmd, o->sampling);
    cmd->add_option("--stop", o->stop, "Stop string (repeatable); not part of the output");
    cmd->add_flag("--ignore-eos", o->ignore_eos, "Keep generating past end-of-generation tokens");
    cmd->add_flag("--json", o->json, "Print one JSON object instead of streaming");
    cmd->add_option("--dump-layers", o->dump_layers, "Write every layer's hidden states to this folder");
    cmd->callback([o, &exit_code] { exit_code = run_model_command("generate", o->model, [&] { return run(*o); }); });
}

}  // namespace loom::cli
