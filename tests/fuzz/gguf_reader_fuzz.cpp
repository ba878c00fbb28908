// libFuzzer target: any byte string either parses into a consistent File or raises gguf::Error;
// nothing else (no crash, no other exception, no sanitizer report) is acceptable.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "gguf/errors.h"
#include "gguf/reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const auto file = loom::gguf::File::parse(std::span<const uint8_t>(data, size));
        for (const auto& [key, value] : file.metadata()) (void)value.type_description();
        for (const auto& t : file.tensors()) {
            const auto bytes = file.tensor_data(t);
            if (bytes.size() != t.n_bytes) std::abort();
            // Dequantize small tensors too: the block decoders must be safe on any bits.
            if (t.n_elems <= (1u << 16)) {
                try {
                    (void)file.dequantize_tensor(t);
                } catch (const loom::gguf::UnsupportedTypeError&) {}
            }
        }
    } catch (const loom::gguf::Error&) {}
    return 0;
}
