// A GGUF metadata value: scalar, string, or (nested) array, with typed accessors whose errors
// name the key and the type found.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace loom::gguf {

// Value type ids as stored in GGUF key/value pairs.
enum class ValueType : uint32_t {
    UINT8 = 0,
    INT8 = 1,
    UINT16 = 2,
    INT16 = 3,
    UINT32 = 4,
    INT32 = 5,
    FLOAT32 = 6,
    BOOL = 7,
    STRING = 8,
    ARRAY = 9,
    UINT64 = 10,
    INT64 = 11,
    FLOAT64 = 12,
};
constexpr uint32_t kValueTypeCount = 13;

std::string_view value_type_name(ValueType type);
// Bytes of one element of a fixed-size type (0 for STRING and ARRAY).
size_t value_type_size(ValueType type);

class Value;

// Elements of one type. Fixed-size elements stay packed little-endian, as in the file, so that
// large arrays (token scores, types) cost one copy; strings and nested arrays are held one by one.
struct Array {
    ValueType elem_type = ValueType::UINT8;
    std::vector<uint8_t> packed;       // fixed-size elements
    std::vector<std::string> strings;  // elem_type == STRING
    std::vector<Value> arrays;         // elem_type == ARRAY (each a Value of type ARRAY)

    size_t size() const;
    bool operator==(const Array&) const;
};

class Value {
public:
    Value() : type_(ValueType::UINT8), data_(uint64_t{0}) {}
    static Value u8(uint8_t v) { return {ValueType::UINT8, uint64_t{v}}; }
    static Value i8(int8_t v) { return {ValueType::INT8, int64_t{v}}; }
    static Value u16(uint16_t v) { return {ValueType::UINT16, uint64_t{v}}; }
    static Value i16(int16_t v) { return {ValueType::INT16, int64_t{v}}; }
    static Value u32(uint32_t v) { return {ValueType::UINT32, uint64_t{v}}; }
    static Value i32(int32_t v) { return {ValueType::INT32, int64_t{v}}; }
    static Value u64(uint64_t v) { return {ValueType::UINT64, v}; }
    static Value i64(int64_t v) { return {ValueType::INT64, v}; }
    static Value f32(float v) { return {ValueType::FLOAT32, double{v}}; }
    static Value f64(double v) { return {ValueType::FLOAT64, v}; }
    static Value boolean(bool v) { return {ValueType::BOOL, v}; }
    static Value string(std::string v) { return {ValueType::STRING, std::move(v)}; }
    static Value array(Array v) { return {ValueType::ARRAY, std::move(v)}; }
    static Value string_array(std::vector<std::string> items);
    static Value f32_array(const std::vector<float>& items);
    static Value i32_array(const std::vector<int32_t>& items);

    ValueType type() const { return type_; }
    // Human-readable type, e.g. "uint32" or "array[string]".
    std::string type_description() const;

    // Typed access. `key` only feeds the error message (KeyError naming key and the type found).
    uint64_t as_uint(std::string_view key = {}) const;  // any integer type holding a value >= 0
    int64_t as_int(std::string_view key = {}) const;    // any integer type fitting int64
    double as_float(std::string_view key = {}) const;   // FLOAT32/FLOAT64 (and integers)
    bool as_bool(std::string_view key = {}) const;
    const std::string& as_string(std::string_view key = {}) const;
    const Array& as_array(std::string_view key = {}) const;
    // Arrays of exactly this element type -> std::vector (T: integer, float or double of that width).
    std::vector<std::string> as_string_array(std::string_view key = {}) const;
    std::vector<float> as_f32_array(std::string_view key = {}) const;
    std::vector<int32_t> as_i32_array(std::string_view key = {}) const;

    bool operator==(const Value&) const = default;

private:
    using Data = std::variant<uint64_t, int64_t, double, bool, std::string, Array>;
    Value(ValueType type, Data data) : type_(type), data_(std::move(data)) {}
    [[noreturn]] void wrong_type(std::string_view key, std::string_view expected) const;

    ValueType type_;
    Data data_;
};

}  // namespace loom::gguf
