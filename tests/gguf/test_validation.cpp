// Every validation rule broken one at a time, truncation at every byte, and random corruption:
// each must be a FormatError naming the field and byte offset, never a crash.
#include <random>
#include <string>

#include "catch.hpp"
#include "gguf/errors.h"
#include "gguf/reader.h"
#include "gguf/writer.h"
#include "raw_gguf.h"

using namespace loom::gguf;
using loom::test::RawGguf;

namespace {

// Parses and returns the FormatError (fails the test if the bytes parse or throw something else).
FormatError parse_error(const std::vector<uint8_t>& bytes) {
    try {
        (void)File::parse(bytes);
    } catch (const FormatError& e) {
        return e;
    }
    FAIL("expected a FormatError, the file parsed");
    throw std::logic_error("unreachable");
}

void expect_error(const RawGguf& f, const std::string& field_part, const std::string& what_part, int64_t offset = -1) {
    const FormatError e = parse_error(f.bytes);
    INFO(e.what());
    CHECK(e.field().find(field_part) != std::string::npos);
    CHECK(std::string(e.what()).find(what_part) != std::string::npos);
    CHECK(std::string(e.what()).find("at byte") != std::string::npos);
    if (offset >= 0) CHECK(e.offset() == static_cast<uint64_t>(offset));
}

// One F32 tensor "w" of 8 elements at offset 0, with optional extra kv pairs before it.
RawGguf one_tensor_file() {
    RawGguf f;
    f.header(1, 1).kv_str("general.architecture", "llama").tensor("w", {8}, 0, 0).pad().data(32);
    return f;
}

}  // namespace

TEST_CASE("well-formed hand-built v3 and v2 files parse", "[gguf][validation]") {
    const auto f = File::parse(one_tensor_file().bytes);
    CHECK(f.version() == 3);
    CHECK(f.tensors().size() == 1);
    CHECK(f.tensors()[0].n_bytes == 32);
    RawGguf v2;
    v2.header(1, 1, 2).kv_u32("general.alignment", 64).tensor("w", {4, 2}, 1, 0).pad(64).data(16);
    const auto f2 = File::parse(v2.bytes);
    CHECK(f2.version() == 2);
    CHECK(f2.data_offset() % 64 == 0);
    CHECK(f2.tensors()[0].type == TensorType::F16);
    CHECK(f2.tensors()[0].n_bytes == 16);
}

TEST_CASE("header errors: magic, version, counts", "[gguf][validation]") {
    RawGguf bad_magic;
    bad_magic.put<uint32_t>(0x46554746).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(0);
    expect_error(bad_magic, "magic", "not a GGUF file", 0);

    for (uint32_t v : {0u, 1u, 4u, 99u}) {
        RawGguf f;
        f.header(0, 0, v);
        expect_error(f, "version", "unsupported GGUF version " + std::to_string(v), 4);
    }
    RawGguf big_endian;
    big_endian.header(0, 0, 0x03000000u);
    expect_error(big_endian, "version", "big-endian", 4);

    RawGguf too_many_kv;
    too_many_kv.header(0, 1000);
    too_many_kv.kv_u32("a", 1);
    expect_error(too_many_kv, "kv_count", "cannot hold 1000", 16);

    RawGguf too_many_tensors;
    too_many_tensors.header(uint64_t{1} << 60, 0);
    expect_error(too_many_tensors, "tensor_count", "cannot hold", 8);

    RawGguf truncated_header;
    truncated_header.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint32_t>(0);
    expect_error(truncated_header, "tensor_count", "truncated", 8);
}

