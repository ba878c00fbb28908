// Minute words and the whole-word search for them.
#include "e2e/minute_words.h"

#include <array>
#include <cctype>
#include <stdexcept>

namespace loom::test {

std::string minute_word(int minute) {
    static const std::array<const char*, 20> kOnes = {
        "zero", "one",    "two",    "three",    "four",     "five",    "six",     "seven",     "eight",    "nine",
        "ten",  "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"};
    static const std::array<const char*, 6> kTens = {"", "", "twenty", "thirty", "forty", "fifty"};
    if (minute < 0 || minute > 59) throw std::out_of_range("minute " + std::to_string(minute) + " is not in 0..59");
    if (minute < 20) return kOnes[static_cast<size_t>(minute)];
    std::string word = kTens[static_cast<size_t>(minute / 10)];
    if (minute % 10 != 0) word += std::string("-") + kOnes[static_cast<size_t>(minute % 10)];
    return word;
}

namespace {
// Lower case, hyphens as spaces, runs of whitespace as one space.
std::string fold(std::string_view s) {
    std::string out;
    for (const char ch : s) {
        const unsigned char c = static_cast<unsigned char>(ch);
        const bool gap = c == '-' || std::isspace(c);
        if (gap) {
            if (!out.empty() && out.back() != ' ') out += ' ';
        } else {
            out += static_cast<char>(std::tolower(c));
        }
    }
    return out;
}
bool is_letter(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }
}  // namespace

bool contains_words(std::string_view text, std::string_view word) {
    const std::string t = fold(text), w = fold(word);
    if (w.empty()) return false;
    for (size_t at = t.find(w); at != std::string::npos; at = t.find(w, at + 1)) {
        const bool starts = at == 0 || !is_letter(t[at - 1]);
        const bool ends = at + w.size() == t.size() || !is_letter(t[at + w.size()]);
        if (starts && ends) return true;
    }
    return false;
}

}  // namespace loom::test
