// GGUF v3 writer: metadata in insertion order, tensors aligned, data produced one tensor at a time
// so that multi-GiB synthetic models never sit in memory whole.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "gguf/tensor_type.h"
#include "gguf/value.h"

namespace loom::gguf {

class File;

class Writer {
public:
    // Fills the tensor's bytes (exactly tensor_bytes(type, n_elems) of them).
    using Producer = std::function<void(std::span<uint8_t>)>;

    // Sets or replaces a key (a replaced key keeps its place). "general.alignment" sets the alignment.
    void set(const std::string& key, Value value);
    // ne in GGUF order (ne[0] = row length). Throws std::invalid_argument for a bad shape or name.
    void add_tensor(const std::string& name, TensorType type, std::vector<uint64_t> ne, Producer produce);
    void add_tensor(const std::string& name, TensorType type, std::vector<uint64_t> ne, std::vector<uint8_t> data);

    // Header, metadata, tensor infos and padding up to the data section.
    std::vector<uint8_t> header_bytes() const;
    uint64_t file_size() const;
    void write(const std::filesystem::path& path) const;  // throws std::system_error on I/O failure

    // Every key and tensor of an open file, which must outlive the writer (tensor bytes are read
    // from its mapping at write time).
    static Writer copy_of(const File& file);

private:
    struct Tensor {
        std::string name;
        TensorType type;
        std::vector<uint64_t> ne;
        uint64_t n_bytes;
        uint64_t offset;
        Producer produce;
    };
    uint64_t aligned(uint64_t x) const { return (x + alignment_ - 1) / alignment_ * alignment_; }

    uint64_t alignment_ = 32;
    std::vector<std::pair<std::string, Value>> kv_;
    std::vector<Tensor> tensors_;
    uint64_t data_size_ = 0;
};

}  // namespace loom::gguf
