// GGUF parsing and validation. Every count is checked against the bytes left before anything is
// allocated from it, and every failure names the field and its byte offset.
#include "gguf/reader.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <functional>
#include <limits>

#include "gguf/errors.h"
#include "gguf/mapped_file.h"
#include "gguf/quantize.h"

namespace loom::gguf {

namespace {

constexpr uint32_t kMaxArrayDepth = 16;
constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

// Bounds-checked little-endian cursor. Field names are built only when an error is thrown.
class Cursor {
public:
    explicit Cursor(std::span<const uint8_t> bytes) : bytes_(bytes) {}

    uint64_t pos() const { return pos_; }
    uint64_t left() const { return bytes_.size() - pos_; }

    template <typename T, typename Field>
    T read(const Field& field) {
        need(sizeof(T), field);
        T v;
        std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }

    template <typename Field>
    std::string read_string(const Field& field) {
        const uint64_t at = pos_;
        const auto len = read<uint64_t>(field);
        if (len > left())
            throw FormatError(field(), at,
                              "string of " + std::to_string(len) + " bytes runs past the end of the file (" +
                                  std::to_string(left()) + " bytes left)");
        std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
        pos_ += len;
        return s;
    }

    template <typename Field>
    std::span<const uint8_t> take(uint64_t n, const Field& field) {
        need(n, field);
        auto s = bytes_.subspan(pos_, n);
        pos_ += n;
        return s;
    }

private:
    template <typename Field>
    void need(uint64_t n, const Field& field) {
        if (n > left())
            throw FormatError(field(), pos_,
                              "truncated: needs " + std::to_string(n) + " bytes, " + std::to_string(left()) + " left");
    }

    std::span<const uint8_t> bytes_;
    uint64_t pos_ = 0;
};

bool is_power_of_two(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

}  // namespace

class Parser {
public:
    Parser(File& file, std::span<const uint8_t> bytes) : f_(file), cur_(bytes) {}

    void run() {
        header();
        for (uint64_t i = 0; i < n_kv_; ++i) key_value(i);
        alignment();
        for (uint64_t i = 0; i < n_tensors_; ++i) tensor_info(i);
        data_section();
    }

private:
    void header() {
        const auto magic = cur_.read<uint32_t>([] { return std::string("magic"); });
        if (magic != kMagic) throw FormatError("magic", 0, "not a GGUF file (first bytes are not \"GGUF\")");
        const auto version = cur_.read<uint32_t>([] { return std::string("version"); });
        if (version == 0x02000000u || version == 0x03000000u)
            throw FormatError("version", 4, "big-endian GGUF files are not supported");
        if (version != 2 && version != 3)
            throw FormatError("version", 4,
                              "unsupported GGUF version " + std::to_string(version) + " (loom reads 2 and 3)");
        f_.version_ = version;
        n_tensors_ = cur_.read<uint64_t>([] { return std::string("tensor_count"); });
        n_kv_ = cur_.read<uint64_t>([] { return std::string("kv_count"); });
        // Smallest records: a key/value pair is a key length, a type and a 1-byte value (13 bytes);
        // a tensor info is a name length, n_dims, one dim, type and offset (32 bytes).
        if (n_kv_ > cur_.left() / 13)
            throw FormatError("kv_count", 16, "the file cannot hold " + std::to_string(n_kv_) + " key/value pairs");
        if (n_tensors_ > (cur_.left() - n_kv_ * 13) / 32)
            throw FormatError("tensor_count", 8,
                              "the file cannot hold " + std::to_string(n_tensors_) + " tensor infos");
    }

    void key_value(uint64_t i) {
        const uint64_t at = cur_.pos();
        const auto kv_field = [i] { return "kv[" + std::to_string(i) + "].key"; };
        std::string key = cur_.read_string(kv_field);
        const auto field = [&](const char* part) { return "kv[" + std::to_string(i) + "] '" + key + "' " + part; };
        if (f_.kv_index_.count(key)) throw FormatError(field("key"), at, "duplicate key");
        const uint64_t type_at = cur_.pos();
        const auto type = cur_.read<uint32_t>([&] { return field("type"); });
        Value v = value(
            type, type_at, [&] { return field("value"); }, 0);
        f_.kv_index_.emplace(key, f_.kv_.size());
        f_.kv_.emplace_back(std::move(key), std::move(v));
        kv_offsets_.push_back(at);
    }

