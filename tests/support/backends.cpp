// settle_tested_backends: LOOM_TEST_BACKENDS and LOOM_REQUIRE_GPU against engine::probe_backend.
#include "support/backends.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "engine/make_backend.h"
#include "support/test_data.h"

namespace loom::test {

namespace {

// Every backend loom has, whether or not this build holds it: a name outside these is a typo.
constexpr std::string_view kKnownBackends[] = {"cpu", "cuda"};

struct Untested {
    std::string kind, why;
};

std::vector<std::string> g_tested;
std::vector<Untested> g_untested;

std::vector<std::string> requested() {
    const char* env = std::getenv("LOOM_TEST_BACKENDS");
    if (!env || !*env) return engine::built_backends();
    std::vector<std::string> out;
    for (std::string_view rest = env; !rest.empty();) {
        const size_t comma = std::min(rest.find(','), rest.size());
        const std::string kind(rest.substr(0, comma));
        rest.remove_prefix(std::min(comma + 1, rest.size()));
        if (std::find(std::begin(kKnownBackends), std::end(kKnownBackends), kind) == std::end(kKnownBackends)) {
            std::fprintf(stderr, "LOOM_TEST_BACKENDS: \"%s\" is not a backend (cpu, cuda)\n", kind.c_str());
            std::exit(2);
        }
        if (std::find(out.begin(), out.end(), kind) == out.end()) out.push_back(kind);
    }
    return out;
}

bool gpu_required() {
    const char* require = std::getenv("LOOM_REQUIRE_GPU");
    return require && std::strcmp(require, "1") == 0;
}

}  // namespace

void settle_tested_backends() {
    for (const std::string& kind : requested()) {
        const engine::BackendProbe probe = engine::probe_backend(kind);
        if (probe.usable) {
            g_tested.push_back(kind);
            std::printf("%s cases on %s\n", kind.c_str(), probe.where.c_str());
            continue;
        }
        if (kind == "cuda" && gpu_required()) {
            std::fprintf(stderr, "FAILED: LOOM_REQUIRE_GPU=1 but the cuda cases cannot run: %s\n",
                         probe.why_not.c_str());
            std::exit(1);
        }
        g_untested.push_back({kind, probe.why_not});
    }
    std::string why;
    for (const Untested& u : g_untested) why += (why.empty() ? "" : "; ") + u.kind + " cases: " + u.why;
    if (g_tested.empty()) skip_program(why + "; set LOOM_REQUIRE_GPU=1 to fail instead");
    report_untested_backends();
    std::fflush(stdout);
}

const std::vector<std::string>& tested_backends() { return g_tested; }

std::vector<std::string> tested_backends(std::initializer_list<std::string_view> only) {
    std::vector<std::string> out;
    for (const std::string& kind : g_tested)
        if (std::find(only.begin(), only.end(), kind) != only.end()) out.push_back(kind);
    return out;
}

void report_untested_backends() {
    for (const Untested& u : g_untested)
        std::printf("SKIPPED %s cases: %s (LOOM_REQUIRE_GPU=1 makes that a failure)\n", u.kind.c_str(), u.why.c_str());
}

}  // namespace loom::test
