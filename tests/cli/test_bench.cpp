// `loom bench` as a user runs it on stories260K with the CPU backend named: the JSON report's
// fields, the table, and the exit codes for bad input and a missing GPU.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "catch.hpp"
#include "support/run_command.h"
#include "support/test_data.h"

using loom::test::run_command;
using loom::test::shell_quote;

namespace {

std::string bench_cmd(const std::string& args) {
    return loom::test::loom_bin() + " bench -m " + shell_quote(loom::test::require_stories260k().string()) + " " + args;
}

}  // namespace

TEST_CASE("bench --json on the CPU reports positive timings per batch", "[cli][bench]") {
    const auto r = run_command(bench_cmd("--backend cpu --json --prompt 32 -n 3 --prefill-runs 2 --batch 1,4"));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j.at("backend") == "cpu");
    CHECK(j.at("device").get<std::string>().rfind("CPU", 0) == 0);
    for (const char* key : {"weight_bytes", "bandwidth_gbps", "floor_ms"}) {
        INFO(key);
        CHECK(j.at(key).get<double>() > 0);
    }
    CHECK(j.at("weight_bytes").get<double>() > 1e6);  // stories260K's weights as f32: ~1.1 MB
    const auto& p = j.at("prefill");
    CHECK(p.at("tokens") == 32);
    CHECK(p.at("runs") == 2);
    CHECK(p.at("ms").get<double>() > 0);
    CHECK(p.at("tok_s").get<double>() > 0);
    const auto& d = j.at("decode");
    REQUIRE(d.size() == 2);
    CHECK(d[0].at("batch") == 1);
    CHECK(d[1].at("batch") == 4);
    for (const auto& row : d) {
        CHECK(row.at("steps") == 3);
        for (const char* key : {"ms_per_step", "tok_s", "floor_fraction"}) {
            INFO(key);
            CHECK(row.at(key).get<double>() > 0);
        }
        // tokens/s is batch / step time, and the fraction is the floor over the step time.
        CHECK(row.at("tok_s").get<double>() ==
              Approx(row.at("batch").get<double>() / (row.at("ms_per_step").get<double>() / 1e3)));
        CHECK(row.at("floor_fraction").get<double>() ==
              Approx(j.at("floor_ms").get<double>() / row.at("ms_per_step").get<double>()));
    }
}

TEST_CASE("bench prints a table without --json", "[cli][bench]") {
    const auto r = run_command(bench_cmd("--backend cpu --prompt 16 -n 2 --prefill-runs 1 --batch 2"));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("on backend cpu") != std::string::npos);
    CHECK(r.out.find("MS/STEP") != std::string::npos);
    CHECK(r.out.find("prefill 16") != std::string::npos);
    CHECK(r.out.find("decode batch 2") != std::string::npos);
    CHECK(r.out.find("decode batch 8") == std::string::npos);
}

TEST_CASE("bench refuses bad input with exit 2 and a missing GPU with exit 3", "[cli][bench]") {
    const auto too_long = run_command(bench_cmd("--backend cpu --prompt 100000"));
    CHECK(too_long.exit_code == 2);
    CHECK(too_long.err.find("--prompt 100000 exceeds the context") != std::string::npos);
    CHECK(run_command(bench_cmd("--backend cpu --batch 0")).exit_code == 2);
    CHECK(run_command(bench_cmd("--backend tpu")).exit_code == 2);
    if (!std::filesystem::exists("/dev/nvidiactl")) {
        const auto r = run_command(bench_cmd("--prompt 16 -n 1"));
        CHECK(r.exit_code == 3);
        CHECK(r.out.empty());
        CHECK(r.err.find("--backend cpu") != std::string::npos);
    }
}