TEST_CASE("metadata errors: strings, arrays, types, duplicates", "[gguf][validation]") {
    RawGguf long_key;
    long_key.header(0, 1).put<uint64_t>(1000).put<uint32_t>(0).put<uint32_t>(0);
    expect_error(long_key, "kv[0].key", "string of 1000 bytes runs past the end", 24);

    RawGguf long_string;
    long_string.header(0, 1).str("k").put<uint32_t>(8).put<uint64_t>(uint64_t{1} << 62);
    expect_error(long_string, "kv[0] 'k' value", "runs past the end");

    RawGguf long_array;
    long_array.header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(6).put<uint64_t>(uint64_t{1} << 61);
    expect_error(long_array, "kv[0] 'k' value", "array of 2305843009213693952 float32 elements runs past");

    RawGguf truncated_string_array;
    truncated_string_array.header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(2).str("ok");
    truncated_string_array.put<uint64_t>(50).put<uint32_t>(0);
    expect_error(truncated_string_array, "kv[0] 'k' value[1]", "runs past the end");

    RawGguf unknown_type;
    unknown_type.header(0, 1).str("k").put<uint32_t>(13).put<uint32_t>(0);
    expect_error(unknown_type, "kv[0] 'k' value", "unknown value type 13", 33);

    RawGguf unknown_elem;
    unknown_elem.header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(77).put<uint64_t>(0);
    expect_error(unknown_elem, "kv[0] 'k' value", "unknown array element type 77");

    RawGguf duplicate;
    duplicate.header(0, 2).kv_u32("dup", 1).kv_u32("dup", 2);
    expect_error(duplicate, "kv[1] 'dup' key", "duplicate key", 24 + 19);

    RawGguf bad_bool;
    bad_bool.header(0, 1).str("b").put<uint32_t>(7).put<uint8_t>(2);
    expect_error(bad_bool, "kv[0] 'b' value", "neither 0 nor 1");

    RawGguf deep;
    deep.header(0, 1).str("deep").put<uint32_t>(9);
    for (int i = 0; i < 40; ++i) deep.put<uint32_t>(9).put<uint64_t>(1);
    expect_error(deep, "kv[0] 'deep' value", "nested deeper than 16");
}

TEST_CASE("alignment errors", "[gguf][validation]") {
    for (uint32_t a : {0u, 3u, 48u, 0x80000000u}) {
        RawGguf f;
        f.header(0, 1).kv_u32("general.alignment", a);
        expect_error(f, "general.alignment", "not a power of two", 24);
    }
    RawGguf as_string;
    as_string.header(0, 1).kv_str("general.alignment", "32");
    expect_error(as_string, "general.alignment", "expected an unsigned integer, found string", 24);

    RawGguf aligned64;
    aligned64.header(1, 1).kv_u32("general.alignment", 64).tensor("w", {8}, 0, 0).pad(64).data(32);
    CHECK(File::parse(aligned64.bytes).data_offset() % 64 == 0);
}

TEST_CASE("tensor info errors", "[gguf][validation]") {
    const size_t infos = 24 + 8 + 20 + 4 + 8 + 5;  // header + kv "general.architecture" = "llama"
    auto with_tensor = [](const std::string& name, const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset,
                          size_t data) {
        RawGguf f;
        f.header(1, 1).kv_str("general.architecture", "llama").tensor(name, ne, type, offset).pad().data(data);
        return f;
    };
    expect_error(with_tensor("w", {1, 1, 1, 1, 1}, 0, 0, 32), "tensor_infos[0] 'w' n_dims", "5 dimensions", infos + 9);
    expect_error(with_tensor("w", {4, 0}, 0, 0, 32), "'w' ne[1]", "dimension 0 is not positive");
    expect_error(with_tensor("w", {uint64_t(-5)}, 0, 0, 32), "'w' ne[0]", "dimension -5 is not positive");
    expect_error(with_tensor("w", {uint64_t{1} << 32, uint64_t{1} << 32}, 0, 0, 32), "'w' ne[1]", "overflows int64");
    expect_error(with_tensor("w", {8}, 99, 0, 32), "'w' type", "unknown tensor type 99");
    expect_error(with_tensor("w", {8}, 4, 0, 32), "'w' type", "unknown tensor type 4");  // retired Q4_2
    expect_error(with_tensor("w", {33}, 2, 0, 64), "'w' ne[0]",
                 "row length 33 is not a multiple of the Q4_0 block size 32");
    expect_error(with_tensor("w", {8}, 0, 7, 64), "'w' offset", "not a multiple of the alignment 32");
    expect_error(with_tensor("w", {8}, 0, 0, 16), "tensor 'w' data", "run past the end of the file");
    expect_error(with_tensor("w", {8}, 0, uint64_t{1} << 62, 32), "tensor 'w' data", "run past the end");

    RawGguf duplicate;
    duplicate.header(2, 0).tensor("w", {8}, 0, 0).tensor("w", {8}, 0, 32).pad().data(64);
    expect_error(duplicate, "tensor_infos[1] 'w' name", "duplicate tensor name");

    RawGguf overlap;
    overlap.header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {8}, 0, 32).pad().data(96);
    expect_error(overlap, "tensor 'b' offset", "overlaps tensor 'a'");

    RawGguf no_data;
    no_data.header(1, 0).tensor("w", {8}, 0, 0);
    expect_error(no_data, "data", "ends before its data section");
}

