// Unguessable random values from the kernel (getrandom): request ids and the seeds of unseeded requests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace loom::http {

uint64_t random_u64();

// `bytes` random bytes as lower-case hex (2 * bytes characters).
std::string random_hex(size_t bytes);

}  // namespace loom::http
