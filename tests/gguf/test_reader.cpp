// Reader and writer on files built in the test: every value type, nested arrays, alignment,
// typed accessors and their errors, and exact write -> read round trips.
#include <fstream>
#include <iterator>
#include <random>

#include "catch.hpp"
#include "gguf/errors.h"
#include "gguf/reader.h"
#include "gguf/writer.h"
#include "support/test_data.h"

using namespace loom::gguf;

namespace {

Array nested_u16_pairs() {
    Array outer;
    outer.elem_type = ValueType::ARRAY;
    for (uint16_t i = 0; i < 3; ++i) {
        Array inner;
        inner.elem_type = ValueType::UINT16;
        const uint16_t pair[2] = {i, static_cast<uint16_t>(1000 + i)};
        inner.packed.assign(reinterpret_cast<const uint8_t*>(pair), reinterpret_cast<const uint8_t*>(pair) + 4);
        outer.arrays.push_back(Value::array(inner));
    }
    return outer;
}

std::vector<char> read_all(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<uint8_t> b(n);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    return b;
}

// Every value type, a nested array, and tensors of several types and ranks.
Writer sample_writer(uint32_t seed, uint32_t alignment) {
    Writer w;
    w.set("general.architecture", Value::string("llama"));
    w.set("general.alignment", Value::u32(alignment));
    w.set("t.u8", Value::u8(250));
    w.set("t.i8", Value::i8(-7));
    w.set("t.u16", Value::u16(65000));
    w.set("t.i16", Value::i16(-30000));
    w.set("t.u32", Value::u32(4000000000u));
    w.set("t.i32", Value::i32(-2000000000));
    w.set("t.f32", Value::f32(0.1f));
    w.set("t.bool", Value::boolean(true));
    w.set("t.string", Value::string("h\xc3\xa9llo\n"));
    w.set("t.u64", Value::u64(18000000000000000000ull));
    w.set("t.i64", Value::i64(-9000000000000000000ll));
    w.set("t.f64", Value::f64(-1.0 / 3.0));
    w.set("t.strings", Value::string_array({"a", "", "\xe2\x96\x81the"}));
    w.set("t.floats", Value::f32_array({1.5f, -2.25f}));
    w.set("t.ints", Value::i32_array({3, -4, 5}));
    w.set("t.nested", Value::array(nested_u16_pairs()));
    w.set("t.empty", Value::string_array({}));
    w.add_tensor("f32.matrix", TensorType::F32, {7, 3}, random_bytes(7 * 3 * 4, seed));
    w.add_tensor("q8.matrix", TensorType::Q8_0, {64, 2}, random_bytes(2 * 2 * 34, seed + 1));
    w.add_tensor("q4k.cube", TensorType::Q4_K, {256, 2, 2}, random_bytes(4 * 144, seed + 2));
    w.add_tensor("f16.vector", TensorType::F16, {5}, random_bytes(10, seed + 3));
    return w;
}

}  // namespace