    // Fields of (possibly nested) values are type-erased: the recursion must not instantiate a new
    // template per nesting level.
    using FieldFn = std::function<std::string()>;

    Value value(uint32_t type, uint64_t type_at, const FieldFn& field, uint32_t depth) {
        if (type >= kValueTypeCount) throw FormatError(field(), type_at, "unknown value type " + std::to_string(type));
        switch (static_cast<ValueType>(type)) {
            case ValueType::UINT8: return Value::u8(cur_.read<uint8_t>(field));
            case ValueType::INT8: return Value::i8(cur_.read<int8_t>(field));
            case ValueType::UINT16: return Value::u16(cur_.read<uint16_t>(field));
            case ValueType::INT16: return Value::i16(cur_.read<int16_t>(field));
            case ValueType::UINT32: return Value::u32(cur_.read<uint32_t>(field));
            case ValueType::INT32: return Value::i32(cur_.read<int32_t>(field));
            case ValueType::FLOAT32: return Value::f32(cur_.read<float>(field));
            case ValueType::UINT64: return Value::u64(cur_.read<uint64_t>(field));
            case ValueType::INT64: return Value::i64(cur_.read<int64_t>(field));
            case ValueType::FLOAT64: return Value::f64(cur_.read<double>(field));
            case ValueType::BOOL: {
                const uint64_t at = cur_.pos();
                const auto b = cur_.read<uint8_t>(field);
                if (b > 1) throw FormatError(field(), at, "bool value " + std::to_string(b) + " is neither 0 nor 1");
                return Value::boolean(b == 1);
            }
            case ValueType::STRING: return Value::string(cur_.read_string(field));
            case ValueType::ARRAY: return Value::array(array(field, depth));
        }
        throw FormatError(field(), type_at, "unknown value type " + std::to_string(type));
    }

    Array array(const FieldFn& field, uint32_t depth) {
        const uint64_t at = cur_.pos();
        if (depth >= kMaxArrayDepth)
            throw FormatError(field(), at, "arrays nested deeper than " + std::to_string(kMaxArrayDepth) + " levels");
        Array a;
        const auto elem = cur_.read<uint32_t>(field);
        if (elem >= kValueTypeCount)
            throw FormatError(field(), at, "unknown array element type " + std::to_string(elem));
        a.elem_type = static_cast<ValueType>(elem);
        const uint64_t count_at = cur_.pos();
        const auto count = cur_.read<uint64_t>(field);
        // Smallest element: fixed size, or a string's length field (8), or a nested type + count (12).
        const size_t fixed = value_type_size(a.elem_type);
        const uint64_t min_size = fixed ? fixed : (a.elem_type == ValueType::STRING ? 8 : 12);
        if (count > cur_.left() / min_size)
            throw FormatError(field(), count_at,
                              "array of " + std::to_string(count) + " " + std::string(value_type_name(a.elem_type)) +
                                  " elements runs past the end of the file");
        if (fixed) {
            auto raw = cur_.take(count * fixed, field);
            a.packed.assign(raw.begin(), raw.end());
            if (a.elem_type == ValueType::BOOL)
                for (uint64_t j = 0; j < count; ++j)
                    if (a.packed[j] > 1)
                        throw FormatError(field() + "[" + std::to_string(j) + "]", count_at + 8 + j,
                                          "bool value is neither 0 nor 1");
        } else if (a.elem_type == ValueType::STRING) {
            a.strings.reserve(count);
            for (uint64_t j = 0; j < count; ++j)
                a.strings.push_back(cur_.read_string([&] { return field() + "[" + std::to_string(j) + "]"; }));
        } else {
            a.arrays.reserve(count);
            for (uint64_t j = 0; j < count; ++j) {
                const FieldFn sub = [&] { return field() + "[" + std::to_string(j) + "]"; };
                a.arrays.push_back(Value::array(array(sub, depth + 1)));
            }
        }
        return a;
    }

