// The download behind `loom pull`: redirects followed (the sha256 taken from the first answer that
// carries it, the token never sent past the Hub), Range resumption, the digest computed as bytes arrive.
#include "cli/download.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <vector>

#include "cli/progress.h"
#include "cli/sha256.h"

namespace loom::cli {
namespace fs = std::filesystem;
namespace {

// The server cannot serve the range asked for: the .partial is as long as the file, or longer.
struct RangeNotSatisfiable {};

struct Expected {
    std::string sha256;
    uint64_t size = 0;
};

// A sha256 from an ETag-style header value ("W/" and quotes dropped), or "" if it is not one.
std::string sha256_of(const std::string* value) {
    if (!value) return "";
    std::string v = *value;
    if (v.starts_with("W/")) v.erase(0, 2);
    v.erase(std::remove(v.begin(), v.end(), '"'), v.end());
    std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    const bool hex = v.size() == 64 && std::all_of(v.begin(), v.end(), [](char c) { return std::isxdigit(c); });
    return hex ? v : "";
}

uint64_t number_of(const std::string* value) {
    if (!value) return 0;
    try {
        return std::stoull(*value);
    } catch (const std::exception&) {
        return 0;
    }
}

void hash_file(const fs::path& path, Sha256& sha) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> buf(1 << 20);
    while (in.read(buf.data(), std::streamsize(buf.size())) || in.gcount() > 0)
        sha.update(std::span<const char>(buf.data(), size_t(in.gcount())));
    if (in.bad()) throw DownloadError("cannot read " + path.string() + ": " + std::strerror(errno));
}

std::string refusal(const HttpResponse& r, const Url& url, const std::string& what, const Hub& hub) {
    if (r.status == 401 || r.status == 403 || r.status == 404) return hub.refusal(r.status, what);
    return url.text() + " answered HTTP " + std::to_string(r.status) + ": " + r.body.substr(0, 200);
}

// One pass: follows redirects and appends to (or restarts) `partial`, feeding `sha` every byte the
// file holds. Returns what the Hub said the file is.
class Fetch {
public:
    Fetch(const Hub& hub, const fs::path& partial, std::string what, bool tty)
        : hub_(hub), partial_(partial), what_(std::move(what)), tty_(tty) {}

    Expected run(Url url, Sha256& sha);
    uint64_t resumed_from() const { return resumed_from_; }

private:
    void on_head(const HttpResponse& r, Sha256& sha);
    void on_body(std::span<const char> data, Sha256& sha);

    const Hub& hub_;
    fs::path partial_;
    std::string what_;
    bool tty_;
    uint64_t offset_ = 0, resumed_from_ = 0;
    Expected expected_;
    std::ofstream out_;
    std::optional<Progress> progress_;
};

void Fetch::on_head(const HttpResponse& r, Sha256& sha) {
    // The first answer that carries X-Linked-Etag sets the digest: normally the Hub's redirect to its
    // CDN, after any same-host redirect of a renamed repository.
    if (expected_.sha256.empty()) {
        expected_.sha256 = sha256_of(r.header("x-linked-etag"));
        expected_.size = number_of(r.header("x-linked-size"));
        if (expected_.sha256.empty() && r.status / 100 == 2) expected_.sha256 = sha256_of(r.header("etag"));
    }
    if (r.status / 100 != 2) return;
    if (expected_.sha256.empty())
        throw DownloadError(what_ +
                            ": the Hub reported no sha256 (no X-Linked-Etag header); loom keeps only verified files");
    const std::string* range = r.header("content-range");
    const bool resumes = offset_ > 0 && range && range->starts_with("bytes " + std::to_string(offset_) + "-");
    if (r.status == 206 && !resumes)
        throw DownloadError(what_ + ": the server sent a byte range other than the one asked for (" +
                            (range ? *range : std::string("no Content-Range")) + ")");
    if (r.status == 206) {
        hash_file(partial_, sha);
        resumed_from_ = offset_;
        out_.open(partial_, std::ios::binary | std::ios::app);
        std::fprintf(stderr, "%s: resuming at %s\n", what_.c_str(), human_bytes(offset_).c_str());
    } else {
        offset_ = 0;
        out_.open(partial_, std::ios::binary | std::ios::trunc);
    }
    if (!out_) throw DownloadError("cannot write " + partial_.string() + ": " + std::strerror(errno));
    const uint64_t total = expected_.size ? expected_.size : offset_ + number_of(r.header("content-length"));
    progress_.emplace(what_, offset_, total, tty_);
}

void Fetch::on_body(std::span<const char> data, Sha256& sha) {
    out_.write(data.data(), std::streamsize(data.size()));
    if (!out_) throw DownloadError("cannot write " + partial_.string() + ": " + std::strerror(errno));
    sha.update(data);
    progress_->advance(data.size());
}

Expected Fetch::run(Url url, Sha256& sha) {
    offset_ = fs::exists(partial_) ? fs::file_size(partial_) : 0;
    for (int hop = 0; hop < 10; ++hop) {
        HeaderList headers = hub_.auth_for(url);
        if (offset_ > 0) headers.emplace_back("Range", "bytes=" + std::to_string(offset_) + "-");
        HttpResponse r;
        try {
            r = http_get(
                url, headers, [&](std::span<const char> d) { on_body(d, sha); },
                [&](const HttpResponse& head) { on_head(head, sha); });
        } catch (const HttpError& e) {
            if (!out_.is_open()) throw;
            out_.close();
            throw DownloadError(std::string(e.what()) + "; " + human_bytes(fs::file_size(partial_)) + " kept in " +
                                partial_.string() + ": run the same `loom pull` again to resume");
        }
        if (r.status / 100 == 3 && r.header("location")) {
            url = resolve_location(url, *r.header("location"));
            continue;
        }
        if (r.status / 100 == 2) {
            out_.close();
            if (!out_) throw DownloadError("cannot write " + partial_.string() + ": " + std::strerror(errno));
            progress_->finish();
            return expected_;
        }
        if (r.status == 416 && offset_ > 0) throw RangeNotSatisfiable{};
        throw DownloadError(refusal(r, url, what_, hub_));
    }
    throw DownloadError(what_ + ": more than 10 redirects");
}

}  // namespace

DownloadResult download_verified(const Hub& hub, const ModelRef& ref, const std::string& file, const fs::path& dest,
                                 bool tty) {
    const fs::path partial = dest.string() + ".partial";
    fs::create_directories(dest.parent_path());
    const std::string what = ref.repo_id() + "/" + file;
    for (int attempt = 0;; ++attempt) {
        Sha256 sha;
        Fetch fetch(hub, partial, what, tty);
        Expected expected;
        try {
            expected = fetch.run(hub.resolve_url(ref, file), sha);
        } catch (const RangeNotSatisfiable&) {
            if (attempt > 0) throw DownloadError(what + ": the server refused every byte range");
            fs::remove(partial);  // longer than the file: it cannot be a prefix of it
            continue;
        }
        const std::string got = sha.hex_digest();
        if (got != expected.sha256) {
            fs::remove(partial);
            throw DownloadError(what + ": sha256 mismatch: expected " + expected.sha256 +
                                " (the Hub's X-Linked-Etag), got " + got + "; the download was deleted");
        }
        const uint64_t bytes = fs::file_size(partial);
        fs::rename(partial, dest);
        return {bytes, fetch.resumed_from(), got};
    }
}

}  // namespace loom::cli
