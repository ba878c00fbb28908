// Metadata values: construction helpers and typed accessors.
#include "gguf/value.h"

#include <limits>

#include "gguf/errors.h"

namespace loom::gguf {

std::string_view value_type_name(ValueType type) {
    switch (type) {
        case ValueType::UINT8: return "uint8";
        case ValueType::INT8: return "int8";
        case ValueType::UINT16: return "uint16";
        case ValueType::INT16: return "int16";
        case ValueType::UINT32: return "uint32";
        case ValueType::INT32: return "int32";
        case ValueType::FLOAT32: return "float32";
        case ValueType::BOOL: return "bool";
        case ValueType::STRING: return "string";
        case ValueType::ARRAY: return "array";
        case ValueType::UINT64: return "uint64";
        case ValueType::INT64: return "int64";
        case ValueType::FLOAT64: return "float64";
    }
    return "unknown";
}

size_t value_type_size(ValueType type) {
    switch (type) {
        case ValueType::UINT8:
        case ValueType::INT8:
        case ValueType::BOOL: return 1;
        case ValueType::UINT16:
        case ValueType::INT16: return 2;
        case ValueType::UINT32:
        case ValueType::INT32:
        case ValueType::FLOAT32: return 4;
        case ValueType::UINT64:
        case ValueType::INT64:
        case ValueType::FLOAT64: return 8;
        case ValueType::STRING:
        case ValueType::ARRAY: return 0;
    }
    return 0;
}

size_t Array::size() const {
    if (elem_type == ValueType::STRING) return strings.size();
    if (elem_type == ValueType::ARRAY) return arrays.size();
    return packed.size() / value_type_size(elem_type);
}

bool Array::operator==(const Array& o) const {
    return elem_type == o.elem_type && packed == o.packed && strings == o.strings && arrays == o.arrays;
}

namespace {
template <typename T>
Array pack(ValueType elem, const std::vector<T>& items) {
    Array a;
    a.elem_type = elem;
    a.packed.resize(items.size() * sizeof(T));
    if (!items.empty()) std::memcpy(a.packed.data(), items.data(), a.packed.size());
    return a;
}

template <typename T>
std::vector<T> unpack(const Array& a) {
    std::vector<T> out(a.packed.size() / sizeof(T));
    if (!out.empty()) std::memcpy(out.data(), a.packed.data(), out.size() * sizeof(T));
    return out;
}
}  // namespace

Value Value::string_array(std::vector<std::string> items) {
    Array a;
    a.elem_type = ValueType::STRING;
    a.strings = std::move(items);
    return array(std::move(a));
}
Value Value::f32_array(const std::vector<float>& items) { return array(pack(ValueType::FLOAT32, items)); }
Value Value::i32_array(const std::vector<int32_t>& items) { return array(pack(ValueType::INT32, items)); }

std::string Value::type_description() const {
    if (type_ != ValueType::ARRAY) return std::string(value_type_name(type_));
    const Array& a = std::get<Array>(data_);
    if (a.elem_type == ValueType::ARRAY && !a.arrays.empty())
        return "array[" + a.arrays.front().type_description() + "]";
    return "array[" + std::string(value_type_name(a.elem_type)) + "]";
}

void Value::wrong_type(std::string_view key, std::string_view expected) const {
    std::string where = key.empty() ? std::string("metadata value") : "metadata key '" + std::string(key) + "'";
    throw KeyError(where + ": expected " + std::string(expected) + ", found " + type_description());
}

uint64_t Value::as_uint(std::string_view key) const {
    if (const auto* u = std::get_if<uint64_t>(&data_)) return *u;
    if (const auto* i = std::get_if<int64_t>(&data_); i && *i >= 0) return static_cast<uint64_t>(*i);
    wrong_type(key, "a non-negative integer");
}

int64_t Value::as_int(std::string_view key) const {
    if (const auto* i = std::get_if<int64_t>(&data_)) return *i;
    if (const auto* u = std::get_if<uint64_t>(&data_);
        u && *u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return static_cast<int64_t>(*u);
    wrong_type(key, "an integer");
}

double Value::as_float(std::string_view key) const {
    if (const auto* d = std::get_if<double>(&data_)) return *d;
    if (const auto* u = std::get_if<uint64_t>(&data_)) return static_cast<double>(*u);
    if (const auto* i = std::get_if<int64_t>(&data_)) return static_cast<double>(*i);
    wrong_type(key, "a number");
}

bool Value::as_bool(std::string_view key) const {
    if (const auto* b = std::get_if<bool>(&data_)) return *b;
    wrong_type(key, "bool");
}

const std::string& Value::as_string(std::string_view key) const {
    if (const auto* s = std::get_if<std::string>(&data_)) return *s;
    wrong_type(key, "string");
}

const Array& Value::as_array(std::string_view key) const {
    if (const auto* a = std::get_if<Array>(&data_)) return *a;
    wrong_type(key, "array");
}

std::vector<std::string> Value::as_string_array(std::string_view key) const {
    const auto* a = std::get_if<Array>(&data_);
    if (!a || a->elem_type != ValueType::STRING) wrong_type(key, "array[string]");
    return a->strings;
}

std::vector<float> Value::as_f32_array(std::string_view key) const {
    const auto* a = std::get_if<Array>(&data_);
    if (!a || a->elem_type != ValueType::FLOAT32) wrong_type(key, "array[float32]");
    return unpack<float>(*a);
}

std::vector<int32_t> Value::as_i32_array(std::string_view key) const {
    const auto* a = std::get_if<Array>(&data_);
    if (!a || a->elem_type != ValueType::INT32) wrong_type(key, "array[int32]");
    return unpack<int32_t>(*a);
}

}  // namespace loom::gguf
