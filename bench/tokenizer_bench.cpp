// Tokenizer throughput with the SmolLM2-135M vocabulary: 1 MB of English prose and 1 MB of C++
// source, with a warm word cache (the same text again) and a cold one (a fresh tokenizer each time).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace fs = std::filesystem;
using loom::tokenizer::Tokenizer;

namespace {

constexpr size_t kCorpusBytes = 1 << 20;

fs::path smollm2_path() {
    if (const char* v = std::getenv("LOOM_SMOLLM2"); v && *v) return v;
    return fs::path(LOOM_SOURCE_DIR) / "test-models/cache/SmolLM2-135M-Instruct.Q4_1.gguf";
}

// The regular files (not links, which would repeat them) of `dir` whose names pass `keep`, sorted.
std::vector<fs::path> files_in(const fs::path& dir, bool (*keep)(const fs::path&)) {
    std::vector<fs::path> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.is_regular_file() && !e.is_symlink() && keep(e.path())) out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
}

// The files concatenated (repeated if they are short) and cut to kCorpusBytes on a UTF-8 boundary.
std::string corpus_of(const std::vector<fs::path>& files) {
    std::string all;
    for (const auto& f : files) {
        std::ifstream in(f, std::ios::binary);
        std::ostringstream s;
        s << in.rdbuf();
        all += s.str();
    }
    if (all.empty()) return all;
    std::string out;
    while (out.size() < kCorpusBytes) out += all;
    out.resize(kCorpusBytes);
    out.resize(loom::tokenizer::complete_utf8_prefix(out));
    return out;
}

// English: the license texts every Debian system ships. Code: libstdc++'s headers.
const std::string& english() {
    static const std::string text =
        corpus_of(files_in("/usr/share/common-licenses", [](const fs::path&) { return true; }));
    return text;
}

const std::string& code() {
    static const std::string text = [] {
        std::vector<fs::path> dirs;
        std::error_code ec;
        for (const auto& e : fs::directory_iterator("/usr/include/c++", ec)) dirs.push_back(e.path());
        std::sort(dirs.begin(), dirs.end());
        if (dirs.empty()) return std::string();
        return corpus_of(files_in(dirs.back() / "bits", [](const fs::path& p) { return p.extension() == ".h"; }));
    }();
    return text;
}

std::optional<Tokenizer> load(benchmark::State& state) {
    const fs::path path = smollm2_path();
    if (!fs::exists(path)) {
        state.SkipWithError(
            ("skipped: " + path.string() + " is missing (run test-models/fetch smollm2-135m-instruct-q4_1)").c_str());
        return std::nullopt;
    }
    return Tokenizer::open(path);
}

void run(benchmark::State& state, const std::string& text, bool warm) {
    if (text.empty()) {
        state.SkipWithError("skipped: no corpus text on this system");
        return;
    }
    auto tok = load(state);
    if (!tok) return;
    std::vector<loom::tokenizer::TokenId> ids;
    tok->encode_into(text, ids);  // fills the word cache for the warm runs
    size_t tokens = ids.size();
    for (auto _ : state) {
        if (!warm) {
            state.PauseTiming();
            tok = Tokenizer::open(smollm2_path());
            state.ResumeTiming();
        }
        ids.clear();
        tok->encode_into(text, ids);
        benchmark::DoNotOptimize(ids.data());
        tokens = ids.size();
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
    state.counters["tokens"] = double(tokens);
    state.counters["bytes/token"] = double(text.size()) / double(std::max<size_t>(tokens, 1));
}

void BM_TokenizeEnglishWarm(benchmark::State& state) { run(state, english(), true); }
void BM_TokenizeEnglishCold(benchmark::State& state) { run(state, english(), false); }
void BM_TokenizeCodeWarm(benchmark::State& state) { run(state, code(), true); }
void BM_TokenizeCodeCold(benchmark::State& state) { run(state, code(), false); }

BENCHMARK(BM_TokenizeEnglishWarm)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_TokenizeEnglishCold)->Unit(benchmark::kMillisecond)->Iterations(8);
BENCHMARK(BM_TokenizeCodeWarm)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_TokenizeCodeCold)->Unit(benchmark::kMillisecond)->Iterations(8);

void BM_Detokenize(benchmark::State& state) {
    auto tok = load(state);
    if (!tok) return;
    const auto ids = tok->encode(english());
    for (auto _ : state) {
        loom::tokenizer::StreamingDetokenizer d(*tok);
        size_t bytes = 0;
        for (const auto id : ids) bytes += d.feed(id).size();
        benchmark::DoNotOptimize(bytes);
    }
    state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(ids.size()));
}
BENCHMARK(BM_Detokenize)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
