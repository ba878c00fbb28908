// Column widths and byte counts for the CLI's tables.
#include "cli/table.h"

#include <algorithm>
#include <cstdio>

namespace loom::cli {

std::string render_table(const std::vector<std::vector<std::string>>& rows) {
    std::vector<size_t> width;
    for (const auto& row : rows)
        for (size_t i = 0; i < row.size(); ++i) {
            if (width.size() <= i) width.push_back(0);
            width[i] = std::max(width[i], row[i].size());
        }
    std::string out;
    for (const auto& row : rows) {
        std::string line;
        for (size_t i = 0; i < row.size(); ++i) {
            line += row[i];
            if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 3, ' ');
        }
        out += line + "\n";
    }
    return out;
}

std::string human_bytes(int64_t bytes) {
    constexpr double kKiB = 1024, kMiB = kKiB * 1024, kGiB = kMiB * 1024;
    const double b = static_cast<double>(bytes);
    const auto fmt = [](double v, const char* unit) {
        char buf[32];
        std::snprintf(buf, sizeof buf, v < 10 ? "%.1f %s" : "%.0f %s", v, unit);
        return std::string(buf);
    };
    if (b >= kGiB) return fmt(b / kGiB, "GiB");
    if (b >= kMiB) return fmt(b / kMiB, "MiB");
    return fmt(b / kKiB, "KiB");
}

}  // namespace loom::cli
