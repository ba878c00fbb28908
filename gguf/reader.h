// GGUF v2/v3 reader: maps a file, parses and validates header, metadata and tensor infos.
// Tensor data is never read at open; tensor_data() hands out views into the mapping.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gguf/tensor_type.h"
#include "gguf/value.h"

namespace loom::gguf {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;

struct TensorInfo {
    std::string name;
    TensorType type;
    std::vector<uint64_t> ne;  // GGUF order: ne[0] is the row length (contiguous), ne[1] the rows, ...
    uint64_t offset = 0;       // from the start of the data section
    uint64_t n_elems = 0;
    uint64_t n_bytes = 0;
    uint64_t info_offset = 0;  // byte offset of this tensor's info record in the file

    uint64_t row_length() const { return ne[0]; }
    uint64_t n_rows() const { return n_elems / ne[0]; }
};

class MappedFile;

class File {
public:
    // Maps and validates `path`; throws FormatError (field + byte offset) or std::system_error.
    static File open(const std::filesystem::path& path);
    // Validates bytes that the caller keeps alive for the File's lifetime.
    static File parse(std::span<const uint8_t> bytes);

    File(File&&) noexcept;
    File& operator=(File&&) noexcept;
    ~File();

    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }
    uint64_t file_size() const { return bytes_.size(); }

    // Metadata in file order.
    const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
    const Value* find(std::string_view key) const;
    const Value& at(std::string_view key) const;  // KeyError "missing metadata key '...'"
    uint64_t get_uint(std::string_view key) const { return at(key).as_uint(key); }
    double get_float(std::string_view key) const { return at(key).as_float(key); }
    const std::string& get_string(std::string_view key) const { return at(key).as_string(key); }
    std::optional<uint64_t> find_uint(std::string_view key) const;
    std::optional<double> find_float(std::string_view key) const;
    std::optional<std::string> find_string(std::string_view key) const;
    std::optional<bool> find_bool(std::string_view key) const;

    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const TensorInfo* find_tensor(std::string_view name) const;
    std::span<const uint8_t> tensor_data(const TensorInfo& t) const;
    // Dequantized copy of a tensor (n_elems floats); UnsupportedTypeError names the tensor.
    std::vector<float> dequantize_tensor(const TensorInfo& t) const;

private:
    File();
    friend class Parser;

    std::unique_ptr<MappedFile> mapping_;
    std::span<const uint8_t> bytes_;
    uint32_t version_ = 0;
    uint64_t alignment_ = kDefaultAlignment;
    uint64_t data_offset_ = 0;
    std::vector<std::pair<std::string, Value>> kv_;
    std::unordered_map<std::string, size_t> kv_index_;
    std::vector<TensorInfo> tensors_;
    std::unordered_map<std::string, size_t> tensor_index_;
};

// Whether every matrix of the file (a tensor of more than one row) is F32, F16 or BF16, i.e. nothing
// is quantized; 1-D tensors (norms, biases) do not count. The KV cache's default type follows it
// (engine::default_kv_cache_type, gguf::estimate_memory).
bool unquantized_matrices(const File& file);

}  // namespace loom::gguf
