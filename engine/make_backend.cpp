// make_backend: the backends this build was configured with (LOOM_HAVE_CUDA), by name.
#include "engine/make_backend.h"

#include <algorithm>

#include "engine/cpu/cpu_backend.h"
#include "engine/errors.h"
#ifdef LOOM_HAVE_CUDA
#include "engine/cuda/cuda_backend.h"
#endif

namespace loom::engine {

std::vector<std::string> built_backends() {
#ifdef LOOM_HAVE_CUDA
    return {"cpu", "cuda"};
#else
    return {"cpu"};
#endif
}

bool backend_built(std::string_view kind) {
    const std::vector<std::string> built = built_backends();
    return std::find(built.begin(), built.end(), kind) != built.end();
}

KvCacheType parse_kv_cache_type(std::string_view name) {
    if (name == "f16") return KvCacheType::f16;
    if (name == "f32") return KvCacheType::f32;
    throw RequestError("kv_type", "\"" + std::string(name) + "\" is not a KV cache type (f16 or f32)");
}

std::string_view to_string(KvCacheType type) { return type == KvCacheType::f32 ? "f32" : "f16"; }

std::unique_ptr<Backend> make_backend(std::string_view kind, const gguf::File& file, const BackendOptions& o) {
    if (kind == "cpu") {
        if (o.kv_type == KvCacheType::f16)
            throw RequestError("kv_type", "the cpu backend keeps its KV cache in f32; f16 is a cuda option");
        return std::make_unique<cpu::CpuBackend>(file, o.n_ctx, o.threads, o.limits);
    }
#ifdef LOOM_HAVE_CUDA
    if (kind == "cuda")
        return std::make_unique<cuda::CudaBackend>(file, o.n_ctx, o.device, o.limits, o.cuda_graphs,
                                                   o.kv_type.value_or(KvCacheType::f16) == KvCacheType::f32);
#endif
    std::string built;
    for (const std::string& b : built_backends()) built += (built.empty() ? "" : ", ") + b;
    throw RequestError("backend", "\"" + std::string(kind) + "\" is not a backend of this build (" + built + ")");
}

}  // namespace loom::engine