    void alignment() {
        const auto it = f_.kv_index_.find("general.alignment");
        if (it == f_.kv_index_.end()) return;
        const Value& v = f_.kv_[it->second].second;
        const auto field = "kv[" + std::to_string(it->second) + "] 'general.alignment'";
        if (v.type() != ValueType::UINT32 && v.type() != ValueType::UINT64 && v.type() != ValueType::UINT16 &&
            v.type() != ValueType::UINT8)
            throw FormatError(field, kv_offsets_[it->second],
                              "expected an unsigned integer, found " + v.type_description());
        const uint64_t a = v.as_uint();
        if (!is_power_of_two(a) || a > (uint64_t{1} << 30))
            throw FormatError(field, kv_offsets_[it->second],
                              "alignment " + std::to_string(a) + " is not a power of two between 1 and 2^30");
        f_.alignment_ = a;
    }

    void tensor_info(uint64_t i) {
        TensorInfo t;
        t.info_offset = cur_.pos();
        t.name = cur_.read_string([i] { return "tensor_infos[" + std::to_string(i) + "].name"; });
        const auto field = [&](const char* part) {
            return "tensor_infos[" + std::to_string(i) + "] '" + t.name + "' " + part;
        };
        if (f_.tensor_index_.count(t.name)) throw FormatError(field("name"), t.info_offset, "duplicate tensor name");

        const uint64_t dims_at = cur_.pos();
        const auto n_dims = cur_.read<uint32_t>([&] { return field("n_dims"); });
        if (n_dims == 0 || n_dims > kMaxDims)
            throw FormatError(
                field("n_dims"), dims_at,
                std::to_string(n_dims) + " dimensions (loom reads 1 to " + std::to_string(kMaxDims) + ")");
        uint64_t n_elems = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            const uint64_t at = cur_.pos();
            const auto ne = cur_.read<uint64_t>([&] { return field("ne"); });
            if (ne == 0 || ne > kInt64Max)
                throw FormatError(field("ne") + "[" + std::to_string(d) + "]", at,
                                  "dimension " + std::to_string(static_cast<int64_t>(ne)) + " is not positive");
            if (n_elems > kInt64Max / ne)
                throw FormatError(field("ne") + "[" + std::to_string(d) + "]", at, "element count overflows int64");
            n_elems *= ne;
            t.ne.push_back(ne);
        }
        t.n_elems = n_elems;

        const uint64_t type_at = cur_.pos();
        const auto type_id = cur_.read<uint32_t>([&] { return field("type"); });
        const auto info = tensor_type_info(type_id);
        if (!info) throw FormatError(field("type"), type_at, "unknown tensor type " + std::to_string(type_id));
        t.type = info->type;
        if (t.ne[0] % info->block_elems != 0)
            throw FormatError(field("ne") + "[0]", dims_at + 4,
                              "row length " + std::to_string(t.ne[0]) + " is not a multiple of the " +
                                  std::string(info->name) + " block size " + std::to_string(info->block_elems));
        // n_elems <= 2^63 and block_bytes / block_elems <= 8: compute in 128 bits to be safe.
        const unsigned __int128 bytes = static_cast<unsigned __int128>(n_elems / info->block_elems) * info->block_bytes;
        if (bytes > kInt64Max) throw FormatError(field("ne"), dims_at, "tensor size overflows int64");
        t.n_bytes = static_cast<uint64_t>(bytes);

        const uint64_t offset_at = cur_.pos();
        t.offset = cur_.read<uint64_t>([&] { return field("offset"); });
        if (t.offset % f_.alignment_ != 0)
            throw FormatError(field("offset"), offset_at,
                              "offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                                  std::to_string(f_.alignment_));
        f_.tensor_index_.emplace(t.name, f_.tensors_.size());
        f_.tensors_.push_back(std::move(t));
    }

