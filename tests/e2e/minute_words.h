// English words for a clock minute ("seven", "thirty", "fifty-two") and the search for one in free
// text, where the writer may have used a hyphen, a space or any capitalisation.
#pragma once

#include <string>
#include <string_view>

namespace loom::test {

// minute in 0..59 -> "zero" .. "fifty-nine" (compounds with a hyphen, as style guides write them).
std::string minute_word(int minute);

// Whether `word` occurs in `text` as whole words: case-insensitive, a hyphen or any run of spaces
// between its parts, no letter directly before or after ("seven" is not found in "seventeen").
bool contains_words(std::string_view text, std::string_view word);

}  // namespace loom::test
