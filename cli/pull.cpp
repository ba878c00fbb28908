// `loom pull ORG/REPO[:QUANT] | ORG/REPO/FILE.gguf`: downloads a GGUF from the Hugging Face Hub
// (or $LOOM_HF_ENDPOINT) into the model cache, verified by sha256.
#include <cstdio>
#include <memory>
#include <string>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/download.h"
#include "models/model_cache.h"
#include "cli/progress.h"

namespace loom::cli {
namespace {

int pull(const std::string& text) {
    ModelRef ref;
    try {
        ref = models::parse_model_ref(text);
    } catch (const RefError& e) {
        std::fprintf(stderr, "loom pull: %s\n", e.what());
        return 2;
    }
    try {
        const Hub hub = Hub::from_environment();
        const std::string file =
            ref.file.empty() ? models::pick_gguf(hub.list_files(ref), ref.quant, ref.repo_id()) : ref.file;
        const auto dest = models::cached_path(models::models_dir(), ref, file);
        const std::string name = ref.repo_id() + "/" + file;
        if (std::filesystem::exists(dest)) {
            std::printf("%s is already in the cache: %s (loom rm %s to pull it again)\n", name.c_str(), dest.c_str(),
                        name.c_str());
            return 0;
        }
        const auto r = download_verified(hub, ref, file, dest, isatty(STDERR_FILENO) != 0);
        std::printf("pulled %s (%s, sha256 %s): %s\n", name.c_str(), human_bytes(r.bytes).c_str(), r.sha256.c_str(),
                    dest.c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "loom pull: %s\n", e.what());
        return 1;
    }
}

}  // namespace

void register_pull(CLI::App& app, int& exit_code) {
    auto* cmd = app.add_subcommand("pull", "Download a GGUF from the Hugging Face Hub into loom's model cache");
    auto model = std::make_shared<std::string>();
    cmd->add_option("model", *model, "ORG/REPO[:QUANT] or ORG/REPO/FILE.gguf")->required();
    cmd->footer(
        "Example: loom pull bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M\n"
        "Cache: $LOOM_MODELS (default ~/.cache/loom/models). Hub: $LOOM_HF_ENDPOINT (default\n"
        "https://huggingface.co); $HF_TOKEN is sent to it as a Bearer token. An interrupted pull resumes.");
    cmd->callback([model, &exit_code] { exit_code = pull(*model); });
}

}  // namespace loom::cli
