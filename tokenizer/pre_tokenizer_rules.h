// The pre-tokenization rules of each tokenizer.ggml.pre family: the split steps its published
// tokenizer.json runs, in order, before byte-level BPE.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace loom::tokenizer {

struct SplitStep {
    enum class Kind {
        // Matches of a PCRE2 pattern (UTF, UCP) become pieces; so does the text between them.
        Regex,
        // Runs of bytes whose byte-level alphabet character is numeric become pieces: a digit split
        // that a family runs after byte-level mapping (so '¼', the stand-in of byte 0xBC, counts).
        MappedNumericRun,
    };
    Kind kind = Kind::Regex;
    std::string pattern;
};

struct PreTokenizerRules {
    std::string family;  // the family whose rules these are, e.g. "llama3"
    std::vector<SplitStep> steps;
    bool whole_piece_lookup = false;  // a piece that is a token is taken whole before merging
    bool known = true;                // false: the pre value was not recognised (GPT-2 rules used)
};

// The rules for a tokenizer.ggml.pre value. An unknown value gets the GPT-2 rules with known = false.
PreTokenizerRules rules_for_pre(std::string_view pre);

// Every pre value rules_for_pre recognises.
std::vector<std::string_view> known_pre_values();

}  // namespace loom::tokenizer
