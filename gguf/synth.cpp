// Synthetic models: the tensor plan, seeded per-row weight generation (parallel, thread-count
// independent), metadata, and the tokenizer copied from a vocab GGUF and padded to the model's vocab.
#include "gguf/synth.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <span>
#include <thread>

#include "gguf/quantize.h"
#include "gguf/reader.h"

namespace loom::gguf {
namespace {

constexpr float kNormStd = 0.02f;
constexpr uint32_t kTokenTypeUnused = 5;
constexpr uint64_t kElemsPerTask = 1 << 16;  // rows are handed to threads in chunks of about this many values

// ---- Random numbers: splitmix64 seeds xoshiro256**, one generator per (seed, tensor, row). ----

uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t combine(uint64_t a, uint64_t b) { return mix64(a ^ mix64(b + 0x9e3779b97f4a7c15ull)); }

uint64_t fnv1a(std::string_view s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    return h;
}

class Xoshiro256 {
public:
    explicit Xoshiro256(uint64_t seed) {
        for (auto& w : s_) {
            seed += 0x9e3779b97f4a7c15ull;
            w = mix64(seed);
        }
    }
    uint64_t next() {
        const uint64_t result = std::rotl(s_[1] * 5, 7) * 9;
        const uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = std::rotl(s_[3], 45);
        return result;
    }

private:
    uint64_t s_[4];
};

// The weights must be the same bytes on every machine, so the normal generator below uses only
// + - * / sqrt and bit operations (IEEE-exact everywhere; gguf/CMakeLists.txt builds this file with
// -ffp-contract=off) instead of libm's log/sin/cos. Float, so that it vectorizes (-fno-math-errno).

// ln(x) for normal x > 0, to about 1 ulp: x = m * 2^e with m in [sqrt(1/2), sqrt(2)),
// ln(m) = 2 atanh(t), t = (m-1)/(m+1), |t| <= 0.172.
inline float portable_log(float x) {
    // Integer selects only, so that the loop using it vectorizes.
    const uint32_t bits = std::bit_cast<uint32_t>(x), mant = bits & 0x7fffffu;
    const uint32_t high = mant > 0x3504f3u ? 1 : 0;  // mantissa of sqrt(2)
    const float m = std::bit_cast<float>(mant | (high ? 0x3f000000u : 0x3f800000u));
    const float e = static_cast<float>(static_cast<int32_t>(bits >> 23) - 127 + static_cast<int32_t>(high));
    const float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
    const float series = 1.0f + t2 * (1.0f / 3 + t2 * (1.0f / 5 + t2 * (1.0f / 7 + t2 * (1.0f / 9))));
    return e * 0.693147181f + 2.0f * t * series;
}

// sin and cos of x in [-pi, pi] by their Taylor series to x^15 / x^16 (truncation below 1e-6).
inline float portable_sin(float x) {
    const float x2 = x * x;
    float p = 1.0f - x2 * (1.0f / 210);
    p = 1.0f - x2 * (1.0f / 156) * p;
    p = 1.0f - x2 * (1.0f / 110) * p;
    p = 1.0f - x2 * (1.0f / 72) * p;
    p = 1.0f - x2 * (1.0f / 42) * p;
    p = 1.0f - x2 * (1.0f / 20) * p;
    p = 1.0f - x2 * (1.0f / 6) * p;
    return x * p;
}

inline float portable_cos(float x) {
    const float x2 = x * x;
    float p = 1.0f - x2 * (1.0f / 240);
    p = 1.0f - x2 * (1.0f / 182) * p;
    p = 1.0f - x2 * (1.0f / 132) * p;
    p = 1.0f - x2 * (1.0f / 90) * p;
    p = 1.0f - x2 * (1.0f / 56) * p;
    p = 1.0f - x2 * (1.0f / 30) * p;
    p = 1.0f - x2 * (1.0f / 12) * p;
    return 1.0f - x2 * 0.5f * p;
}

// out[0, 2*half) = mean + stddev * N(0, 1), by Box-Muller: one 64-bit draw gives two 24-bit uniforms,
// and the pair (r cos, r sin) lands in out[i] and out[half + i]. `u` is scratch of 2*half floats.
void fill_normal(Xoshiro256& rng, float* out, float* u, uint64_t half, float mean, float stddev) {
    constexpr float k24 = 0x1p-24f;
    for (uint64_t i = 0; i < half; ++i) {
        const uint64_t r = rng.next();
        u[i] = (static_cast<float>(r >> 40) + 0.5f) * k24;                     // (0, 1): the log's argument
        u[half + i] = static_cast<float>((r >> 16) & 0xffffffu) * k24 - 0.5f;  // [-1/2, 1/2): the angle / 2pi
    }
    constexpr float k2pi = 6.28318531f;
    for (uint64_t i = 0; i < half; ++i) {
        const float radius = std::sqrt(-2.0f * portable_log(u[i])) * stddev;
        const float angle = u[half + i] * k2pi;
        out[i] = mean + radius * portable_cos(angle);
        out[half + i] = mean + radius * portable_sin(angle);
    }
}

// ---- Tensor production ----

// Runs body(first_row, end_row) over [0, rows) on up to `threads` threads; the first exception wins.
template <typename Body>
void parallel_rows(uint64_t rows, uint64_t chunk, unsigned threads, const Body& body) {
    const uint64_t n_chunks = (rows + chunk - 1) / chunk;
    const unsigned n_threads = static_cast<unsigned>(std::min<uint64_t>(threads, n_chunks));
    std::atomic<uint64_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    const auto work = [&] {
        try {
            for (uint64_t c; (c = next.fetch_add(1)) < n_chunks;) body(c * chunk, std::min(rows, (c + 1) * chunk));
        } catch (...) {
            std::lock_guard lock(error_mutex);
            if (!error) error = std::current_exception();
            next = n_chunks;
        }
    };
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < n_threads; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    if (error) std::rethrow_exception(error);
}

// Fills `out` with the tensor's values: row r of tensor `name` comes from its own generator seeded
// by (seed, name, r), so neither the thread count nor the other tensors change it.
void produce(const PlannedTensor& t, uint64_t seed, unsigned threads, std::span<uint8_t> out,
             const std::vector<float>& rope_freqs) {
    const uint64_t row = t.ne[0];
    uint64_t rows = 1;
    for (size_t d = 1; d < t.ne.size(); ++d) rows *= t.ne[d];
    const uint64_t row_bytes = tensor_bytes(t.type, row);
    if (out.size() != rows * row_bytes)
        throw SynthError("tensor " + t.name + ": writer gave " + std::to_string(out.size()) + " bytes, expected " +
                         std::to_string(rows * row_bytes));

    if (t.init == TensorInit::rope_freqs) {
        quantize(t.type, rope_freqs.data(), out.data(), row);
        return;
    }
    float mean = 0.0f, stddev = kNormStd;
    if (t.init == TensorInit::norm) mean = 1.0f;
    if (t.init == TensorInit::matrix) stddev = static_cast<float>(1.0 / std::sqrt(double(row)));

    const uint64_t tensor_seed = combine(seed, fnv1a(t.name));
    const uint64_t chunk = std::max<uint64_t>(1, kElemsPerTask / row);
    const uint64_t half = (row + 1) / 2;
    parallel_rows(rows, chunk, threads, [&](uint64_t first, uint64_t end) {
        std::vector<float> values(2 * half), scratch(2 * half);
        for (uint64_t r = first; r < end; ++r) {
            Xoshiro256 rng(combine(tensor_seed, r));
            fill_normal(rng, values.data(), scratch.data(), half, mean, stddev);
            quantize(t.type, values.data(), out.data() + r * row_bytes, row);
        }
    });
}

// ---- Plan ----

uint32_t block_elems(TensorType type) { return tensor_type_info(type).block_elems; }

// The customary Q4_K_M "more bits" layers: the first and last eighth, and every third one in between.
bool more_bits_layer(uint32_t i, uint32_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

TensorType base_matrix_type(SynthType type) {
    switch (type) {
        case SynthType::f16: return TensorType::F16;
        case SynthType::q4_0: return TensorType::Q4_0;
        case SynthType::q4_1: return TensorType::Q4_1;
        case SynthType::q8_0: return TensorType::Q8_0;
        case SynthType::q4_k_m: return TensorType::Q4_K;
    }
    throw SynthError("unknown synth type id " + std::to_string(static_cast<uint32_t>(type)));
}

void validate_shape(const ModelShape& s) {
    const auto fail = [&](const std::string& why) { throw SynthError("shape " + s.name + ": " + why); };
    if (!s.vocab || !s.embd || !s.layers || !s.heads || !s.kv_heads || !s.ffn || !s.context)
        fail("vocab, embd, layers, heads, kv_heads, ffn and context must all be positive");
    if (s.embd % s.heads != 0)
        fail("embd " + std::to_string(s.embd) + " is not a multiple of heads " + std::to_string(s.heads));
    if (s.heads % s.kv_heads != 0)
        fail("heads " + std::to_string(s.heads) + " is not a multiple of kv_heads " + std::to_string(s.kv_heads));
    if (s.head_dim() % 2 != 0) fail("head_dim " + std::to_string(s.head_dim()) + " must be even for RoPE");
    if (!(s.rope_base > 0.0f) || !(s.rms_eps > 0.0f)) fail("rope_base and rms_eps must be positive");
    if (s.rope_scaling) {
        const auto& r = *s.rope_scaling;
        if (!(r.factor > 0.0f) || !(r.low_freq_factor > 0.0f) || !(r.high_freq_factor > r.low_freq_factor) ||
            r.original_context == 0)
            fail("rope scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor, original context > 0");
    }
}

void validate(const SynthOptions& o) {
    validate_shape(o.shape);
    base_matrix_type(o.type);  // throws for an id outside SynthType
    if (o.arch != SynthArch::llama && o.arch != SynthArch::qwen2)
        throw SynthError("unknown architecture id " + std::to_string(static_cast<int>(o.arch)));
}

// ---- Tokenizer ----

// Appends `count` copies of `value` to a packed numeric array, in its element type.
void append_packed(Array& a, const std::string& key, double value, size_t count) {
    uint8_t elem[8] = {};
    switch (a.elem_type) {
        case ValueType::FLOAT32: {
            const float f = static_cast<float>(value);
            std::memcpy(elem, &f, 4);
            break;
        }
        case ValueType::FLOAT64: std::memcpy(elem, &value, 8); break;
        case ValueType::UINT8:
        case ValueType::INT8:
        case ValueType::UINT16:
        case ValueType::INT16:
        case ValueType::UINT32:
        case ValueType::INT32:
        case ValueType::UINT64:
        case ValueType::INT64: {
            const int64_t i = static_cast<int64_t>(value);
            std::memcpy(elem, &i, 8);  // little-endian: the low bytes are the narrower encodings
            break;
        }
        default: throw SynthError(key + ": cannot pad an array of " + std::string(value_type_name(a.elem_type)));
    }
    const size_t w = value_type_size(a.elem_type);
    for (size_t i = 0; i < count; ++i) a.packed.insert(a.packed.end(), elem, elem + w);
}

struct Tokenizer {
    std::vector<std::pair<std::string, Value>> kv;
    uint32_t n_vocab = 0;
    bool raised = false;
};

// tokenizer.* keys of the vocab file, per-token arrays padded up to the shape's vocab.
Tokenizer read_tokenizer(const std::filesystem::path& path, uint32_t shape_vocab) {
    std::optional<File> file;
    try {
        file.emplace(File::open(path));
    } catch (const std::exception& e) {
        throw SynthError("vocab file " + path.string() + ": " + e.what());
    }
    const Value* tokens = file->find("tokenizer.ggml.tokens");
    if (!tokens || tokens->type() != ValueType::ARRAY || tokens->as_array().elem_type != ValueType::STRING)
        throw SynthError("vocab file " + path.string() + " has no tokenizer.ggml.tokens string array");
    const size_t n_tokens = tokens->as_array().size();
    if (n_tokens == 0 || n_tokens > UINT32_MAX)
        throw SynthError("vocab file " + path.string() + ": " + std::to_string(n_tokens) + " tokens");

    Tokenizer tok;
    tok.raised = n_tokens > shape_vocab;
    tok.n_vocab = tok.raised ? static_cast<uint32_t>(n_tokens) : shape_vocab;
    const size_t pad = tok.n_vocab - n_tokens;
    for (const auto& [key, value] : file->metadata()) {
        if (!key.starts_with("tokenizer.")) continue;
        const bool per_token =
            key == "tokenizer.ggml.tokens" || key == "tokenizer.ggml.token_type" || key == "tokenizer.ggml.scores";
        if (!per_token || pad == 0) {
            tok.kv.emplace_back(key, value);
            continue;
        }
        Array a = value.as_array(key);
        if (a.size() != n_tokens)
            throw SynthError("vocab file " + path.string() + ": " + key + " has " + std::to_string(a.size()) +
                             " entries for " + std::to_string(n_tokens) + " tokens");
        if (key == "tokenizer.ggml.tokens") {
            for (size_t id = n_tokens; id < tok.n_vocab; ++id) a.strings.push_back("[PAD" + std::to_string(id) + "]");
        } else {
            append_packed(a, key, key == "tokenizer.ggml.token_type" ? kTokenTypeUnused : 0.0, pad);
        }
        tok.kv.emplace_back(key, Value::array(std::move(a)));
    }
    return tok;
}

}  // namespace

std::string_view synth_arch_name(SynthArch arch) { return arch == SynthArch::qwen2 ? "qwen2" : "llama"; }

std::string_view synth_type_name(SynthType type) {
    switch (type) {
        case SynthType::f16: return "f16";
        case SynthType::q4_0: return "q4_0";
        case SynthType::q4_1: return "q4_1";
        case SynthType::q8_0: return "q8_0";
        case SynthType::q4_k_m: return "q4_k_m";
    }
    return "?";
}

SynthArch parse_synth_arch(std::string_view name) {
    for (SynthArch a : {SynthArch::llama, SynthArch::qwen2})
        if (synth_arch_name(a) == name) return a;
    throw SynthError("unknown architecture '" + std::string(name) + "' (valid: llama, qwen2)");
}

SynthType parse_synth_type(std::string_view name) {
    for (SynthType t : {SynthType::q4_0, SynthType::q4_1, SynthType::q8_0, SynthType::f16, SynthType::q4_k_m})
        if (synth_type_name(t) == name) return t;
    throw SynthError("unknown type '" + std::string(name) + "' (valid: q4_0, q4_1, q8_0, f16, q4_k_m)");
}

const ModelShape& parse_model_shape(std::string_view name) {
    if (const ModelShape* s = find_model_shape(name)) return *s;
    throw SynthError("unknown shape '" + std::string(name) + "' (valid: " + model_shape_names() + ")");
}

TensorType fit_row(TensorType wanted, uint64_t row) {
    if (row % block_elems(wanted) == 0) return wanted;
    switch (wanted) {
        case TensorType::Q4_K: return fit_row(TensorType::Q5_0, row);
        case TensorType::Q6_K: return fit_row(TensorType::Q8_0, row);
        default: return TensorType::F16;
    }
}

std::vector<PlannedTensor> plan_tensors(const SynthOptions& o) {
    validate(o);
    const ModelShape& s = o.shape;
    const uint64_t embd = s.embd, hd = s.head_dim(), q_dim = s.heads * hd, kv_dim = s.kv_heads * hd;
    const TensorType base = base_matrix_type(o.type);
    const bool k_mix = o.type == SynthType::q4_k_m;

    std::vector<PlannedTensor> plan;
    const auto vec = [&](std::string name, uint64_t n, TensorInit init) {
        plan.push_back({std::move(name), TensorType::F32, {n}, init});
    };
    const auto mat = [&](std::string name, uint64_t in, uint64_t out, bool more_bits) {
        // W (out, in) @ x (in) -> (out): ne = {in, out}
        const TensorType wanted = k_mix && more_bits ? TensorType::Q6_K : base;
        plan.push_back({std::move(name), fit_row(wanted, in), {in, out}, TensorInit::matrix});
    };

    mat("token_embd.weight", embd, s.vocab, false);
    vec("output_norm.weight", embd, TensorInit::norm);
    if (!s.tied_embeddings) mat("output.weight", embd, s.vocab, true);
    if (s.rope_scaling) vec("rope_freqs.weight", hd / 2, TensorInit::rope_freqs);
    for (uint32_t i = 0; i < s.layers; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        const bool more = more_bits_layer(i, s.layers);
        vec(p + "attn_norm.weight", embd, TensorInit::norm);
        mat(p + "attn_q.weight", embd, q_dim, false);
        if (o.arch == SynthArch::qwen2) vec(p + "attn_q.bias", q_dim, TensorInit::bias);
        mat(p + "attn_k.weight", embd, kv_dim, false);
        if (o.arch == SynthArch::qwen2) vec(p + "attn_k.bias", kv_dim, TensorInit::bias);
        mat(p + "attn_v.weight", embd, kv_dim, more);
        if (o.arch == SynthArch::qwen2) vec(p + "attn_v.bias", kv_dim, TensorInit::bias);
        mat(p + "attn_output.weight", q_dim, embd, false);
        vec(p + "ffn_norm.weight", embd, TensorInit::norm);
        mat(p + "ffn_gate.weight", embd, s.ffn, false);
        mat(p + "ffn_up.weight", embd, s.ffn, false);
        mat(p + "ffn_down.weight", s.ffn, embd, more);
    }
    return plan;
}

SynthModel synthesize(const SynthOptions& options) {
    validate(options);  // before the vocab file is read
    Tokenizer tok = read_tokenizer(options.vocab, options.shape.vocab);
    SynthOptions o = options;
    o.shape.vocab = tok.n_vocab;

    SynthModel model;
    model.n_vocab = tok.n_vocab;
    model.vocab_raised = tok.raised;
    model.tensors = plan_tensors(o);

    const ModelShape& s = o.shape;
    const std::string arch(synth_arch_name(o.arch));
    Writer& w = model.writer;
    w.set("general.architecture", Value::string(arch));
    w.set("general.name", Value::string("loom-synth " + s.name + " " + std::string(synth_type_name(o.type)) + " seed " +
                                        std::to_string(o.seed)));
    w.set("general.file_type", Value::u32(static_cast<uint32_t>(o.type)));
    w.set("general.quantization_version", Value::u32(2));
    const auto key = [&](const char* suffix) { return arch + "." + suffix; };
    w.set(key("context_length"), Value::u32(s.context));
    w.set(key("embedding_length"), Value::u32(s.embd));
    w.set(key("block_count"), Value::u32(s.layers));
    w.set(key("feed_forward_length"), Value::u32(s.ffn));
    w.set(key("attention.head_count"), Value::u32(s.heads));
    w.set(key("attention.head_count_kv"), Value::u32(s.kv_heads));
    w.set(key("rope.dimension_count"), Value::u32(s.head_dim()));
    w.set(key("rope.freq_base"), Value::f32(s.rope_base));
    w.set(key("attention.layer_norm_rms_epsilon"), Value::f32(s.rms_eps));
    w.set(key("vocab_size"), Value::u32(s.vocab));
    std::vector<float> rope_freqs;
    if (s.rope_scaling) {
        const auto& r = *s.rope_scaling;
        w.set(key("rope.scaling.type"), Value::string("llama3"));
        w.set(key("rope.scaling.factor"), Value::f32(r.factor));
        w.set(key("rope.scaling.low_freq_factor"), Value::f32(r.low_freq_factor));
        w.set(key("rope.scaling.high_freq_factor"), Value::f32(r.high_freq_factor));
        w.set(key("rope.scaling.original_context_length"), Value::u32(r.original_context));
        rope_freqs = llama3_rope_freq_divisors(s.head_dim(), s.rope_base, r);
    }
    for (auto& [k, v] : tok.kv) w.set(k, std::move(v));

    const unsigned threads = o.threads ? o.threads : std::max(1u, std::thread::hardware_concurrency());
    for (const auto& t : model.tensors)
        w.add_tensor(t.name, t.type, t.ne, [t, seed = o.seed, threads, rope_freqs](std::span<uint8_t> out) {
            produce(t, seed, threads, out, rope_freqs);
        });
    return model;
}

}  // namespace loom::gguf
