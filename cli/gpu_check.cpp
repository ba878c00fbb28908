// `loom gpu-check -m MODEL`: loads the model on the GPU, verifies every arena is device memory,
// generates 32 greedy tokens, checks the first 16 against the CPU reference backend and reports
// tok/s. Exit 0 only when all of that holds; 1 when a check fails; 3 when no GPU can run it.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "models/model_cache.h"
#include "cli/cuda_status.h"
#include "engine/errors.h"
#include "engine/generator.h"
#include "engine/make_backend.h"
#include "gguf/reader.h"
#include "tokenizer/tokenizer.h"
#ifdef LOOM_HAVE_CUDA
#include "engine/cuda/cuda_backend.h"
#endif

namespace loom::cli {
namespace {

constexpr int kExitBadInput = 2;

struct Options {
    std::string model;
    int threads = 0;
};

#ifdef LOOM_HAVE_CUDA
// The check (CUDA builds only: without CUDA, run() reports why and checks nothing).
constexpr int kExitCheckFailed = 1;
constexpr int kGenerated = 32;
constexpr int kCompared = 16;
constexpr int kCheckCtx = 256;
const char* const kPrompt = "Once upon a time";

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

engine::GenerateOptions greedy(int n) {
    engine::GenerateOptions g;
    g.max_tokens = n;
    g.sampling.temperature = 0;
    g.ignore_eos = true;
    return g;
}

int run(const Options& o) {
    if (const std::string why = cuda_unavailable_reason(); !why.empty()) {
        std::fprintf(stderr, "loom gpu-check: %s\n", why.c_str());
        return kExitNoGpu;
    }
    const auto file = gguf::File::open(o.model);
    const auto tok = tokenizer::Tokenizer::from_gguf(file);
    const std::vector<int32_t> prompt = tok.encode(kPrompt, {.add_special = true, .parse_special = false});

    auto t0 = std::chrono::steady_clock::now();
    std::unique_ptr<engine::Backend> backend;
    try {
        backend = engine::make_backend("cuda", file, {.n_ctx = kCheckCtx});
    } catch (const engine::DeviceError& e) {
        std::fprintf(stderr, "loom gpu-check: %s\n", e.what());
        return kExitNoGpu;
    }
    auto* gpu = dynamic_cast<engine::cuda::CudaBackend*>(backend.get());  // its upload figures
    const double load_s = seconds_since(t0);
    bool ok = true;
    const auto verdict = [&ok](bool holds) {
        ok = ok && holds;
        return holds ? "ok" : "FAILED";
    };

    std::printf("loom gpu-check %s\n", o.model.c_str());
    std::printf("  device       %s, model loaded in %.2f s\n", gpu->device().c_str(), load_s);
    std::printf("  upload       %.1f MB of weights through pinned staging in %.3f s = %.2f GB/s\n",
                gpu->upload_bytes() / 1e6, gpu->upload_seconds(),
                gpu->upload_seconds() > 0 ? gpu->upload_bytes() / gpu->upload_seconds() / 1e9 : 0.0);
    const engine::MemoryReport mem = gpu->memory();
    for (const engine::MemoryUse& u : mem.uses)
        std::printf("  vram         %-10s %10.1f MiB used of %10.1f MiB\n", u.purpose.c_str(), u.used / 1048576.0,
                    u.reserved / 1048576.0);
    std::printf("  residency    every arena device memory (cudaPointerGetAttributes): %s\n",
                verdict(mem.device_resident));

    const engine::GenerateResult g = engine::generate(*gpu, tok, prompt, greedy(kGenerated));
    std::printf("  generate     %zu greedy tokens on cuda: prompt %.2f ms, %.1f tok/s decode  %s\n", g.ids.size(),
                g.timings.prompt_ms, g.timings.decode_tok_s, verdict(g.ids.size() == kGenerated));

    t0 = std::chrono::steady_clock::now();
    const auto cpu = engine::make_backend("cpu", file, {.n_ctx = kCheckCtx, .threads = o.threads});
    const engine::GenerateResult ref = engine::generate(*cpu, tok, prompt, greedy(kCompared));
    int same = 0;
    while (same < kCompared && same < static_cast<int>(g.ids.size()) && g.ids[same] == ref.ids[same]) ++same;
    std::printf("  cpu check    first %d greedy tokens equal the CPU reference's: %d/%d (%.1f s on %s)  %s\n",
                kCompared, same, kCompared, seconds_since(t0), cpu->device().c_str(), verdict(same == kCompared));
    std::printf("  text         %s\n", tok.decode(g.ids, {.skip_control = true}).c_str());
    std::printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : kExitCheckFailed;
}
#else
int run(const Options&) {
    std::fprintf(stderr, "loom gpu-check: %s\n", cuda_unavailable_reason().c_str());
    return kExitNoGpu;
}
#endif

}  // namespace

void register_gpu_check(CLI::App& app, int& exit_code) {
    auto* cmd = app.add_subcommand("gpu-check",
                                   "Load a model on the GPU, verify residency, generate, compare with the CPU "
                                   "(exit 0 pass, 1 fail, 3 no usable GPU)");
    auto o = std::make_shared<Options>();
    cmd->add_option("-m,--model", o->model, "GGUF model file or cached model name")
        ->required()
        ->transform(models::file_or_cached_model());
    cmd->add_option("--threads", o->threads, "CPU threads for the reference run (default: all)")
        ->check(CLI::Range(0, 1024));
    cmd->callback([o, &exit_code] {
        try {
            exit_code = run(*o);
        } catch (const engine::RequestError& e) {
            std::fprintf(stderr, "loom gpu-check: %s\n", e.what());
            exit_code = kExitBadInput;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "loom gpu-check: %s: %s\n", o->model.c_str(), e.what());
            exit_code = kExitBadInput;
        }
    });
}

}  // namespace loom::cli
