// `loom synth`: GGUF models with seeded random weights at real shapes, tokenizer copied from a vocab GGUF.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/errors.h"
#include "gguf/model_shapes.h"
#include "gguf/tensor_type.h"
#include "gguf/writer.h"

namespace loom::gguf {

// Bad synthesis options or an unusable vocab file; the message says which and what is valid.
class SynthError : public Error {
public:
    using Error::Error;
};

enum class SynthArch { llama, qwen2 };

// Values are general.file_type ids.
enum class SynthType : uint32_t { f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 7, q4_k_m = 15 };

std::string_view synth_arch_name(SynthArch arch);
std::string_view synth_type_name(SynthType type);
// Name -> value; SynthError listing the valid names otherwise.
SynthArch parse_synth_arch(std::string_view name);
SynthType parse_synth_type(std::string_view name);
const ModelShape& parse_model_shape(std::string_view name);

struct SynthOptions {
    SynthArch arch = SynthArch::llama;
    ModelShape shape;  // usually from model_shapes(); any consistent shape works
    SynthType type = SynthType::q8_0;
    std::filesystem::path vocab;  // GGUF whose tokenizer.* keys are copied
    uint64_t seed = 0;
    unsigned threads = 0;  // 0: std::thread::hardware_concurrency(); the bytes do not depend on it
};

// How a tensor's values are drawn.
enum class TensorInit {
    norm,        // 1 + N(0, 0.02)
    bias,        // N(0, 0.02)
    matrix,      // N(0, 1/sqrt(ne[0])): unit-variance inputs give unit-variance outputs
    rope_freqs,  // Llama-3 frequency divisors, not random
};

struct PlannedTensor {
    std::string name;
    TensorType type;
    std::vector<uint64_t> ne;  // GGUF order
    TensorInit init;
};

// Every tensor of the model, in file order, for options.shape as given (vocab included).
// Throws SynthError for an inconsistent shape.
std::vector<PlannedTensor> plan_tensors(const SynthOptions& options);

// The type a matrix of row length `row` gets when `wanted` does not fit it:
// Q4_K -> Q5_0, Q6_K -> Q8_0 (row not a multiple of 256), 32-element types -> F16 (row not a multiple of 32).
TensorType fit_row(TensorType wanted, uint64_t row);

struct SynthModel {
    Writer writer;              // producers generate the weights at write time; needs nothing else alive
    uint32_t n_vocab = 0;       // the model's vocabulary (tokenizer padded up to it, or the tokenizer's size)
    bool vocab_raised = false;  // the tokenizer had more tokens than options.shape.vocab
    std::vector<PlannedTensor> tensors;
};

// Reads the vocab file and builds the writer; nothing is generated until writer.write().
SynthModel synthesize(const SynthOptions& options);

}  // namespace loom::gguf
