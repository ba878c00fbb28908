// Byte counts with units ("20G", "512MiB", "1.5G"), as --vram-budget takes them in both daemons.
#pragma once

#include <cstdint>
#include <string>

namespace loom::http {

// Bytes from "21474836480", "20G", "20GiB", "512M", "1.5G", "64k": K/M/G/T alone or with "iB"
// are powers of 1024; with "B" (KB, MB, GB, TB) powers of 1000; case is ignored. Fractions round
// down to whole bytes. std::invalid_argument naming the text for anything else, zero or overflow.
uint64_t parse_byte_size(const std::string& text);

}  // namespace loom::http
