// Split rules per pre-tokenizer family, transcribed from the Split/Digits/Punctuation/ByteLevel
// pre-tokenizer sequences published in each model family's tokenizer.json. Non-ASCII characters
// are written as \x{...} so that no editor's Unicode normalization can change a class.
#include "tokenizer/pre_tokenizer_rules.h"

#include <utility>

namespace loom::tokenizer {

namespace {

using Kind = SplitStep::Kind;

// GPT-2's ByteLevel regex (also MPT, OLMo, GPT-NeoX, Phi-2, Jais, ...).
constexpr const char* kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// cl100k-style pattern of Llama 3, DBRX and GLM-4: numbers in groups of up to three digits.
constexpr const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Qwen2 and StableLM 2: as Llama 3 but every digit on its own.
constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The Digits pre-tokenizer with individual_digits.
constexpr const char* kEachDigit = R"(\p{N})";

// DeepSeek LLM's cased-letter class (Latin, Greek, Cyrillic, Armenian, Georgian, Cherokee, ...).
constexpr const char* kDeepSeekLetters =
    R"(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293})"
    R"(\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A})"
    R"(\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556})"
    R"(\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF})"
    R"(\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D})"
    R"(\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D})"
    R"(\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3})"
    R"(\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107})"
    R"(\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D})"
    R"(\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184})"
    R"(\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D})"
    R"(\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF})"
    R"(\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F})"
    R"(\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF})"
    R"(\x{1E900}-\x{1E943}]+)";
// ASCII and full-width punctuation, curly quotes, ideographic space and full stops.
constexpr const char* kDeepSeekPunctuation =
    R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)";
constexpr const char* kDeepSeekCjk = R"([\x{4E00}-\x{9FA5}\x{0800}-\x{4E00}\x{AC00}-\x{D7FF}]+)";

constexpr const char* kDeepSeekV3Cjk = R"([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)";
constexpr const char* kDeepSeekV3Main =
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Falcon's Punctuation step: Unicode punctuation plus the ASCII punctuation that Unicode files
// under symbols ($ + < = > ^ ` | ~), kept together when contiguous.
constexpr const char* kFalconPunctuation = R"([\p{P}$+<=>^`|~]+)";
constexpr const char* kThreeAsciiDigits = R"([0-9][0-9][0-9])";

// Mistral's Tekken: case-aware letter runs, single digits, no contractions.
constexpr const char* kTekken = R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|)"
                                R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|)"
                                R"(\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// BLOOM's split: everything but whitespace and sentence punctuation, with an optional leading space.
// Published as " ?[^(\s|[.,!?…。，、।۔،])]+" (a nested class); this is the same set, flattened.
constexpr const char* kBloom = R"( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{0964}\x{06D4}\x{060C})]+)";

SplitStep regex(const char* pattern) { return {Kind::Regex, pattern}; }

PreTokenizerRules family(std::string name, std::vector<SplitStep> steps, bool whole_piece_lookup = false) {
    return {std::move(name), std::move(steps), whole_piece_lookup, true};
}

PreTokenizerRules gpt2() { return family("gpt-2", {regex(kGpt2)}); }

// Each pre value with the family it belongs to.
constexpr std::pair<std::string_view, std::string_view> kPreValues[] = {
    {"default", "gpt-2"},
    {"gpt-2", "gpt-2"},
    {"gpt2", "gpt-2"},
    {"mpt", "gpt-2"},
    {"olmo", "gpt-2"},
    {"jais", "gpt-2"},
    {"phi-2", "gpt-2"},
    {"gpt-neox", "gpt-2"},
    {"trillion", "gpt-2"},
    {"starcoder", "digits+gpt-2"},
    {"refact", "digits+gpt-2"},
    {"command-r", "digits+gpt-2"},
    {"smollm", "digits+gpt-2"},
    {"codeshell", "digits+gpt-2"},
    {"exaone", "digits+gpt-2"},
    {"llama-bpe", "llama3"},
    {"llama3", "llama3"},
    {"llama-v3", "llama3"},
    {"smaug-bpe", "llama3"},
    {"dbrx", "cl100k"},
    {"chatglm-bpe", "cl100k"},
    {"qwen2", "qwen2"},
    {"stablelm2", "qwen2"},
    {"deepseek-r1-qwen", "qwen2"},
    {"megrez", "qwen2"},
    {"deepseek-llm", "deepseek-llm"},
    {"deepseek-coder", "deepseek-coder"},
    {"deepseek-v3", "deepseek-v3"},
    {"falcon", "falcon"},
    {"tekken", "tekken"},
    {"bloom", "bloom"},
    {"poro", "bloom"},
    {"gpt3-finnish", "bloom"},
    {"viking", "viking"},
};

PreTokenizerRules rules_of_family(std::string_view f) {
    if (f == "digits+gpt-2") return family("digits+gpt-2", {regex(kEachDigit), regex(kGpt2)});
    // Llama 3's tokenizer.json sets ignore_merges: a piece that is itself a token is taken whole.
    if (f == "llama3") return family("llama3", {regex(kLlama3)}, true);
    if (f == "cl100k") return family("cl100k", {regex(kLlama3)});
    if (f == "qwen2") return family("qwen2", {regex(kQwen2)});
    if (f == "deepseek-llm")
        return family("deepseek-llm", {regex(R"([\r\n])"), regex(kDeepSeekLetters), regex(kDeepSeekPunctuation),
                                       regex(R"(\s+$)"), regex(kDeepSeekCjk), regex(kEachDigit)});
    if (f == "deepseek-coder")
        return family("deepseek-coder", {regex(R"([\r\n])"), regex(R"(\s?\p{L}+)"), regex(R"(\s?\p{P}+)"),
                                         regex(kDeepSeekCjk), regex(kEachDigit)});
    if (f == "deepseek-v3")
        return family("deepseek-v3", {regex(R"(\p{N}{1,3})"), regex(kDeepSeekV3Cjk), regex(kDeepSeekV3Main)});
    // Punctuation, then the GPT-2 regex, then (on byte-level text) digit runs and 3-digit groups.
    if (f == "falcon")
        return family(
            "falcon",
            {regex(kFalconPunctuation), regex(kGpt2), {Kind::MappedNumericRun, {}}, regex(kThreeAsciiDigits)});
    if (f == "tekken") return family("tekken", {regex(kTekken)});
    if (f == "bloom") return family("bloom", {regex(kBloom)});
    if (f == "viking") return family("viking", {regex(kBloom), regex(kEachDigit)});
    return gpt2();
}

}  // namespace

PreTokenizerRules rules_for_pre(std::string_view pre) {
    for (const auto& [value, fam] : kPreValues)
        if (value == pre) return rules_of_family(fam);
    PreTokenizerRules rules = gpt2();
    rules.known = false;
    return rules;
}

std::vector<std::string_view> known_pre_values() {
    std::vector<std::string_view> out;
    for (const auto& entry : kPreValues) out.push_back(entry.first);
    return out;
}

}  // namespace loom::tokenizer