TEST_CASE("every value type and nested arrays survive write -> read", "[gguf][reader]") {
    const auto dir = loom::test::temp_dir();
    const auto path = dir / "sample.gguf";
    const Writer w = sample_writer(1, 32);
    w.write(path);
    const auto f = File::open(path);

    CHECK(f.version() == 3);
    CHECK(f.alignment() == 32);
    CHECK(f.file_size() == w.file_size());
    CHECK(f.data_offset() % 32 == 0);
    CHECK(f.find("t.u8")->as_uint() == 250);
    CHECK(f.find("t.i8")->as_int() == -7);
    CHECK(f.find("t.u16")->as_uint() == 65000);
    CHECK(f.find("t.i16")->as_int() == -30000);
    CHECK(f.get_uint("t.u32") == 4000000000u);
    CHECK(f.find("t.i32")->as_int() == -2000000000);
    CHECK(static_cast<float>(f.get_float("t.f32")) == 0.1f);
    CHECK(f.find_bool("t.bool") == true);
    CHECK(f.get_string("t.string") == "h\xc3\xa9llo\n");
    CHECK(f.get_uint("t.u64") == 18000000000000000000ull);
    CHECK(f.find("t.i64")->as_int() == -9000000000000000000ll);
    CHECK(f.get_float("t.f64") == -1.0 / 3.0);
    CHECK(f.find("t.strings")->as_string_array() == std::vector<std::string>{"a", "", "\xe2\x96\x81the"});
    CHECK(f.find("t.floats")->as_f32_array() == std::vector<float>{1.5f, -2.25f});
    CHECK(f.find("t.ints")->as_i32_array() == std::vector<int32_t>{3, -4, 5});
    const auto& nested = f.find("t.nested")->as_array();
    REQUIRE(nested.arrays.size() == 3);
    CHECK(nested.arrays[2].as_array().size() == 2);
    CHECK(f.find("t.nested")->type_description() == "array[array[uint16]]");
    CHECK(f.find("t.empty")->as_array().size() == 0);

    // Metadata comes back in file order and equal, value by value.
    REQUIRE(f.metadata().size() == 19);
    CHECK(f.metadata()[0].first == "general.architecture");
    const Writer again = Writer::copy_of(f);
    CHECK(again.header_bytes() == w.header_bytes());

    REQUIRE(f.tensors().size() == 4);
    const TensorInfo* q4k = f.find_tensor("q4k.cube");
    REQUIRE(q4k);
    CHECK(q4k->type == TensorType::Q4_K);
    CHECK(q4k->ne == std::vector<uint64_t>{256, 2, 2});
    CHECK(q4k->n_elems == 1024);
    CHECK(q4k->n_rows() == 4);
    CHECK(q4k->n_bytes == 4 * 144);
    const auto data = f.tensor_data(*q4k);
    const auto expect = random_bytes(4 * 144, 3);
    CHECK(std::vector<uint8_t>(data.begin(), data.end()) == expect);
    for (const auto& t : f.tensors()) CHECK((f.data_offset() + t.offset) % 32 == 0);
}

TEST_CASE("rewriting a read file reproduces it byte for byte, at any alignment", "[gguf][writer]") {
    const auto dir = loom::test::temp_dir();
    for (uint32_t alignment : {1u, 8u, 32u, 64u, 4096u}) {
        const std::string suffix = std::to_string(alignment) + ".gguf";
        const auto a = dir / ("a" + suffix);
        const auto b = dir / ("b" + suffix);
        sample_writer(alignment, alignment).write(a);
        const auto fa = File::open(a);
        CHECK(fa.alignment() == alignment);
        Writer::copy_of(fa).write(b);
        const auto fb = File::open(b);
        CHECK(read_all(a) == read_all(b));
        CHECK(fa.metadata() == fb.metadata());
    }
}

TEST_CASE("typed accessors name the key and the type found", "[gguf][reader]") {
    Writer w;
    w.set("llama.block_count", Value::string("five"));
    w.set("neg", Value::i32(-1));
    const auto bytes = w.header_bytes();
    const auto f = File::parse(bytes);
    CHECK_THROWS_WITH(f.get_uint("llama.block_count"),
                      "metadata key 'llama.block_count': expected a non-negative integer, found string");
    CHECK_THROWS_WITH(f.get_uint("neg"), "metadata key 'neg': expected a non-negative integer, found int32");
    CHECK_THROWS_WITH(f.get_string("missing.key"), "missing metadata key 'missing.key'");
    CHECK_THROWS_AS(f.find("neg")->as_f32_array("neg"), KeyError);
    CHECK(f.find_uint("missing.key") == std::nullopt);
}

TEST_CASE("the writer refuses shapes it cannot describe", "[gguf][writer]") {
    Writer w;
    CHECK_THROWS_AS(w.add_tensor("x", TensorType::Q4_0, {33}, std::vector<uint8_t>(18)), std::invalid_argument);
    CHECK_THROWS_AS(w.add_tensor("x", TensorType::F32, {}, std::vector<uint8_t>()), std::invalid_argument);
    CHECK_THROWS_AS(w.add_tensor("x", TensorType::F32, {1, 1, 1, 1, 1}, std::vector<uint8_t>(4)),
                    std::invalid_argument);
    w.add_tensor("x", TensorType::F32, {1}, std::vector<uint8_t>(4));
    CHECK_THROWS_AS(w.add_tensor("x", TensorType::F32, {1}, std::vector<uint8_t>(4)), std::invalid_argument);
    CHECK_THROWS_AS(w.set("general.alignment", Value::u32(64)), std::invalid_argument);  // after a tensor
    Writer w2;
    CHECK_THROWS_AS(w2.set("general.alignment", Value::u32(48)), std::invalid_argument);
}
