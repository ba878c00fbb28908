// Byte-level GGUF builder for tests: writes any field with any value, valid or not, so that
// each validation rule can be broken one at a time.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace loom::test {

class RawGguf {
public:
    std::vector<uint8_t> bytes;

    template <typename T>
    RawGguf& put(T v) {
        const size_t at = bytes.size();
        bytes.resize(at + sizeof(T));
        std::memcpy(bytes.data() + at, &v, sizeof(T));
        return *this;
    }
    RawGguf& str(const std::string& s) {
        put<uint64_t>(s.size());
        bytes.insert(bytes.end(), s.begin(), s.end());
        return *this;
    }
    RawGguf& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
        return put<uint32_t>(0x46554747).put<uint32_t>(version).put(n_tensors).put(n_kv);
    }
    RawGguf& kv_u32(const std::string& key, uint32_t v) { return str(key).put<uint32_t>(4).put(v); }
    RawGguf& kv_str(const std::string& key, const std::string& v) { return str(key).put<uint32_t>(8).str(v); }
    // A tensor info: name, dims (GGUF order), type id, offset.
    RawGguf& tensor(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset) {
        str(name).put<uint32_t>(static_cast<uint32_t>(ne.size()));
        for (uint64_t d : ne) put(d);
        return put(type).put(offset);
    }
    RawGguf& pad(size_t alignment = 32) {
        bytes.resize((bytes.size() + alignment - 1) / alignment * alignment, 0);
        return *this;
    }
    RawGguf& data(size_t n, uint8_t fill = 0x3c) {
        bytes.resize(bytes.size() + n, fill);
        return *this;
    }
    size_t size() const { return bytes.size(); }
};

}  // namespace loom::test
