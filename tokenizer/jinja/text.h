// Python str operations on UTF-8 text, by code point: whitespace, case mapping, strip, split, slicing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace loom::tokenizer::jinja::text {

// Python's str.isspace() for one code point.
bool is_space(char32_t cp);
// Case mapping for ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic (one code point to one).
char32_t to_upper(char32_t cp);
char32_t to_lower(char32_t cp);
bool is_cased(char32_t cp);

std::vector<char32_t> decode(std::string_view s);
std::string encode(const std::vector<char32_t>& cps);
size_t length(std::string_view s);  // in code points
// Byte offset of each code point, plus s.size() at the end.
std::vector<size_t> offsets(std::string_view s);

std::string upper(std::string_view s);
std::string lower(std::string_view s);
std::string capitalize(std::string_view s);  // str.capitalize()
std::string title(std::string_view s);       // str.title()

// str.strip/lstrip/rstrip: whitespace when `chars` is empty-optional, else any of `chars`.
std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
// str.split(sep, maxsplit) / str.rsplit; no separator splits on whitespace runs.
std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit,
                               bool from_right);
// str.splitlines() without keepends.
std::vector<std::string> splitlines(std::string_view s);
std::string replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count);

// Python's slice semantics: the positions [start:stop:step] selects among `length` items (code
// points of a string, items of a list). Throws OperationError when step is 0.
std::vector<int64_t> slice_indices(int64_t length, std::optional<int64_t> start, std::optional<int64_t> stop,
                                   std::optional<int64_t> step);

}  // namespace loom::tokenizer::jinja::text
