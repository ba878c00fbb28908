// Opening the backend a command names: cuda unless --backend cpu is given, and never a silent fallback
// to the CPU when the GPU cannot run the model (shared by generate, run and bench).
#pragma once

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "engine/backend.h"
#include "engine/make_backend.h"
#include "gguf/reader.h"

namespace loom::cli {

// CUDA was named (or defaulted to) and cannot run the model: the command exits kExitNoGpu (3).
// what(): "--backend cuda: <cause>; run with --backend cpu to use the CPU reference backend".
class BackendRefused : public std::runtime_error {
public:
    explicit BackendRefused(const std::string& why);
};

// Throws std::invalid_argument unless `kind` is "cuda" or "cpu" (a bad-input exit 2).
void check_backend_kind(const std::string& kind);

// Throws BackendRefused when `kind` is cuda and this build or machine has no usable CUDA device;
// cheap, so commands call it before reading the model.
void check_backend_usable(const std::string& kind);

// The named backend with the model resident; BackendRefused when the device cannot hold or run it.
// Without options.on_load_step, the load steps go to stderr (cli/load_display).
std::unique_ptr<engine::Backend> open_backend(const std::string& kind, const gguf::File& file,
                                              const engine::BackendOptions& options);

// Runs the body of `loom COMMAND`, turning what it throws into an exit code and one stderr line:
// BackendRefused 3; std::invalid_argument and engine::RequestError 2 ("loom COMMAND: what"); any
// other error 2 naming the model ("loom COMMAND: MODEL: what").
int run_model_command(std::string_view command, const std::string& model, const std::function<int()>& body);

}  // namespace loom::cli
