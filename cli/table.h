// Plain-text tables as `ollama ps` prints them: upper-case headers, columns padded with spaces.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loom::cli {

// rows[0] is the header; every row has the header's number of cells. Ends with a newline.
std::string render_table(const std::vector<std::vector<std::string>>& rows);

// 1171200 -> "1.1 MiB"; 41943040 -> "40 MiB"; 3.5 GiB -> "3.5 GiB"; under 1 MiB in KiB.
std::string human_bytes(int64_t bytes);

}  // namespace loom::cli
