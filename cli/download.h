// One verified download from the Hub into the cache: <dest>.partial grows (resumed with a Range
// request), its sha256 is checked against the Hub's X-Linked-Etag, and only then renamed to <dest>.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "cli/hub.h"

namespace loom::cli {

// The file could not be fetched or verified; what() says why and what is left on disk.
class DownloadError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct DownloadResult {
    uint64_t bytes = 0;
    uint64_t resumed_from = 0;  // bytes of an earlier .partial that were kept
    std::string sha256;
};

// `tty`: a progress bar on stderr rather than plain lines.
DownloadResult download_verified(const Hub& hub, const ModelRef& ref, const std::string& file,
                                 const std::filesystem::path& dest, bool tty);

}  // namespace loom::cli
