// `loom gpu-info` as a user runs it: on a machine with a usable GPU it lists every device (text and
// --json); without one, or in a build without CUDA, it names the cause on stderr and exits 3.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>

#include "catch.hpp"
#include "support/run_command.h"
#ifdef LOOM_HAVE_CUDA
#include "kernels/device_info.h"
#endif

using loom::test::run_command;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

void check_refused(const std::string& args, const std::string& cause) {
    const auto r = run_command(loom::test::loom_bin() + " gpu-info" + args);
    INFO(r.err);
    CHECK(r.exit_code == 3);
    CHECK(r.out.empty());
    CHECK(contains(r.err, cause));
}

}  // namespace

#ifdef LOOM_HAVE_CUDA
TEST_CASE("gpu-info lists the usable devices, or exits 3 naming why there are none", "[cli][gpu-info]") {
    const auto inv = loom::kernels::query_cuda();
    const bool usable =
        std::any_of(inv.devices.begin(), inv.devices.end(), [](const auto& d) { return d.cc_major >= 8; });
    if (!usable) {
        const std::string cause = inv.devices.empty() ? inv.error : std::string("compute capability");
        check_refused("", cause);
        check_refused(" --json", cause);
        return;
    }

    const auto text = run_command(loom::test::loom_bin() + " gpu-info");
    INFO(text.err);
    REQUIRE(text.exit_code == 0);
    CHECK(contains(text.out, "CUDA driver " + std::to_string(inv.driver_version / 1000) + "."));
    for (const auto& d : inv.devices) {
        CHECK(contains(text.out, "device " + std::to_string(d.index) + ": " + d.name));
        CHECK(contains(text.out, d.uuid));
        CHECK(
            contains(text.out, "compute capability " + std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor)));
        CHECK(contains(text.out, std::to_string(d.vram_total) + " bytes"));
    }

    const auto js = run_command(loom::test::loom_bin() + " gpu-info --json");
    INFO(js.err);
    REQUIRE(js.exit_code == 0);
    const auto j = nlohmann::json::parse(js.out);
    CHECK(j.at("driver_version").get<std::string>().find('.') != std::string::npos);
    CHECK(j.at("runtime_version").get<std::string>().find('.') != std::string::npos);
    REQUIRE(j.at("devices").size() == inv.devices.size());
    for (size_t i = 0; i < inv.devices.size(); ++i) {
        const auto& d = j.at("devices")[i];
        const auto& want = inv.devices[i];
        CHECK(d.at("index") == want.index);
        CHECK(d.at("name") == want.name);
        CHECK(d.at("uuid") == want.uuid);
        CHECK(d.at("multiprocessors") == want.multiprocessors);
        CHECK(d.at("vram_total_bytes") == want.vram_total);
        CHECK(d.at("vram_free_bytes").get<uint64_t>() <= want.vram_total);
    }
}
#else
TEST_CASE("gpu-info in a build without CUDA exits 3 saying so", "[cli][gpu-info]") {
    check_refused("", "no CUDA support");
    check_refused(" --json", "no CUDA support");
}
#endif
