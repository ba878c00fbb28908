// PCRE2-driven pre-tokenization: each step re-splits the pieces of the step before it, matching
// only inside a piece (its end is the subject's end, so look-aheads stop at the piece boundary).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pre_tokenizer.h"

#include <pcre2.h>

#include <string>
#include <utility>

#include "tokenizer/errors.h"
#include "tokenizer/utf8.h"

namespace loom::tokenizer {

namespace {

constexpr size_t kJitStackStart = 32 * 1024;
constexpr size_t kJitStackMax = 4 * 1024 * 1024;

std::string pcre2_message(int code) {
    PCRE2_UCHAR buffer[256];
    const int n = pcre2_get_error_message(code, buffer, sizeof buffer);
    return n < 0 ? "PCRE2 error " + std::to_string(code) : std::string(reinterpret_cast<char*>(buffer), size_t(n));
}

// Bytes whose byte-level alphabet character is numeric: ASCII digits and the stand-ins ² ³ ¹ ¼ ½ ¾.
bool maps_to_numeric(unsigned char b) {
    return (b >= '0' && b <= '9') || b == 0xB2 || b == 0xB3 || b == 0xB9 || (b >= 0xBC && b <= 0xBE);
}

void push_piece(std::vector<Piece>& out, size_t begin, size_t end) {
    if (end > begin) out.push_back({begin, end});
}

}  // namespace

struct PreTokenizer::Step {
    SplitStep::Kind kind = SplitStep::Kind::Regex;
    std::string pattern;
    pcre2_code* code = nullptr;
    bool jit = false;

    explicit Step(const SplitStep& step) : kind(step.kind), pattern(step.pattern) {
        if (kind != SplitStep::Kind::Regex) return;
        int error = 0;
        PCRE2_SIZE error_offset = 0;
        code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                             PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &error_offset, nullptr);
        if (!code)
            throw Error("pre-tokenizer pattern /" + pattern + "/ does not compile at offset " +
                        std::to_string(error_offset) + ": " + pcre2_message(error));
        jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;  // the interpreter still works without JIT
    }
    Step(Step&& other) noexcept
        : kind(other.kind),
          pattern(std::move(other.pattern)),
          code(std::exchange(other.code, nullptr)),
          jit(other.jit) {}
    Step& operator=(Step&& other) noexcept {
        std::swap(kind, other.kind);
        std::swap(pattern, other.pattern);
        std::swap(code, other.code);
        std::swap(jit, other.jit);
        return *this;
    }
    ~Step() { pcre2_code_free(code); }
};

struct PreTokenizer::Scratch::State {
    pcre2_match_data* match = pcre2_match_data_create(1, nullptr);
    pcre2_match_context* context = pcre2_match_context_create(nullptr);
    pcre2_jit_stack* jit_stack = pcre2_jit_stack_create(kJitStackStart, kJitStackMax, nullptr);
    std::vector<Piece> spare;

    State() {
        if (!match || !context) throw std::bad_alloc();
        if (jit_stack) pcre2_jit_stack_assign(context, nullptr, jit_stack);
    }
    State(const State&) = delete;
    State& operator=(const State&) = delete;
    ~State() {
        pcre2_jit_stack_free(jit_stack);
        pcre2_match_context_free(context);
        pcre2_match_data_free(match);
    }
};

PreTokenizer::Scratch::Scratch() : state_(std::make_unique<State>()) {}
PreTokenizer::Scratch::Scratch(Scratch&&) noexcept = default;
PreTokenizer::Scratch& PreTokenizer::Scratch::operator=(Scratch&&) noexcept = default;
PreTokenizer::Scratch::~Scratch() = default;

PreTokenizer::PreTokenizer(const PreTokenizerRules& rules) {
    steps_.reserve(rules.steps.size());
    for (const auto& step : rules.steps) steps_.emplace_back(step);
}
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;
PreTokenizer::~PreTokenizer() = default;

namespace {

// Splits text[piece] by one regex step, appending matches and the gaps between them to `out`.
void split_by_regex(const pcre2_code* code, bool jit, const std::string& pattern, std::string_view text, Piece piece,
                    pcre2_match_data* match, pcre2_match_context* context, std::vector<Piece>& out) {
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + piece.begin);
    const size_t length = piece.end - piece.begin;
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
    size_t gap_start = 0;
    size_t offset = 0;
    while (offset < length) {
        const int rc = jit ? pcre2_jit_match(code, subject, length, offset, 0, match, context)
                           : pcre2_match(code, subject, length, offset, 0, match, context);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) throw Error("pre-tokenizer pattern /" + pattern + "/ failed: " + pcre2_message(rc));
        const size_t begin = ovector[0];
        const size_t end = ovector[1];
        if (end == begin) {  // an empty match splits nothing: step over one character
            offset = begin + decode_utf8(std::string_view(text.data() + piece.begin, length), begin).length;
            continue;
        }
        push_piece(out, piece.begin + gap_start, piece.begin + begin);
        push_piece(out, piece.begin + begin, piece.begin + end);
        gap_start = offset = end;
    }
    push_piece(out, piece.begin + gap_start, piece.end);
}

void split_by_mapped_numeric_runs(std::string_view text, Piece piece, std::vector<Piece>& out) {
    size_t run_start = piece.begin;
    for (size_t i = piece.begin; i < piece.end; ++i) {
        const bool numeric = maps_to_numeric(static_cast<unsigned char>(text[i]));
        const bool was_numeric = i > piece.begin && maps_to_numeric(static_cast<unsigned char>(text[i - 1]));
        if (i > piece.begin && numeric != was_numeric) {
            push_piece(out, run_start, i);
            run_start = i;
        }
    }
    push_piece(out, run_start, piece.end);
}

}  // namespace

void PreTokenizer::split(std::string_view text, std::vector<Piece>& pieces, Scratch& scratch) const {
    Scratch::State& st = *scratch.state_;
    pieces.clear();
    push_piece(pieces, 0, text.size());
    for (const Step& step : steps_) {
        st.spare.clear();
        for (const Piece& piece : pieces) {
            if (step.kind == SplitStep::Kind::Regex)
                split_by_regex(step.code, step.jit, step.pattern, text, piece, st.match, st.context, st.spare);
            else
                split_by_mapped_numeric_runs(text, piece, st.spare);
        }
        pieces.swap(st.spare);
    }
}

}  // namespace loom::tokenizer
