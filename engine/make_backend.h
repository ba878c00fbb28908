// The one place that knows which backends this build holds: builds the named one with the model
// resident. The CLI, the worker, tests and benches all construct backends through it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/backend.h"
#include "engine/load_step.h"
#include "gguf/reader.h"

namespace loom::engine {

// What a backend's KV cache stores: f32 (reference-grade attention inputs) or f16 (half the memory).
enum class KvCacheType { f16, f32 };

// "f16" / "f32" -> the type; RequestError("kv_type") naming the valid values otherwise.
KvCacheType parse_kv_cache_type(std::string_view name);
std::string_view to_string(KvCacheType type);

// The KV cache type `backend` uses for `file` when none is asked for (docs/VALIDATION.md's precision
// policy): cpu always f32; cuda f32 when the model's matrices are unquantized (F32, F16, BF16:
// gguf::unquantized_matrices), whose users expect reference-grade results (an fp16 cache cost up to
// 1.8e-2 nats on the oracle models), and f16 for quantized ones, whose own error is larger.
// gguf::estimate_memory sizes the cache by the same rule.
KvCacheType default_kv_cache_type(std::string_view backend, const gguf::File& file);

struct BackendOptions {
    int n_ctx = 0;            // positions per sequence; <= 0: the model's training context
    BatchLimits limits = {};  // sequences, KV positions, tokens per step, VRAM budget (cuda)
    int threads = 0;          // cpu: matrix-product threads; <= 0: one per hardware thread
    // cpu, tests only: emulate the CUDA backend's int8 activations (engine/cpu/cpu_backend.h), so a test can
    // compare the two like with like. No CLI or worker option sets it: it is not a way to run a model.
    bool cpu_q8_emulation = false;
    int device = 0;                                     // cuda: the device index
    bool cuda_graphs = true;                            // cuda: replay decode-only steps from CUDA graphs
    std::optional<KvCacheType> kv_type = std::nullopt;  // unset: default_kv_cache_type(kind, file)
    // cuda: run every token as a decode row, prefill ones included, so a position's logits are the same bits
    // whether it came in a prefill chunk of any size or a decode step, alone or beside other sequences (issue
    // 16; docs/PERFORMANCE.md: prefill is several times slower). The cpu backend is invariant anyway.
    bool batch_invariant = false;
    // Told each load step as it happens (engine/load_step.h); cuda keeps it for its graph captures,
    // so what it captures must outlive the backend.
    LoadCallback on_load_step{};
};

// "cpu", then "cuda" when this build has the CUDA backend.
std::vector<std::string> built_backends();
bool backend_built(std::string_view kind);

// Whether `kind` can run on this machine now: cpu always; cuda when this build has it and the CUDA
// runtime sees a device. `where`: the device it runs on; `why_not`: the cause otherwise (no driver
// or device, or a kind this build lacks). Never throws and creates no CUDA context.
struct BackendProbe {
    bool usable = false;
    std::string where = {};
    std::string why_not = {};
};
BackendProbe probe_backend(std::string_view kind);

// RequestError("backend") for a kind this build lacks; DeviceError when the device cannot run or
// hold the model; ModelError for a model no kernel handles; MemoryBudgetError for a budget too small;
// RequestError("kv_type") for f16 on the cpu backend.
std::unique_ptr<Backend> make_backend(std::string_view kind, const gguf::File& file,
                                      const BackendOptions& options = {});

}  // namespace loom::engine
