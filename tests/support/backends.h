// The backends a test program's cases run on: those this build has and this machine can run,
// narrowed by LOOM_TEST_BACKENDS. backend_main.cpp settles them before Catch2 runs.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace loom::test {

// Settles the backends under test from LOOM_TEST_BACKENDS (a comma-separated list; unset: every
// backend this build has) and prints them. A backend that cannot run here is skipped, reported
// now and by report_untested_backends(); but cuda fails the program (exit 1) when
// LOOM_REQUIRE_GPU=1. Exits 77 when no backend is left, 2 when the list names no backend.
void settle_tested_backends();

// Each case loops over these: for (backend : tested_backends()) DYNAMIC_SECTION(backend) {...}.
const std::vector<std::string>& tested_backends();
// The ones of `only` under test: cases about one backend's own behaviour.
std::vector<std::string> tested_backends(std::initializer_list<std::string_view> only);

// Prints the backends that were asked for but not tested, and why (after Catch2's summary).
void report_untested_backends();

}  // namespace loom::test
