// describe(LoadStep): the words the CLI prints and the worker logs for each load step.
#include "engine/load_step.h"

#include <cstdio>

namespace loom::engine {
namespace {

std::string gb(uint64_t bytes) {
    char buf[32];
    const double v = static_cast<double>(bytes);
    if (v >= 1e9)
        std::snprintf(buf, sizeof buf, "%.2f GB", v / 1e9);
    else
        std::snprintf(buf, sizeof buf, "%.1f MB", v / 1e6);
    return buf;
}

std::string fmt(const char* f, double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

}  // namespace

std::string describe(const LoadStep& s) {
    switch (s.kind) {
        case LoadStep::Kind::parse: return "model: " + s.what;
        case LoadStep::Kind::weights: {
            std::string line = (s.bytes < s.total ? "uploading " : "loaded ") + gb(s.bytes);
            if (s.bytes < s.total) line += " of " + gb(s.total);
            line += " of weights to " + s.what;
            if (s.seconds > 0)
                line += " in " + fmt("%.2f s", s.seconds) + " (" + fmt("%.1f GB/s", s.bytes / s.seconds / 1e9) + ")";
            return line;
        }
        case LoadStep::Kind::kv_cache:
            return "KV cache: " + gb(s.bytes) + " for " + std::to_string(s.tokens) + " tokens";
        case LoadStep::Kind::graph_capture:
            return "captured a CUDA graph for decode batch " + std::to_string(s.tokens) + " in " +
                   fmt("%.1f ms", s.seconds * 1e3);
        case LoadStep::Kind::ready: return "ready in " + fmt("%.2f s", s.seconds);
    }
    return {};
}

}  // namespace loom::engine
