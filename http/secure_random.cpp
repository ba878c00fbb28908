// getrandom(2) with its retry on EINTR: the kernel's CSPRNG, so ids cannot be predicted from earlier ones.
#include "http/secure_random.h"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <sys/random.h>
#include <vector>

namespace loom::http {

namespace {

void fill(void* out, size_t n) {
    auto* p = static_cast<unsigned char*>(out);
    while (n > 0) {
        const ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            throw std::runtime_error(std::string("getrandom failed: ") + std::strerror(errno));
        }
        p += got;
        n -= static_cast<size_t>(got);
    }
}

}  // namespace

uint64_t random_u64() {
    uint64_t x = 0;
    fill(&x, sizeof x);
    return x;
}

std::string random_hex(size_t bytes) {
    std::vector<unsigned char> raw(bytes);
    fill(raw.data(), raw.size());
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    out.reserve(2 * bytes);
    for (unsigned char b : raw) {
        out += kDigits[b >> 4];
        out += kDigits[b & 15];
    }
    return out;
}

}  // namespace loom::http
