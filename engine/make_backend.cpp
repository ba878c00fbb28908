// make_backend: the backends this build was configured with (LOOM_HAVE_CUDA), by name.
#include "engine/make_backend.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "engine/cpu/cpu_backend.h"
#include "engine/errors.h"
#ifdef LOOM_HAVE_CUDA
#include "engine/cuda/cuda_backend.h"
#include "kernels/device_info.h"
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

namespace {

std::string not_built(std::string_view kind) {
    std::string built;
    for (const std::string& b : built_backends()) built += (built.empty() ? "" : ", ") + b;
    return "\"" + std::string(kind) + "\" is not a backend of this build (" + built + ")";
}

}  // namespace

BackendProbe probe_backend(std::string_view kind) {
    if (kind == "cpu")
        return {.usable = true,
                .where = "the CPU (" + std::to_string(std::thread::hardware_concurrency()) + " hardware threads)"};
#ifdef LOOM_HAVE_CUDA
    if (kind == "cuda") {
        const kernels::CudaInventory inv = kernels::query_cuda(false);
        if (inv.devices.empty()) return {.why_not = "no usable CUDA device (" + inv.error + ")"};
        const kernels::DeviceInfo& d = inv.devices.front();
        char where[256];
        std::snprintf(where, sizeof where, "device 0: %s (sm_%d%d, %.1f GiB)", d.name.c_str(), d.cc_major, d.cc_minor,
                      double(d.vram_total) / double(1ull << 30));
        return {.usable = true, .where = where};
    }
#endif
    return {.why_not = not_built(kind)};
}

KvCacheType parse_kv_cache_type(std::string_view name) {
    if (name == "f16") return KvCacheType::f16;
    if (name == "f32") return KvCacheType::f32;
    throw RequestError("kv_type", "\"" + std::string(name) + "\" is not a KV cache type (f16 or f32)");
}

std::string_view to_string(KvCacheType type) { return type == KvCacheType::f32 ? "f32" : "f16"; }

KvCacheType default_kv_cache_type(std::string_view backend, const gguf::File& file) {
    if (backend == "cpu") return KvCacheType::f32;
    return gguf::unquantized_matrices(file) ? KvCacheType::f32 : KvCacheType::f16;
}

namespace {

std::unique_ptr<Backend> build(std::string_view kind, const gguf::File& file, const BackendOptions& o) {
    if (kind == "cpu") {
        if (o.kv_type == KvCacheType::f16)
            throw RequestError("kv_type", "the cpu backend keeps its KV cache in f32; f16 is a cuda option");
        return std::make_unique<cpu::CpuBackend>(file, o.n_ctx, o.threads, o.limits, o.cpu_q8_emulation);
    }
#ifdef LOOM_HAVE_CUDA
    if (kind == "cuda")
        return std::make_unique<cuda::CudaBackend>(
            file, o.n_ctx, o.device, o.limits, o.cuda_graphs,
            o.kv_type.value_or(default_kv_cache_type(kind, file)) == KvCacheType::f32, o.batch_invariant,
            o.on_load_step);
#endif
    throw RequestError("backend", not_built(kind));
}

std::string summary(const gguf::File& file) {
    const ModelConfig c = ModelConfig::from_gguf(file);
    return c.arch_name + ", " + std::to_string(c.n_layer) + " layers, " + std::to_string(c.n_embd) +
           " wide, vocabulary " + std::to_string(c.n_vocab) + ", context " + std::to_string(c.n_ctx_train) + "; " +
           std::to_string(file.tensors().size()) + " tensors, " + std::to_string(file.file_size() / 1000000) +
           " MB file";
}

uint64_t reserved(const MemoryReport& m, std::string_view purpose) {
    for (const MemoryUse& u : m.uses)
        if (u.purpose == purpose) return u.reserved;
    return 0;
}

}  // namespace

std::unique_ptr<Backend> make_backend(std::string_view kind, const gguf::File& file, const BackendOptions& o) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto since = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    const LoadCallback& report = o.on_load_step;
    if (report) report({.kind = LoadStep::Kind::parse, .what = summary(file)});
    std::unique_ptr<Backend> b = build(kind, file, o);
    if (!report) return b;
    const MemoryReport m = b->memory();
    if (b->name() != "cuda") {  // the CUDA backend reports its upload as it goes
        const uint64_t w = reserved(m, "weights");
        report({.kind = LoadStep::Kind::weights, .what = m.where, .bytes = w, .total = w, .seconds = since()});
    }
    const KvCapacity kv = b->kv_capacity();
    report({.kind = LoadStep::Kind::kv_cache,
            .bytes = reserved(m, "kv_cache"),
            .tokens = int64_t{kv.blocks} * kv.block_tokens});
    report({.kind = LoadStep::Kind::ready, .seconds = since()});
    return b;
}

}  // namespace loom::engine
