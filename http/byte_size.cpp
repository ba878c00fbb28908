// Parsing byte counts with K/M/G/T units.
#include "http/byte_size.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <stdexcept>

namespace loom::http {

namespace {

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

// The multiplier a unit stands for, or 0 when it is none.
uint64_t unit_bytes(const std::string& unit) {
    if (unit.empty() || unit == "b") return 1;
    const std::string powers = "kmgt";
    const size_t p = powers.find(unit[0]);
    if (p == std::string::npos) return 0;
    const std::string rest = unit.substr(1);
    uint64_t base = 0;
    if (rest.empty() || rest == "ib") base = 1024;
    if (rest == "b") base = 1000;
    uint64_t m = base == 0 ? 0 : 1;
    for (size_t i = 0; i <= p && base > 0; ++i) m *= base;
    return m;
}

}  // namespace

uint64_t parse_byte_size(const std::string& text) {
    const auto bad = [&](const std::string& why) {
        return std::invalid_argument("'" + text + "' is not a byte size (" + why +
                                     "; e.g. 21474836480, 20G, 20GiB, 512M, 1.5G)");
    };
    size_t i = 0;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
    const std::string number = text.substr(0, i);
    if (number.empty() || std::count(number.begin(), number.end(), '.') > 1 || number == ".")
        throw bad("a number must come first");
    const uint64_t unit = unit_bytes(lower(text.substr(i)));
    if (unit == 0) throw bad("unknown unit '" + text.substr(i) + "'");
    const long double value = std::stold(number) * static_cast<long double>(unit);
    if (value >= 18446744073709551615.0L) throw bad("too large");
    const auto bytes = static_cast<uint64_t>(std::floor(value));
    if (bytes == 0) throw bad("it must be at least one byte");
    return bytes;
}

}  // namespace loom::http