TEST_CASE("unsupported but known tensor types parse, and are named when used", "[gguf][validation]") {
    RawGguf f;
    f.header(1, 0).tensor("blk.0.attn_q.weight", {256}, 17, 0).pad().data(74);  // IQ2_XS
    const auto file = File::parse(f.bytes);
    CHECK(file.tensors()[0].type == TensorType::IQ2_XS);
    CHECK_THROWS_WITH(file.dequantize_tensor(file.tensors()[0]),
                      "unsupported tensor type IQ2_XS in blk.0.attn_q.weight");
}

TEST_CASE("truncation at every byte offset is an error, never a crash", "[gguf][validation]") {
    Writer w;
    w.set("general.architecture", Value::string("llama"));
    w.set("a.strings", Value::string_array({"x", "yy", "zzz"}));
    w.set("a.floats", Value::f32_array({1, 2, 3, 4}));
    w.set("a.u64", Value::u64(5));
    w.add_tensor("q", TensorType::Q8_0, {32, 2}, std::vector<uint8_t>(68, 1));
    w.add_tensor("f", TensorType::F32, {3}, std::vector<uint8_t>(12, 2));
    auto bytes = w.header_bytes();
    bytes.resize(w.file_size());
    REQUIRE_NOTHROW(File::parse(bytes));
    for (size_t n = 0; n < bytes.size(); ++n) {
        const std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<long>(n));
        INFO("truncated to " << n << " bytes");
        CHECK_THROWS_AS(File::parse(cut), FormatError);
    }
}

TEST_CASE("random byte corruption gives a parse or a gguf::Error, nothing else", "[gguf][validation]") {
    Writer w;
    w.set("general.architecture", Value::string("llama"));
    w.set("a.strings", Value::string_array({"x", "yy", "zzz"}));
    w.set("a.nested", Value::array(Array{ValueType::ARRAY, {}, {}, {Value::string_array({"n"})}}));
    w.add_tensor("q", TensorType::Q4_K, {256}, std::vector<uint8_t>(144, 1));
    w.add_tensor("f", TensorType::F16, {3}, std::vector<uint8_t>(6, 2));
    auto original = w.header_bytes();
    original.resize(w.file_size());
    std::mt19937 rng(20261123);
    int parsed = 0, rejected = 0;
    for (int trial = 0; trial < 20000; ++trial) {
        auto bytes = original;
        const int flips = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < flips; ++k) bytes[rng() % bytes.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
        try {
            const auto f = File::parse(bytes);
            for (const auto& t : f.tensors()) {
                try {
                    (void)f.dequantize_tensor(t);
                } catch (const UnsupportedTypeError&) {}
            }
            ++parsed;
        } catch (const Error&) {
            ++rejected;
        }
    }
    CHECK(parsed + rejected == 20000);
    CHECK(rejected > 1000);
}
