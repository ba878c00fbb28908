// UTF-8 decoding edge cases and the streaming "complete prefix" rule.
#include "catch.hpp"
#include "tokenizer/utf8.h"

using namespace loom::tokenizer;

TEST_CASE("valid and invalid UTF-8", "[tokenizer][utf8]") {
    CHECK(is_valid_utf8(""));
    CHECK(is_valid_utf8("abc \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    CHECK_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong '/'
    CHECK_FALSE(is_valid_utf8("\xed\xa0\x80"));      // surrogate U+D800
    CHECK_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
    CHECK_FALSE(is_valid_utf8("\xe2\x82"));          // truncated
    CHECK_FALSE(is_valid_utf8("\x80"));              // lone continuation
    const auto d = decode_utf8("\xf0\x9f\x98\x80", 0);
    CHECK(d.valid);
    CHECK(d.cp == 0x1F600);
    CHECK(d.length == 4);
    CHECK(encode_utf8(0x1F600) == "\xf0\x9f\x98\x80");
    CHECK(encode_utf8(0xD800) == "\xef\xbf\xbd");
    CHECK(sanitize_utf8("a\xff"
                        "b\xe2\x82") ==
          "a\xef\xbf\xbd"
          "b\xef\xbf\xbd\xef\xbf\xbd");
}

TEST_CASE("complete_utf8_prefix holds back only an unfinished sequence", "[tokenizer][utf8]") {
    CHECK(complete_utf8_prefix("abc") == 3);
    CHECK(complete_utf8_prefix("ab\xe2") == 2);
    CHECK(complete_utf8_prefix("ab\xe2\x82") == 2);
    CHECK(complete_utf8_prefix("ab\xe2\x82\xac") == 5);
    CHECK(complete_utf8_prefix("\xf0\x9f\x98") == 0);
    CHECK(complete_utf8_prefix("a\xe0\x80") == 3);  // can never become valid: not held back
    CHECK(complete_utf8_prefix("a\xff") == 2);
}
