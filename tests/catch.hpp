// One include for Catch2 v2 (Debian 12) and v3 (the GPU host), plus the few helpers whose names
// differ between the two.
#pragma once

#include <string>

#if __has_include(<catch2/catch_test_macros.hpp>)
#include <catch2/catch_approx.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
using Catch::Approx;
namespace loom::test {
// Matcher: the string contains `part` (CHECK_THAT(text, contains("...")).
inline auto contains(const std::string& part) { return Catch::Matchers::ContainsSubstring(part); }
}  // namespace loom::test
#else
#include <catch2/catch.hpp>
namespace loom::test {
inline auto contains(const std::string& part) { return Catch::Contains(part); }
}  // namespace loom::test
#endif
