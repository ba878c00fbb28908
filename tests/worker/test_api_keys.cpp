// ApiKeys, same_secret and RequestRegistry on their own: Bearer parsing, exact key matches, ids
// that are random, and cancellation rights that follow the key.
#include <regex>
#include <set>
#include <string>

#include "catch.hpp"
#include "http/api_keys.h"
#include "worker/request_registry.h"

using loom::http::ApiKeys;
using loom::worker::RequestRegistry;
using loom::http::same_secret;

TEST_CASE("same_secret is plain equality over any lengths", "[worker][keys]") {
    CHECK(same_secret("", ""));
    CHECK(same_secret("abc", "abc"));
    CHECK_FALSE(same_secret("abc", "abd"));
    CHECK_FALSE(same_secret("abc", "ab"));
    CHECK_FALSE(same_secret("ab", "abc"));
    CHECK_FALSE(same_secret("", "a"));
    CHECK_FALSE(same_secret(std::string("a\0b", 3), std::string("a\0c", 3)));
    CHECK(same_secret(std::string("a\0b", 3), std::string("a\0b", 3)));
    CHECK_FALSE(same_secret("abc", std::string("abc\0", 4)));  // a zero byte past the end is still a difference
}

TEST_CASE("ApiKeys matches 'Bearer KEY' with the scheme in any case", "[worker][keys]") {
    const ApiKeys keys({"k1", "second-key"});
    CHECK(keys.required());
    CHECK(keys.match("Bearer k1") == "k1");
    CHECK(keys.match("bearer second-key") == "second-key");
    CHECK(keys.match("BEARER  k1") == "k1");
    CHECK_FALSE(keys.match("Bearer K1"));
    CHECK_FALSE(keys.match("Bearer k"));
    CHECK_FALSE(keys.match("Bearer "));
    CHECK_FALSE(keys.match("Bearerk1"));
    CHECK_FALSE(keys.match("Basic k1"));
    CHECK_FALSE(keys.match("k1"));
    CHECK_FALSE(keys.match(""));
    CHECK_FALSE(ApiKeys({}).required());
}

TEST_CASE("RequestRegistry: random ids; a request is found only by its owner, only while live", "[worker][keys]") {
    RequestRegistry reg;
    std::set<std::string> ids;
    for (int i = 0; i < 100; ++i) ids.insert(RequestRegistry::new_id("cmpl-"));
    CHECK(ids.size() == 100);
    for (const auto& id : ids) CHECK(std::regex_match(id, std::regex("cmpl-[0-9a-f]{24}")));

    const std::string id = RequestRegistry::new_id("chatcmpl-");
    reg.add(id, 42, "alice");
    CHECK(reg.find(id, "alice") == 42u);
    CHECK_FALSE(reg.find(id, "bob"));
    CHECK_FALSE(reg.find(id, ""));
    CHECK_FALSE(reg.find("chatcmpl-unknown", "alice"));
    reg.remove(id);
    CHECK_FALSE(reg.find(id, "alice"));

    reg.add(id, 7, "");  // a worker without keys: everyone is the same owner
    CHECK(reg.find(id, "") == 7u);
}
