// Model references and quantization lookup; names from a server are checked like the user's before
// any of them becomes a path on disk.
#include "models/model_ref.h"

#include <algorithm>
#include <cctype>
#include <regex>

namespace loom::models {
namespace {

bool plain_name(const std::string& s) {
    return !s.empty() && s != "." && s != ".." && std::all_of(s.begin(), s.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '-' || c == '_' || c == '.';
    });
}

std::string upper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::toupper(c)); });
    return s;
}

std::string base_name(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool is_gguf(const std::string& path) { return path.size() > 5 && path.ends_with(".gguf"); }

// The '-'/'.'-separated words of a file name without ".gguf".
std::vector<std::string> name_words(const std::string& file) {
    std::string stem = base_name(file);
    stem.resize(stem.size() - 5);
    std::vector<std::string> words;
    size_t start = 0;
    for (size_t i = 0; i <= stem.size(); ++i) {
        if (i == stem.size() || stem[i] == '-' || stem[i] == '.') {
            if (i > start) words.push_back(stem.substr(start, i - start));
            start = i + 1;
        }
    }
    return words;
}

std::string list_of(const std::vector<std::string>& files) {
    std::string s;
    for (const auto& f : files) s += (s.empty() ? "" : ", ") + f;
    return s.empty() ? "none" : s;
}

}  // namespace

bool safe_relative_path(const std::string& path) {
    if (path.empty() || path.front() == '/' || path.back() == '/') return false;
    size_t start = 0;
    while (start <= path.size()) {
        const auto slash = std::min(path.find('/', start), path.size());
        const std::string seg = path.substr(start, slash - start);
        if (seg.empty() || seg == "." || seg == "..") return false;
        if (std::any_of(seg.begin(), seg.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f || c == '\\'; }))
            return false;
        start = slash + 1;
    }
    return true;
}

ModelRef parse_model_ref(const std::string& text) {
    const std::string usage = " (expected ORG/REPO, ORG/REPO:QUANT or ORG/REPO/FILE.gguf)";
    ModelRef r;
    const auto slash1 = text.find('/');
    if (slash1 == std::string::npos) throw RefError("'" + text + "' is not a model reference" + usage);
    r.org = text.substr(0, slash1);
    const auto slash2 = text.find('/', slash1 + 1);
    std::string repo = text.substr(slash1 + 1, slash2 == std::string::npos ? std::string::npos : slash2 - slash1 - 1);
    if (slash2 != std::string::npos) {
        r.file = text.substr(slash2 + 1);
        if (!is_gguf(r.file) || !safe_relative_path(r.file))
            throw RefError("'" + text + "': the file must be a .gguf path inside the repository" + usage);
    } else if (const auto colon = repo.find(':'); colon != std::string::npos) {
        r.quant = repo.substr(colon + 1);
        repo.resize(colon);
        if (!plain_name(r.quant)) throw RefError("'" + text + "': bad quantization name '" + r.quant + "'" + usage);
    }
    r.repo = repo;
    if (!plain_name(r.org) || !plain_name(r.repo)) throw RefError("'" + text + "' is not a model reference" + usage);
    return r;
}

std::string quant_in_name(const std::string& file) {
    static const std::regex kQuant("(I?Q[0-9][A-Z0-9_]*|F16|F32|BF16|FP16)", std::regex::icase);
    if (!is_gguf(file)) return "";
    const auto words = name_words(file);
    for (auto it = words.rbegin(); it != words.rend(); ++it)
        if (std::regex_match(*it, kQuant)) return upper(*it);
    return "";
}

std::string pick_gguf(const std::vector<std::string>& files, const std::string& quant, const std::string& repo_id) {
    static const std::regex kSplit(".*-[0-9]{5}-of-[0-9]{5}\\.gguf");
    std::vector<std::string> ggufs, quants, matches;
    for (const auto& f : files) {
        if (!is_gguf(f) || base_name(f).starts_with("mmproj")) continue;
        ggufs.push_back(f);
        if (auto q = quant_in_name(f); !q.empty() && std::find(quants.begin(), quants.end(), q) == quants.end())
            quants.push_back(q);
        const std::string want = quant.empty() ? "Q4_K_M" : upper(quant);
        for (const auto& w : name_words(f))
            if (upper(w) == want) matches.push_back(f);
    }
    if (ggufs.empty()) throw RefError(repo_id + " has no .gguf file");
    if (quant.empty() && ggufs.size() == 1) matches = ggufs;
    if (matches.size() != 1) {
        const std::string what = quant.empty() ? "more than one GGUF; name one with :QUANT" : "quantization " + quant;
        const std::string problem =
            matches.empty() ? "no file of " + what : what + " names several files (" + list_of(matches) + ")";
        throw RefError(repo_id + ": " + problem + " (quantizations there: " + list_of(quants) +
                       "; or name a file: " + repo_id + "/FILE.gguf)");
    }
    if (std::regex_match(matches.front(), kSplit))
        throw RefError(repo_id + "/" + matches.front() + " is one part of a split GGUF; loom reads single-file GGUFs");
    return matches.front();
}

}  // namespace loom::models