    void data_section() {
        const uint64_t end_of_infos = cur_.pos();
        const uint64_t size = f_.bytes_.size();
        f_.data_offset_ = (end_of_infos + f_.alignment_ - 1) / f_.alignment_ * f_.alignment_;
        if (f_.tensors_.empty()) return;  // vocab-only files may end without padding
        if (f_.data_offset_ > size)
            throw FormatError(
                "data", end_of_infos,
                "the file ends before its data section starts at byte " + std::to_string(f_.data_offset_));
        const uint64_t data_size = size - f_.data_offset_;
        std::vector<const TensorInfo*> by_offset;
        by_offset.reserve(f_.tensors_.size());
        for (const auto& t : f_.tensors_) {
            if (t.offset > data_size || t.n_bytes > data_size - t.offset)
                throw FormatError("tensor '" + t.name + "' data", t.info_offset,
                                  "bytes " + std::to_string(f_.data_offset_ + t.offset) + ".." +
                                      std::to_string(f_.data_offset_ + t.offset + t.n_bytes) +
                                      " run past the end of the file (" + std::to_string(size) + " bytes)");
            by_offset.push_back(&t);
        }
        std::sort(by_offset.begin(), by_offset.end(),
                  [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
        for (size_t k = 1; k < by_offset.size(); ++k) {
            const TensorInfo& prev = *by_offset[k - 1];
            const TensorInfo& cur = *by_offset[k];
            if (prev.offset + prev.n_bytes > cur.offset)
                throw FormatError("tensor '" + cur.name + "' offset", cur.info_offset,
                                  "data overlaps tensor '" + prev.name + "' (" + std::to_string(prev.offset) + "+" +
                                      std::to_string(prev.n_bytes) + " > " + std::to_string(cur.offset) + ")");
        }
    }

    File& f_;
    Cursor cur_;
    uint64_t n_tensors_ = 0;
    uint64_t n_kv_ = 0;
    std::vector<uint64_t> kv_offsets_;  // where each key/value pair starts
};

File::File() = default;
File::File(File&&) noexcept = default;
File& File::operator=(File&&) noexcept = default;
File::~File() = default;

File File::open(const std::filesystem::path& path) {
    File f;
    f.mapping_ = std::make_unique<MappedFile>(path);
    f.bytes_ = f.mapping_->bytes();
    Parser(f, f.bytes_).run();
    return f;
}

File File::parse(std::span<const uint8_t> bytes) {
    File f;
    f.bytes_ = bytes;
    Parser(f, bytes).run();
    return f;
}

const Value* File::find(std::string_view key) const {
    const auto it = kv_index_.find(std::string(key));
    return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const Value& File::at(std::string_view key) const {
    if (const Value* v = find(key)) return *v;
    throw KeyError("missing metadata key '" + std::string(key) + "'");
}

std::optional<uint64_t> File::find_uint(std::string_view key) const {
    const Value* v = find(key);
    return v ? std::optional(v->as_uint(key)) : std::nullopt;
}
std::optional<double> File::find_float(std::string_view key) const {
    const Value* v = find(key);
    return v ? std::optional(v->as_float(key)) : std::nullopt;
}
std::optional<std::string> File::find_string(std::string_view key) const {
    const Value* v = find(key);
    return v ? std::optional(v->as_string(key)) : std::nullopt;
}
std::optional<bool> File::find_bool(std::string_view key) const {
    const Value* v = find(key);
    return v ? std::optional(v->as_bool(key)) : std::nullopt;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
    const auto it = tensor_index_.find(std::string(name));
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> File::tensor_data(const TensorInfo& t) const {
    return bytes_.subspan(data_offset_ + t.offset, t.n_bytes);
}

std::vector<float> File::dequantize_tensor(const TensorInfo& t) const {
    std::vector<float> out(t.n_elems);
    dequantize(t.type, tensor_data(t).data(), out.data(), t.n_elems, t.name);
    return out;
}

bool unquantized_matrices(const File& file) {
    for (const TensorInfo& t : file.tensors())
        if (t.n_elems > t.row_length() && t.type != TensorType::F32 && t.type != TensorType::F16 &&
            t.type != TensorType::BF16)
            return false;
    return true;
}

}  // namespace loom::gguf
