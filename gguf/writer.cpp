// GGUF v3 serialization (little-endian).
#include "gguf/writer.h"

#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <system_error>

#include "gguf/reader.h"

namespace loom::gguf {

namespace {

class Bytes {
public:
    template <typename T>
    void put(T v) {
        const size_t at = out_.size();
        out_.resize(at + sizeof(T));
        std::memcpy(out_.data() + at, &v, sizeof(T));
    }
    void put_string(const std::string& s) {
        put<uint64_t>(s.size());
        out_.insert(out_.end(), s.begin(), s.end());
    }
    void put_raw(const std::vector<uint8_t>& b) { out_.insert(out_.end(), b.begin(), b.end()); }
    void pad_to(uint64_t alignment) { out_.resize((out_.size() + alignment - 1) / alignment * alignment, 0); }
    std::vector<uint8_t>& data() { return out_; }

private:
    std::vector<uint8_t> out_;
};

void put_array(Bytes& b, const Array& a);

void put_value(Bytes& b, const Value& v) {
    switch (v.type()) {
        case ValueType::UINT8: b.put(static_cast<uint8_t>(v.as_uint())); break;
        case ValueType::INT8: b.put(static_cast<int8_t>(v.as_int())); break;
        case ValueType::UINT16: b.put(static_cast<uint16_t>(v.as_uint())); break;
        case ValueType::INT16: b.put(static_cast<int16_t>(v.as_int())); break;
        case ValueType::UINT32: b.put(static_cast<uint32_t>(v.as_uint())); break;
        case ValueType::INT32: b.put(static_cast<int32_t>(v.as_int())); break;
        case ValueType::FLOAT32: b.put(static_cast<float>(v.as_float())); break;
        case ValueType::BOOL: b.put(static_cast<uint8_t>(v.as_bool())); break;
        case ValueType::STRING: b.put_string(v.as_string()); break;
        case ValueType::ARRAY: put_array(b, v.as_array()); break;
        case ValueType::UINT64: b.put(v.as_uint()); break;
        case ValueType::INT64: b.put(v.as_int()); break;
        case ValueType::FLOAT64: b.put(v.as_float()); break;
    }
}

void put_array(Bytes& b, const Array& a) {
    b.put(static_cast<uint32_t>(a.elem_type));
    b.put<uint64_t>(a.size());
    if (a.elem_type == ValueType::STRING) {
        for (const auto& s : a.strings) b.put_string(s);
    } else if (a.elem_type == ValueType::ARRAY) {
        for (const auto& sub : a.arrays) put_array(b, sub.as_array());
    } else {
        b.put_raw(a.packed);
    }
}

struct FileCloser {
    void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

void Writer::set(const std::string& key, Value value) {
    if (key == "general.alignment") {
        const uint64_t a = value.as_uint(key);
        if (a == 0 || (a & (a - 1)) != 0 || !tensors_.empty())
            throw std::invalid_argument("general.alignment must be a power of two, set before any tensor");
        alignment_ = a;
    }
    for (auto& [k, v] : kv_)
        if (k == key) {
            v = std::move(value);
            return;
        }
    kv_.emplace_back(key, std::move(value));
}

void Writer::add_tensor(const std::string& name, TensorType type, std::vector<uint64_t> ne, Producer produce) {
    const auto& info = tensor_type_info(type);
    if (ne.empty() || ne.size() > kMaxDims) throw std::invalid_argument("tensor " + name + ": 1 to 4 dimensions");
    uint64_t n = 1;
    for (uint64_t d : ne) {
        if (d == 0) throw std::invalid_argument("tensor " + name + ": zero dimension");
        n *= d;
    }
    if (ne[0] % info.block_elems != 0)
        throw std::invalid_argument("tensor " + name + ": row length " + std::to_string(ne[0]) +
                                    " is not a multiple of the " + std::string(info.name) + " block size");
    for (const auto& t : tensors_)
        if (t.name == name) throw std::invalid_argument("duplicate tensor name " + name);
    const uint64_t bytes = tensor_bytes(type, n);
    tensors_.push_back({name, type, std::move(ne), bytes, data_size_, std::move(produce)});
    data_size_ = aligned(data_size_ + bytes);
}

void Writer::add_tensor(const std::string& name, TensorType type, std::vector<uint64_t> ne, std::vector<uint8_t> data) {
    auto shared = std::make_shared<std::vector<uint8_t>>(std::move(data));
    add_tensor(name, type, std::move(ne), [shared, name](std::span<uint8_t> out) {
        if (out.size() != shared->size())
            throw std::invalid_argument("tensor " + name + ": " + std::to_string(shared->size()) +
                                        " data bytes given, its shape needs " + std::to_string(out.size()));
        std::memcpy(out.data(), shared->data(), out.size());
    });
}

std::vector<uint8_t> Writer::header_bytes() const {
    Bytes b;
    b.put(kMagic);
    b.put<uint32_t>(3);
    b.put<uint64_t>(tensors_.size());
    b.put<uint64_t>(kv_.size());
    for (const auto& [key, value] : kv_) {
        b.put_string(key);
        b.put(static_cast<uint32_t>(value.type()));
        put_value(b, value);
    }
    for (const auto& t : tensors_) {
        b.put_string(t.name);
        b.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
        for (uint64_t d : t.ne) b.put(d);
        b.put(static_cast<uint32_t>(t.type));
        b.put(t.offset);
    }
    if (!tensors_.empty()) b.pad_to(alignment_);
    return std::move(b.data());
}

uint64_t Writer::file_size() const {
    const uint64_t header = header_bytes().size();
    if (tensors_.empty()) return header;
    const auto& last = tensors_.back();
    return header + last.offset + last.n_bytes;
}

void Writer::write(const std::filesystem::path& path) const {
    std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "wb"));
    if (!f) throw std::system_error(errno, std::generic_category(), "cannot create " + path.string());
    const auto fail = [&] { throw std::system_error(errno, std::generic_category(), "cannot write " + path.string()); };
    const auto header = header_bytes();
    if (std::fwrite(header.data(), 1, header.size(), f.get()) != header.size()) fail();
    std::vector<uint8_t> buf;
    uint64_t written = 0;  // bytes of the data section so far
    for (const auto& t : tensors_) {
        std::vector<uint8_t> pad(t.offset - written, 0);
        if (!pad.empty() && std::fwrite(pad.data(), 1, pad.size(), f.get()) != pad.size()) fail();
        buf.assign(t.n_bytes, 0);
        t.produce(buf);
        if (std::fwrite(buf.data(), 1, buf.size(), f.get()) != buf.size()) fail();
        written = t.offset + t.n_bytes;
    }
    if (std::fflush(f.get()) != 0) fail();
}

Writer Writer::copy_of(const File& file) {
    Writer w;
    for (const auto& [key, value] : file.metadata()) w.set(key, value);
    for (const auto& t : file.tensors()) {
        const auto data = file.tensor_data(t);
        w.add_tensor(t.name, t.type, t.ne,
                     [data](std::span<uint8_t> out) { std::memcpy(out.data(), data.data(), out.size()); });
    }
    return w;
}

}  // namespace loom::gguf
