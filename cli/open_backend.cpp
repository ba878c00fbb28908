// open_backend: the cuda-or-refuse rule of the commands that run a model.
#include "cli/open_backend.h"

#include <unistd.h>

#include <cstdio>

#include "cli/cuda_status.h"
#include "cli/load_display.h"
#include "engine/errors.h"

namespace loom::cli {

namespace {
constexpr int kExitBadInput = 2;
}  // namespace

BackendRefused::BackendRefused(const std::string& why)
    : std::runtime_error("--backend cuda: " + why + "; run with --backend cpu to use the CPU reference backend") {}

void check_backend_kind(const std::string& kind) {
    if (kind != "cpu" && kind != "cuda")
        throw std::invalid_argument("--backend must be cuda or cpu, not '" + kind + "'");
}

void check_backend_usable(const std::string& kind) {
    if (kind != "cuda") return;
    if (const std::string why = cuda_unavailable_reason(); !why.empty()) throw BackendRefused(why);
}

std::unique_ptr<engine::Backend> open_backend(const std::string& kind, const gguf::File& file,
                                              const engine::BackendOptions& options) {
    check_backend_kind(kind);
    if (!engine::backend_built(kind)) throw BackendRefused(cuda_unavailable_reason());
    engine::BackendOptions o = options;
    if (!o.on_load_step) o.on_load_step = load_display(::isatty(STDERR_FILENO) != 0);
    try {
        return engine::make_backend(kind, file, o);
    } catch (const engine::DeviceError& e) {
        throw BackendRefused(e.what());
    }
}

int run_model_command(std::string_view command, const std::string& model, const std::function<int()>& body) {
    const std::string name(command);
    try {
        return body();
    } catch (const BackendRefused& e) {
        std::fprintf(stderr, "loom %s: %s\n", name.c_str(), e.what());
        return kExitNoGpu;
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "loom %s: %s\n", name.c_str(), e.what());
    } catch (const engine::RequestError& e) {  // sampling parameters too
        std::fprintf(stderr, "loom %s: %s\n", name.c_str(), e.what());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "loom %s: %s: %s\n", name.c_str(), model.c_str(), e.what());
    }
    return kExitBadInput;
}

}  // namespace loom::cli
