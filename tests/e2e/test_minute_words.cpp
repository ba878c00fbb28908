// Minute words and the whole-word search the haiku test grades with.
#include "catch.hpp"
#include "e2e/minute_words.h"

using loom::test::contains_words;
using loom::test::minute_word;

TEST_CASE("every minute has its English words", "[e2e]") {
    CHECK(minute_word(0) == "zero");
    CHECK(minute_word(7) == "seven");
    CHECK(minute_word(13) == "thirteen");
    CHECK(minute_word(20) == "twenty");
    CHECK(minute_word(30) == "thirty");
    CHECK(minute_word(41) == "forty-one");
    CHECK(minute_word(52) == "fifty-two");
    CHECK(minute_word(59) == "fifty-nine");
    CHECK_THROWS(minute_word(60));
    CHECK_THROWS(minute_word(-1));
}

TEST_CASE("the word is found with any case, a hyphen or spaces, and only as whole words", "[e2e]") {
    CHECK(contains_words("Fifty-two cores hum", "fifty-two"));
    CHECK(contains_words("at fifty two threads", "fifty-two"));
    CHECK(contains_words("FIFTY\n  TWO", "fifty-two"));
    CHECK(contains_words("Seven, warps", "seven"));
    CHECK(contains_words("(seven)", "seven"));
    CHECK_FALSE(contains_words("seventeen warps", "seven"));
    CHECK(contains_words("forty-one", "one"));  // a hyphen is a gap: the parts of a compound are words
}
