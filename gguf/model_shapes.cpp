// The shape table (from each model's published config) and the Llama-3 RoPE frequency divisors.
#include "gguf/model_shapes.h"

#include <cmath>
#include <numbers>

namespace loom::gguf {

const std::vector<ModelShape>& model_shapes() {
    static const std::vector<ModelShape> shapes = [] {
        // name, vocab, embd, layers, heads, kv heads, ffn, context, rope base, rms eps, tied
        std::vector<ModelShape> s = {
            {"stories260k", 512, 64, 5, 8, 4, 172, 2048, 10000.0f, 1e-5f, true, {}},
            {"smollm2-135m", 49152, 576, 30, 9, 3, 1536, 8192, 100000.0f, 1e-5f, true, {}},
            {"qwen2.5-0.5b", 151936, 896, 24, 14, 2, 4864, 32768, 1e6f, 1e-6f, true, {}},
            {"qwen2.5-1.5b", 151936, 1536, 28, 12, 2, 8960, 32768, 1e6f, 1e-6f, true, {}},
            {"llama3.2-1b", 128256, 2048, 16, 32, 8, 8192, 131072, 500000.0f, 1e-5f, true,
             Llama3RopeScaling{32.0f, 1.0f, 4.0f, 8192}},
            {"llama3-8b", 128256, 4096, 32, 32, 8, 14336, 8192, 500000.0f, 1e-5f, false, {}},
            {"qwen2.5-7b", 152064, 3584, 28, 28, 4, 18944, 32768, 1e6f, 1e-6f, false, {}},
        };
        return s;
    }();
    return shapes;
}

const ModelShape* find_model_shape(std::string_view name) {
    for (const auto& s : model_shapes())
        if (s.name == name) return &s;
    return nullptr;
}

std::string model_shape_names() {
    std::string out;
    for (const auto& s : model_shapes()) out += (out.empty() ? "" : ", ") + s.name;
    return out;
}

std::vector<float> llama3_rope_freq_divisors(uint32_t head_dim, float rope_base, const Llama3RopeScaling& s) {
    const double low_wavelen = s.original_context / double(s.low_freq_factor);    // longer: fully scaled
    const double high_wavelen = s.original_context / double(s.high_freq_factor);  // shorter: unscaled
    std::vector<float> out(head_dim / 2);
    for (uint32_t i = 0; i < out.size(); ++i) {
        const double freq = std::pow(double(rope_base), -2.0 * i / head_dim);
        const double wavelen = 2.0 * std::numbers::pi / freq;
        double divisor;
        if (wavelen < high_wavelen) {
            divisor = 1.0;
        } else if (wavelen > low_wavelen) {
            divisor = s.factor;
        } else {
            const double smooth =
                (s.original_context / wavelen - s.low_freq_factor) / (double(s.high_freq_factor) - s.low_freq_factor);
            divisor = 1.0 / ((1.0 - smooth) / s.factor + smooth);
        }
        out[i] = static_cast<float>(divisor);
    }
    return out;
}

}  // namespace loom::gguf
