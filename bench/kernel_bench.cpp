// CUDA kernel microbenchmarks at real model shapes, against the device's measured copy bandwidth.
// Shapes, inputs and byte counts come from the kernel cases the GPU tests check (tests/kernel_cases).
#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gguf/half.h"
#include "gguf/tensor_type.h"
#include "kernel_cases/argmax_cases.h"
#include "kernel_cases/attention_cases.h"
#include "kernel_cases/bench_shapes.h"
#include "kernel_cases/elementwise_cases.h"
#include "kernel_cases/embedding_cases.h"
#include "kernel_cases/gemm_cases.h"
#include "kernel_cases/inputs.h"
#include "kernel_cases/matvec_cases.h"
#include "kernel_cases/rmsnorm_cases.h"
#include "kernel_cases/rope_cases.h"
#include "kernel_cases/sampling_cases.h"
#include "kernels/argmax.h"
#include "kernels/attention.h"
#include "kernels/q8_matmul.h"
#include "kernels/cuda_check.h"
#include "kernels/device_info.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/kv_cache.h"
#include "kernels/matvec.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/sampling.h"
#include "kernels/split.h"

using namespace loom;
using gguf::TensorType;

namespace {

// ---- Device state shared by every benchmark ----

struct Device {
    cudaStream_t stream = nullptr;
    cudaEvent_t start = nullptr, stop = nullptr;
    uint64_t l2_bytes = 0;
    double copy_gbps = 0;  // measured device-to-device copy bandwidth, read + write bytes
};
Device g_dev;

// Reads from DRAM are what decode is bound by, so data a forward pass streams from DRAM (weights,
// embedding tables, the KV cache) is replicated until the copies span this many times the L2;
// launches cycle through them, so each finds its data evicted.
constexpr uint64_t kColdSpanL2 = 4;
constexpr int kMaxCopies = 1024;
constexpr double kTargetIterationSeconds = 1e-3;  // launches per timed graph replay aim at this
constexpr int kIterations = 10;

class DeviceMem {
public:
    explicit DeviceMem(uint64_t bytes) : bytes_(bytes) {
        LOOM_CUDA_CHECK(cudaMalloc(&p_, std::max<uint64_t>(bytes, 1)));
    }
    ~DeviceMem() { cudaFree(p_); }
    DeviceMem(const DeviceMem&) = delete;
    DeviceMem& operator=(const DeviceMem&) = delete;
    template <class T = uint8_t>
    T* as() const {
        return static_cast<T*>(p_);
    }
    uint64_t bytes() const { return bytes_; }

private:
    void* p_ = nullptr;
    uint64_t bytes_;
};

float elapsed_seconds() {
    float ms = 0;
    LOOM_CUDA_CHECK(cudaEventElapsedTime(&ms, g_dev.start, g_dev.stop));
    return ms * 1e-3f;
}

// ---- Inputs ----

template <class T>
void upload(T* dst, const std::vector<T>& host) {
    LOOM_CUDA_CHECK(cudaMemcpy(dst, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
}

// dst (total bytes) = `tile` repeated (the last copy cut short): the tile is uploaded once and
// doubled on the device, so gigabyte tensors cost no host work.
void fill_repeating(uint8_t* dst, uint64_t total, const std::vector<uint8_t>& tile) {
    const uint64_t first = std::min<uint64_t>(total, tile.size());
    LOOM_CUDA_CHECK(cudaMemcpy(dst, tile.data(), first, cudaMemcpyHostToDevice));
    for (uint64_t filled = first; filled < total;) {
        const uint64_t n = std::min(filled, total - filled);
        LOOM_CUDA_CHECK(cudaMemcpy(dst + filled, dst, n, cudaMemcpyDeviceToDevice));
        filled += n;
    }
}

// Whole rows of n_in random N(0, 1/sqrt(n_in)) weights quantized to `type` (about 256K elements),
// cached per (type, n_in): weight tensors are these rows repeated.
const std::vector<uint8_t>& quantized_tile(TensorType type, int n_in) {
    static std::map<std::pair<TensorType, int>, std::vector<uint8_t>> cache;
    auto [it, fresh] = cache.try_emplace({type, n_in});
    if (fresh) {
        const int rows = std::max(1, (1 << 18) / n_in);
        it->second = kcases::random_matrix(type, rows, n_in,
                                           17u + static_cast<uint32_t>(type) * 7919u + static_cast<uint32_t>(n_in),
                                           1.f / std::sqrt(static_cast<float>(n_in)))
                         .bytes;
    }
    return it->second;
}

std::vector<uint8_t> random_half_tile(uint64_t n, uint32_t seed) {
    const auto f = kcases::random_normal(n, seed, 0.f, 1.f);
    std::vector<uint8_t> bytes(2 * n);
    for (uint64_t i = 0; i < n; ++i) {
        const uint16_t h = gguf::float_to_half(f[i]);
        bytes[2 * i] = static_cast<uint8_t>(h & 0xFF);
        bytes[2 * i + 1] = static_cast<uint8_t>(h >> 8);
    }
    return bytes;
}

uint64_t round_up(uint64_t n, uint64_t to) { return (n + to - 1) / to * to; }

// How many copies of `bytes` make the cold span (at least 1, at most kMaxCopies).
int cold_copies(uint64_t bytes) {
    const uint64_t span = kColdSpanL2 * g_dev.l2_bytes;
    return static_cast<int>(std::clamp<uint64_t>((span + bytes - 1) / std::max<uint64_t>(bytes, 1), 1, kMaxCopies));
}

// `copies` copies of a weight matrix (n_rows rows of n_in in `type`), 256 bytes apart.
struct Weights {
    uint64_t bytes = 0, stride = 0;
    int copies = 1;
    DeviceMem mem;
    Weights(TensorType type, int n_in, int64_t n_rows, int copies_)
        : bytes(gguf::tensor_bytes(type, static_cast<uint64_t>(n_in) * n_rows)),
          stride(round_up(bytes, 256)),
          copies(copies_),
          mem(stride * copies_) {
        fill_repeating(mem.as(), bytes, quantized_tile(type, n_in));
        for (int c = 1; c < copies; ++c)
            LOOM_CUDA_CHECK(cudaMemcpy(mem.as() + c * stride, mem.as(), bytes, cudaMemcpyDeviceToDevice));
    }
    const void* copy(int c) const { return mem.as() + static_cast<uint64_t>(c) * stride; }
};

// `copies` copies of a weight matrix repacked for the q8 products (kernels/q8_matmul.h): repacked on the
// device from Weights' GGUF rows, 256 bytes apart.
struct RepackedWeights {
    kernels::Q8Layout layout;
    uint64_t stride = 0;
    int copies = 1;
    DeviceMem mem;
    RepackedWeights(TensorType type, int n_in, int n_rows, int copies_)
        : layout(kernels::q8_layout(type, n_rows, n_in)),
          stride(round_up(layout.bytes, 256)),
          copies(copies_),
          mem(stride * copies_) {
        const Weights rows(type, n_in, n_rows, 1);
        kernels::q8_repack_device(type, rows.copy(0), n_rows, n_in, mem.as(), g_dev.stream);
        LOOM_CUDA_CHECK(cudaStreamSynchronize(g_dev.stream));
        for (int c = 1; c < copies; ++c)
            LOOM_CUDA_CHECK(cudaMemcpy(mem.as() + c * stride, mem.as(), layout.bytes, cudaMemcpyDeviceToDevice));
    }
    kernels::Q8Matrix copy(int c) const { return {layout, mem.as() + static_cast<uint64_t>(c) * stride}; }
};

// ---- Timing ----

// One benchmark: `launch(c)` enqueues the kernel on the stream reading cold copy c (0 .. copies-1);
// `bytes` is what one launch must move between the SMs and memory; `flops` its arithmetic (0 where
// bandwidth alone matters).
struct Case {
    double bytes = 0, flops = 0;
    int copies = 1;
    std::function<void(int)> launch;
};

// Captures `n` launches (cycling through the copies) into a CUDA graph, so the timing sees the
// kernels back to back rather than the host's launch rate.
cudaGraphExec_t capture(const Case& c, int n) {
    cudaGraph_t graph = nullptr;
    LOOM_CUDA_CHECK(cudaStreamBeginCapture(g_dev.stream, cudaStreamCaptureModeThreadLocal));
    try {
        for (int i = 0; i < n; ++i) c.launch(i % c.copies);
    } catch (...) {
        cudaStreamEndCapture(g_dev.stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        throw;
    }
    LOOM_CUDA_CHECK(cudaStreamEndCapture(g_dev.stream, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t rc = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    LOOM_CUDA_CHECK(rc);
    return exec;
}

// Times the case: a warm-up pass over the copies estimates one launch, then each iteration replays
// a graph of enough launches (every copy at least once) and reports the time per launch.
void run_case(benchmark::State& state, const Case& c) {
    const int warm = std::min(c.copies, 64);
    c.launch(0);
    LOOM_CUDA_CHECK(cudaEventRecord(g_dev.start, g_dev.stream));
    for (int i = 0; i < warm; ++i) c.launch(i);
    LOOM_CUDA_CHECK(cudaEventRecord(g_dev.stop, g_dev.stream));
    LOOM_CUDA_CHECK(cudaEventSynchronize(g_dev.stop));
    const double estimate = std::max(1e-7, static_cast<double>(elapsed_seconds()) / warm);
    const int n = std::max(c.copies, static_cast<int>(std::clamp(kTargetIterationSeconds / estimate, 1.0, 2048.0)));

    cudaGraphExec_t exec = capture(c, n);
    double total = 0;
    try {
        LOOM_CUDA_CHECK(cudaGraphLaunch(exec, g_dev.stream));  // warm-up replay
        for (auto _ : state) {
            LOOM_CUDA_CHECK(cudaEventRecord(g_dev.start, g_dev.stream));
            LOOM_CUDA_CHECK(cudaGraphLaunch(exec, g_dev.stream));
            LOOM_CUDA_CHECK(cudaEventRecord(g_dev.stop, g_dev.stream));
            LOOM_CUDA_CHECK(cudaEventSynchronize(g_dev.stop));
            const double per_launch = elapsed_seconds() / n;
            state.SetIterationTime(per_launch);
            total += per_launch;
        }
    } catch (...) {
        cudaGraphExecDestroy(exec);
        throw;
    }
    cudaGraphExecDestroy(exec);
    const double gbps = c.bytes * static_cast<double>(state.iterations()) / total / 1e9;
    state.counters["bytes"] = benchmark::Counter(c.bytes);
    state.counters["GB/s"] = benchmark::Counter(gbps);
    state.counters["frac_copy"] = benchmark::Counter(gbps / g_dev.copy_gbps);
    if (c.flops > 0)
        state.counters["TFLOP/s"] =
            benchmark::Counter(c.flops * static_cast<double>(state.iterations()) / total / 1e12);
}

// Registers `name`: make() builds the inputs and returns the case (inputs are freed when it ends).
template <class Make>
void add(const std::string& name, const std::string& label, Make make) {
    benchmark::RegisterBenchmark(name.c_str(),
                                 [make, label](benchmark::State& state) {
                                     try {
                                         const Case c = make();
                                         state.SetLabel(label);
                                         run_case(state, c);
                                     } catch (const std::exception& e) {
                                         state.SkipWithError(e.what());
                                     }
                                 })
        ->UseManualTime()
        ->Iterations(kIterations)
        ->Unit(benchmark::kMicrosecond);
}

// ---- Models ----

using Model = kcases::BenchModel;

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return out;
}

std::string dims(int64_t a, int64_t b) { return std::to_string(a) + "x" + std::to_string(b); }

// Buffers are shared with the launch closures, which keep them alive as long as the case.
using Mem = std::shared_ptr<DeviceMem>;

Mem device_floats(const std::vector<float>& host) {
    auto mem = std::make_shared<DeviceMem>(host.size() * sizeof(float));
    upload(mem->as<float>(), host);
    return mem;
}

// Device floats filled with N(mean, stddev) values (never zeros: the kernels see real data).
Mem device_floats(uint64_t n, uint32_t seed, float mean = 0.f, float stddev = 1.f) {
    return device_floats(kcases::random_normal(n, seed, mean, stddev));
}

template <class T>
Mem device_array(const std::vector<T>& v) {
    const Mem mem = std::make_shared<DeviceMem>(v.size() * sizeof(T));
    upload(mem->as<T>(), v);
    return mem;
}

Mem device_ints(const std::vector<int32_t>& v) { return device_array(v); }

Mem device_scratch(uint64_t bytes) { return std::make_shared<DeviceMem>(bytes); }

// ---- Benchmarks per kernel ----

void add_matvec(const Model& m) {
    for (const auto& named : kcases::matvec_bench_cases(m)) {
        const kcases::MatvecCase mc = named.c;
        add("matvec/" + m.name + "/" + named.label, dims(mc.n_out, mc.n_in), [mc] {
            const uint64_t w_bytes = gguf::tensor_bytes(mc.type, static_cast<uint64_t>(mc.n_in) * mc.n_out);
            auto w = std::make_shared<Weights>(mc.type, mc.n_in, mc.n_out, cold_copies(w_bytes));
            auto x = device_floats(kcases::matvec_vectors(mc));
            auto y = device_scratch(static_cast<uint64_t>(mc.n_vec) * mc.n_out * 4);
            Case c;
            c.bytes = kcases::matvec_bytes(mc.type, mc.n_in, mc.n_out, mc.n_vec);
            c.copies = w->copies;
            c.launch = [=](int copy) {
                kernels::matvec(mc.type, w->copy(copy), x->as<float>(), y->as<float>(), mc.n_in, mc.n_out, mc.n_vec,
                                g_dev.stream);
            };
            return c;
        });
    }
}

// The decode products the CUDA backend runs on repacked weights (q8_product, automatic: dp4a rows at one
// vector, MMA above) for every synth matrix of a q8 type, at 1, 8 and 32 vectors quantized once; issue 16
// asks one vector to move 8B weights at >= 80 % of the copy bandwidth.
void add_q8_product(const Model& m) {
    for (const auto& mat : kcases::synth_matrices(m)) {
        const int align = kernels::q8::is_k_quant(mat.type) ? 256 : 128;
        if (!kernels::q8_supports(mat.type) || mat.n_in % align != 0) continue;
        std::string type(gguf::tensor_type_name(mat.type));
        std::transform(type.begin(), type.end(), type.begin(), [](unsigned char ch) { return std::tolower(ch); });
        for (const int n_vec : {1, 8, 32})
            add("q8_product/" + m.name + "/" + mat.role + "/" + type + "/nvec:" + std::to_string(n_vec),
                dims(mat.n_out, mat.n_in), [mat, n_vec] {
                    const uint64_t layout_bytes = kernels::q8_layout(mat.type, mat.n_out, mat.n_in).bytes;
                    auto w =
                        std::make_shared<RepackedWeights>(mat.type, mat.n_in, mat.n_out, cold_copies(layout_bytes));
                    const kcases::MatvecCase mc{mat.type, mat.n_out, mat.n_in, n_vec, 3};
                    auto x = device_floats(kcases::matvec_vectors(mc));
                    auto xq = device_scratch(kernels::q8_xq_bytes(n_vec, mat.n_in));
                    auto xm = device_scratch(kernels::q8_xmeta_count(n_vec, mat.n_in) * sizeof(kernels::q8::XMeta));
                    auto y = device_scratch(static_cast<uint64_t>(n_vec) * mat.n_out * 4);
                    kernels::q8_quantize_x(x->as<float>(), xq->as<int8_t>(), xm->as<kernels::q8::XMeta>(), n_vec,
                                           mat.n_in, g_dev.stream);
                    Case c;
                    c.bytes =
                        static_cast<double>(layout_bytes) + static_cast<double>(kernels::q8_xq_bytes(n_vec, mat.n_in)) +
                        8.0 * static_cast<double>(kernels::q8_xmeta_count(n_vec, mat.n_in)) + 4.0 * n_vec * mat.n_out;
                    c.copies = w->copies;
                    c.launch = [=](int copy) {
                        kernels::q8_product(w->copy(copy), xq->as<int8_t>(), xm->as<kernels::q8::XMeta>(),
                                            y->as<float>(), n_vec, kernels::Q8Kernel::automatic, g_dev.stream);
                    };
                    return c;
                });
    }
}

// The decode path's fused forms at batch 1 and 32: normed products read x ⊙ w and square sums
// (made once by norm_inputs), the gate matrix stands in for the pair-layout gate/up product, and
// residual products add into R and write the next norm's inputs.
void add_fused_matvec(const Model& m) {
    const float eps = m.shape.rms_eps;
    for (const auto& named : kcases::fused_matvec_bench_cases(m)) {
        const kcases::MatvecCase mc = named.c;
        const std::string role = named.role;
        const bool residual = role == "o" || role == "down";
        const std::string form = role == "gate" ? "matvec_normed_swiglu"
                                 : residual     ? "matvec_residual"
                                                : "matvec_normed";
        add(form + "/" + m.name + "/" + named.label, dims(mc.n_out, mc.n_in), [=] {
            const int n_in = mc.n_in, n_out = mc.n_out, n_vec = mc.n_vec, n_max = std::max(n_in, n_out);
            const uint64_t w_bytes = gguf::tensor_bytes(mc.type, static_cast<uint64_t>(n_in) * n_out);
            auto w = std::make_shared<Weights>(mc.type, n_in, n_out, cold_copies(w_bytes));
            auto x = device_floats(kcases::matvec_vectors(mc));
            auto norm_w = device_floats(static_cast<uint64_t>(n_max), 4, 1.f, 0.02f);
            auto xw = device_scratch(static_cast<uint64_t>(n_vec) * n_in * 4);
            auto sums = device_scratch(static_cast<uint64_t>(n_vec) * kernels::norm_partial_count(n_max) * 4);
            auto r = device_floats(static_cast<uint64_t>(n_vec) * n_out, 5);
            auto rw = device_scratch(static_cast<uint64_t>(n_vec) * n_out * 4);
            kernels::norm_inputs(x->as<float>(), norm_w->as<float>(), xw->as<float>(), sums->as<float>(), n_vec, n_in,
                                 g_dev.stream);
            Case c;
            c.bytes = kcases::fused_matvec_bytes(mc.type, n_in, n_out, n_vec, residual);
            c.copies = w->copies;
            c.launch = [=](int copy) {
                if (role == "gate")
                    kernels::matvec_normed_swiglu(mc.type, w->copy(copy), xw->as<float>(), sums->as<float>(), eps,
                                                  r->as<float>(), n_in, n_out, n_vec, g_dev.stream);
                else if (!residual)
                    kernels::matvec_normed(mc.type, w->copy(copy), xw->as<float>(), sums->as<float>(), eps,
                                           r->as<float>(), n_in, n_out, n_vec, g_dev.stream);
                else
                    kernels::matvec_residual(mc.type, w->copy(copy), x->as<float>(), r->as<float>(),
                                             norm_w->as<float>(), rw->as<float>(), sums->as<float>(), n_in, n_out,
                                             n_vec, g_dev.stream);
            };
            return c;
        });
    }
}

void add_embedding(const Model& m) {
    for (const auto& ec : kcases::embedding_bench_cases(m))
        add("embedding/" + m.name + "/" + lower(gguf::tensor_type_name(ec.type)) +
                "/tokens:" + std::to_string(ec.n_tokens),
            dims(ec.n_vocab, ec.n_embd), [ec] {
                const uint64_t table_bytes =
                    gguf::tensor_bytes(ec.type, static_cast<uint64_t>(ec.n_embd) * static_cast<uint64_t>(ec.n_vocab));
                auto table = std::make_shared<Weights>(ec.type, ec.n_embd, ec.n_vocab, cold_copies(table_bytes));
                auto d_ids = device_ints(kcases::embedding_ids(ec));
                auto out = device_scratch(static_cast<uint64_t>(ec.n_tokens) * ec.n_embd * 4);
                Case c;
                c.bytes = kcases::embedding_bytes(ec.type, ec.n_tokens, ec.n_embd);
                c.copies = table->copies;
                c.launch = [=](int copy) {
                    kernels::embedding_lookup(ec.type, table->copy(copy), ec.n_vocab, ec.n_embd, d_ids->as<int32_t>(),
                                              ec.n_tokens, out->as<float>(), g_dev.stream);
                };
                return c;
            });
}

// A decode residual feeding a q8 product: the epilogue then the normed x quantization, and the two fused
// (one block per vector), at decode batch sizes too: where the fusion pays depends on the vector count.
void add_residual_quantize(const Model& m) {
    const int embd = static_cast<int>(m.shape.embd);
    const float eps = m.shape.rms_eps;
    if (embd % 128 != 0 || embd > kernels::kQ8ResidualMaxN) return;
    for (const int tokens : {1, 8, 32, 512})
        for (const bool fused : {false, true})
            add(std::string("residual_quantize/") + (fused ? "fused" : "split") + "/" + m.name +
                    "/tokens:" + std::to_string(tokens),
                dims(tokens, embd), [=] {
                    const auto in = kcases::rmsnorm_inputs(kcases::rmsnorm_bench_case(m, tokens));
                    const uint64_t count = static_cast<uint64_t>(tokens) * embd;
                    auto r = device_floats(in.x), w = device_floats(in.w), y = device_floats(count, 31);
                    auto xw = device_scratch(count * 4);
                    auto sums = device_scratch(static_cast<uint64_t>(tokens) * kernels::norm_partial_count(embd) * 4);
                    auto xq = device_scratch(kernels::q8_xq_bytes(tokens, embd));
                    auto xm = device_scratch(kernels::q8_xmeta_count(tokens, embd) * sizeof(kernels::q8::XMeta));
                    Case c;
                    c.bytes = 13.0 * count + 4.0 * embd + 8.0 * count / kernels::q8::kUnit;
                    c.launch = [=](int) {
                        auto* q = xq->as<int8_t>();
                        auto* meta = xm->as<kernels::q8::XMeta>();
                        if (fused) {
                            kernels::q8_residual_quantize_normed(r->as<float>(), y->as<float>(), w->as<float>(), eps, q,
                                                                 meta, tokens, embd, g_dev.stream);
                            return;
                        }
                        kernels::residual_norm_inputs(r->as<float>(), y->as<float>(), w->as<float>(), xw->as<float>(),
                                                      sums->as<float>(), tokens, embd, g_dev.stream);
                        kernels::q8_quantize_x_normed(xw->as<float>(), sums->as<float>(), eps, q, meta, tokens, embd,
                                                      g_dev.stream);
                    };
                    return c;
                });
}

// RMSNorm, the fused norm's inputs and RoPE at the model's width and heads.
void add_norms_and_rope(const Model& m) {
    const int embd = static_cast<int>(m.shape.embd), q_dim = m.q_dim();
    const float eps = m.shape.rms_eps;
    for (const int tokens : kcases::kBenchTokens) {
        const std::string suffix = "/" + m.name + "/tokens:" + std::to_string(tokens);
        const kcases::RmsnormCase norm = kcases::rmsnorm_bench_case(m, tokens);
        add("rmsnorm" + suffix, dims(tokens, embd), [=] {
            const auto in = kcases::rmsnorm_inputs(norm);
            auto x = device_floats(in.x);
            auto w = device_floats(in.w);
            auto y = device_scratch(static_cast<uint64_t>(tokens) * embd * 4);
            Case c;
            c.bytes = kcases::rmsnorm_bytes(tokens, embd);
            c.launch = [=](int) {
                kernels::rmsnorm(x->as<float>(), w->as<float>(), y->as<float>(), tokens, embd, eps, g_dev.stream);
            };
            return c;
        });
        add("norm_inputs" + suffix, dims(tokens, embd), [=] {
            const auto in = kcases::rmsnorm_inputs(norm);
            auto x = device_floats(in.x);
            auto w = device_floats(in.w);
            auto xw = device_scratch(static_cast<uint64_t>(tokens) * embd * 4);
            auto sums = device_scratch(static_cast<uint64_t>(tokens) * kernels::norm_partial_count(embd) * 4);
            Case c;
            c.bytes = kcases::norm_inputs_bytes(tokens, embd);
            c.launch = [=](int) {
                kernels::norm_inputs(x->as<float>(), w->as<float>(), xw->as<float>(), sums->as<float>(), tokens, embd,
                                     g_dev.stream);
            };
            return c;
        });
        const kcases::RopeCase rc = kcases::rope_bench_case(m, tokens);
        add("rope" + suffix, dims(tokens, q_dim + m.kv_dim()), [=] {
            const auto in = kcases::rope_inputs(rc);
            auto q = device_floats(in.q), k = device_floats(in.k), d_inv = device_floats(in.inv_freq);
            auto d_pos = device_ints(in.positions);
            const auto style =
                rc.mode == engine::RopeMode::NeoX ? kernels::RopeStyle::NeoX : kernels::RopeStyle::Normal;
            Case c;
            c.bytes = kcases::rope_bytes(tokens, rc.q_dim(), rc.kv_dim(), rc.head_dim);
            c.launch = [=](int) {
                kernels::rope(q->as<float>(), k->as<float>(), tokens, rc.n_head, rc.n_head_kv, rc.head_dim,
                              rc.q_stride(), rc.k_stride(), d_pos->as<int32_t>(), d_inv->as<float>(), style,
                              g_dev.stream);
            };
            return c;
        });
    }
}

void add_elementwise(const Model& m) {
    for (const int tokens : kcases::kBenchTokens) {
        const std::string suffix = "/" + m.name + "/tokens:" + std::to_string(tokens);
        const auto pairs = kcases::swiglu_pairs_bench_case(m, tokens);
        add("swiglu_pairs" + suffix, dims(tokens, pairs.n), [pairs] {
            auto gate_up = device_floats(kcases::swiglu_pairs_inputs(pairs));
            const uint64_t n = static_cast<uint64_t>(pairs.rows) * pairs.n;
            auto out = device_scratch(n * 4);
            Case c;
            c.bytes = kcases::swiglu_bytes(n);
            c.launch = [=](int) {
                kernels::swiglu_pairs(gate_up->as<float>(), pairs.rows, pairs.n, out->as<float>(), g_dev.stream);
            };
            return c;
        });
        const auto sw = kcases::swiglu_bench_case(m, tokens);
        add("swiglu" + suffix, dims(tokens, m.shape.ffn), [sw] {
            const auto in = kcases::swiglu_inputs(sw);
            auto gate = device_floats(in.gate), up = device_floats(in.up);
            auto out = device_scratch(static_cast<uint64_t>(sw.n) * 4);
            Case c;
            c.bytes = kcases::swiglu_bytes(static_cast<uint64_t>(sw.n));
            c.launch = [=](int) {
                kernels::swiglu(gate->as<float>(), up->as<float>(), out->as<float>(), sw.n, g_dev.stream);
            };
            return c;
        });
        const auto ac = kcases::add_bench_case(m, tokens);
        add("add" + suffix, dims(tokens, m.shape.embd), [ac] {
            const auto in = kcases::add_inputs(ac);
            auto a = device_floats(in.a), b = device_floats(in.b);
            Case c;
            c.bytes = kcases::add_bytes(static_cast<uint64_t>(ac.n));
            c.launch = [=](int) {  // in place, as the residual add runs
                float* x = a->as<float>();
                kernels::add(x, b->as<float>(), x, ac.n, g_dev.stream);
            };
            return c;
        });
        const auto bc = kcases::add_bias_bench_case(m, tokens);
        add("add_bias" + suffix, dims(tokens, bc.n), [bc] {
            const auto in = kcases::add_bias_inputs(bc);
            auto x = device_floats(in.x), bias = device_floats(in.bias);
            Case c;
            c.bytes = kcases::add_bias_bytes(bc.rows, bc.n);
            c.launch = [=](int) { kernels::add_bias(x->as<float>(), bias->as<float>(), bc.rows, bc.n, g_dev.stream); };
            return c;
        });
    }
    for (const int n_seq : kcases::kGatherBenchSeqs) {
        const auto gc = kcases::gather_bench_case(m, n_seq);
        const int n = static_cast<int>(gc.rows.size());
        add("gather_rows/" + m.name + "/rows:" + std::to_string(n), dims(gc.src_rows, gc.width), [gc, n] {
            auto src = device_floats(kcases::gather_inputs(gc));
            auto rows = device_ints(gc.rows);
            auto dst = device_scratch(static_cast<uint64_t>(n) * static_cast<uint64_t>(gc.width) * 4);
            Case c;
            c.bytes = kcases::gather_bytes(n, gc.width);
            c.launch = [=](int) {
                kernels::gather_rows(src->as<float>(), gc.width, rows->as<int32_t>(), n, dst->as<float>(),
                                     g_dev.stream);
            };
            return c;
        });
    }
}

void add_argmax(const Model& m) {
    for (const auto& ac : kcases::argmax_bench_cases(m))
        add("argmax/" + m.name + "/rows:" + std::to_string(ac.rows), dims(ac.rows, ac.n), [ac] {
            auto x = device_floats(kcases::argmax_inputs(ac));
            auto out = device_scratch(static_cast<uint64_t>(ac.rows) * 4);
            Case c;
            c.bytes = kcases::argmax_bytes(ac.rows, ac.n);
            c.launch = [=](int) { kernels::argmax(x->as<float>(), ac.rows, ac.n, out->as<int32_t>(), g_dev.stream); };
            return c;
        });
}

// cuBLAS's workspace and the context that runs in it (declared first, so destroyed last).
struct GemmRig {
    DeviceMem cublas_workspace{kernels::GemmContext::cublas_workspace_bytes()};
    kernels::GemmContext ctx{cublas_workspace.as(), cublas_workspace.bytes(), g_dev.stream};
};

// Every synth matrix of the model times a 512-token prompt: dequantization to fp16 and the cuBLAS
// product, from cold weights.
void add_gemm(const Model& m) {
    for (const auto& named : kcases::gemm_bench_cases(m)) {
        const kcases::GemmCase gc = named.c;
        add("gemm/" + m.name + "/" + named.label, dims(gc.n_out, gc.n_in), [gc] {
            const uint64_t w_bytes = gguf::tensor_bytes(gc.type, static_cast<uint64_t>(gc.n_in) * gc.n_out);
            auto w = std::make_shared<Weights>(gc.type, gc.n_in, gc.n_out, cold_copies(w_bytes));
            auto x = device_floats(kcases::gemm_activations(gc));
            auto y = device_scratch(static_cast<uint64_t>(gc.n_rows) * gc.n_out * 4);
            auto ws = device_scratch(kernels::gemm_workspace_bytes(gc.n_in, gc.n_out, gc.n_rows));
            auto rig = std::make_shared<GemmRig>();
            Case c;
            c.bytes = kcases::gemm_bytes(gc.type, gc.n_in, gc.n_out, gc.n_rows);
            c.flops = kcases::gemm_flops(gc.n_in, gc.n_out, gc.n_rows);
            c.copies = w->copies;
            c.launch = [=](int copy) {
                kernels::gemm(rig->ctx, gc.type, w->copy(copy), x->as<float>(), y->as<float>(), gc.n_in, gc.n_out,
                              gc.n_rows, ws->as(), ws->bytes(), g_dev.stream);
            };
            return c;
        });
    }
}

// The hi + lo split that F16 / BF16 weights' GEMM runs on its activations: a 512-token prompt's rows
// at the model's widest GEMM input (the feed-forward width): X read, hi and lo written.
void add_split(const Model& m) {
    const int rows = kcases::kBenchTokens[std::size(kcases::kBenchTokens) - 1];
    const int64_t n = int64_t{rows} * m.shape.ffn;
    for (const kernels::HalfType type : {kernels::HalfType::f16, kernels::HalfType::bf16}) {
        const std::string name = type == kernels::HalfType::f16 ? "f16" : "bf16";
        add("split/" + m.name + "/" + name + "/rows:" + std::to_string(rows), dims(rows, m.shape.ffn), [=] {
            auto x = device_floats(kcases::split_inputs(static_cast<size_t>(n), 12));
            auto hi = device_scratch(static_cast<uint64_t>(n) * 2), lo = device_scratch(static_cast<uint64_t>(n) * 2);
            Case c;
            c.bytes = (4.0 + 2.0 + 2.0) * static_cast<double>(n);
            c.launch = [=](int) {
                kernels::split_to_half(type, x->as<float>(), hi->as<uint16_t>(), lo->as<uint16_t>(), n, g_dev.stream);
            };
            return c;
        });
    }
}

// The sampling kernels over the model's vocabulary: greedy, top_p, top_p with log-probabilities.
void add_sampling(const Model& m) {
    const int n_vocab = static_cast<int>(m.shape.vocab);
    for (const auto& setup : kcases::sampling_timing_setups())
        for (const int rows : kcases::kSamplingTimingRows)
            add("sampling/" + m.name + "/" + setup.label + "/rows:" + std::to_string(rows), dims(rows, n_vocab), [=] {
                auto logits = device_floats(kcases::sampling_timing_logits(n_vocab, rows));
                std::vector<kernels::SamplingRow> packed;
                for (int r = 0; r < rows; ++r) packed.push_back(kcases::sampling_timing_row(setup, r));
                auto d_rows = device_array(packed);
                auto history = device_ints({0});
                auto bias = device_array(std::vector<kernels::LogitBias>{{0, 0.f}});
                auto ws = device_scratch(kernels::sampling_workspace_bytes(rows, n_vocab));
                auto results = device_scratch(static_cast<uint64_t>(rows) * sizeof(kernels::SampleResult));
                const bool sorts = kcases::sampling_timing_sorts(setup);
                Case c;
                c.bytes = kcases::sampling_bytes(rows, n_vocab);
                c.launch = [=](int) {
                    kernels::sample_rows(logits->as<float>(), n_vocab, n_vocab, d_rows->as<kernels::SamplingRow>(),
                                         rows, history->as<int32_t>(), bias->as<kernels::LogitBias>(), ws->as(),
                                         ws->bytes(), results->as<kernels::SampleResult>(), g_dev.stream, sorts);
                };
                return c;
            });
}

// A paged KV cache of `copies` layers for n_seq sequences of `ctx` positions each, filled with
// random fp16 (or f32), and the block tables (sequence s owns blocks s * ctx/16 ..).
struct KvCache {
    kernels::KvCacheLayout layout;
    DeviceMem arena;
    Mem tables;
    int blocks_per_seq;
    KvCache(const Model& m, int n_seq, int ctx, int copies, kernels::KvType type)
        : layout{copies, n_seq * ((ctx + kernels::kKvBlockTokens - 1) / kernels::kKvBlockTokens),
                 static_cast<int>(m.shape.kv_heads), m.head_dim(), type},
          arena(static_cast<uint64_t>(layout.arena_bytes())),
          blocks_per_seq((ctx + kernels::kKvBlockTokens - 1) / kernels::kKvBlockTokens) {
        fill_repeating(arena.as(), arena.bytes(), random_half_tile(1 << 20, 21));
        std::vector<int32_t> t(static_cast<size_t>(n_seq) * blocks_per_seq);
        for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<int32_t>(i);
        tables = device_ints(t);
    }
    kernels::KvLayer layer(int c) const { return kernels::kv_layer(arena.as<uint16_t>(), layout, c); }
    uint64_t layer_bytes() const {
        return static_cast<uint64_t>(2 * layout.region_elems()) * kernels::kv_type_bytes(layout.type);
    }
};

int kv_copies(const Model& m, int n_seq, int ctx, kernels::KvType type) {
    const uint64_t bytes = static_cast<uint64_t>(n_seq) * round_up(ctx, kernels::kKvBlockTokens) * m.kv_dim() * 2 *
                           kernels::kv_type_bytes(type);
    return cold_copies(bytes);
}

// The tokens of a kv_write_bench_cases case: one sequence's consecutive positions, or one token for each
// of n_seq sequences, positions spread over the context.
struct KvWriteTokens {
    Mem positions, token_seq;
};
KvWriteTokens kv_write_tokens(int n_tokens, int n_seq) {
    std::vector<int32_t> pos(n_tokens), seq(n_tokens);
    for (int t = 0; t < n_tokens; ++t) {
        pos[t] = n_seq == 1 ? 1000 + t : 1000 + 37 * t;
        seq[t] = n_seq == 1 ? 0 : t;
    }
    return {device_ints(pos), device_ints(seq)};
}

// kv_type f32: the cases are named .../kv:f32 and read twice the cache bytes.
void add_kv_and_attention(const Model& m, kernels::KvType kv_type = kernels::KvType::f16) {
    const int n_head = static_cast<int>(m.shape.heads), q_dim = m.q_dim(), kv_dim = m.kv_dim();
    const std::string kv_suffix = kv_type == kernels::KvType::f32 ? "/kv:f32" : "";
    for (const auto [n_tokens, n_seq] : kcases::kv_write_bench_cases())
        add("kv_cache_write/" + m.name + "/tokens:" + std::to_string(n_tokens) + "/seqs:" + std::to_string(n_seq) +
                kv_suffix,
            dims(n_tokens, kv_dim), [=] {
                const int ctx = 4096;
                auto kv = std::make_shared<KvCache>(m, n_seq, ctx, 1, kv_type);
                auto k = device_floats(static_cast<uint64_t>(n_tokens) * kv_dim, 22);
                auto v = device_floats(static_cast<uint64_t>(n_tokens) * kv_dim, 23);
                const KvWriteTokens tok = kv_write_tokens(n_tokens, n_seq);
                Case c;
                c.bytes = kcases::kv_cache_write_bytes(n_tokens, kv_dim, kv_type);
                c.launch = [=](int) {
                    kernels::kv_cache_write(k->as<float>(), v->as<float>(), n_tokens, kv_dim, kv_dim,
                                            tok.positions->as<int32_t>(),
                                            n_seq == 1 ? nullptr : tok.token_seq->as<int32_t>(),
                                            kv->tables->as<int32_t>(), kv->blocks_per_seq, kv->layer(0), g_dev.stream);
                };
                return c;
            });

    // The decode step's fused RoPE + K/V store (one block per head of each token): the rope case's q, k and
    // frequencies, the K/V write case's tokens.
    for (const auto [n_tokens, n_seq] : kcases::kv_write_bench_cases())
        add("rope_kv_cache_write/" + m.name + "/tokens:" + std::to_string(n_tokens) + "/seqs:" + std::to_string(n_seq) +
                kv_suffix,
            dims(n_tokens, q_dim + kv_dim), [=] {
                const kcases::RopeCase rc = kcases::rope_bench_case(m, n_tokens);
                const auto in = kcases::rope_inputs(rc);
                auto kv = std::make_shared<KvCache>(m, n_seq, 4096, 1, kv_type);
                auto q = device_floats(in.q), k = device_floats(in.k), d_inv = device_floats(in.inv_freq);
                auto v = device_floats(static_cast<uint64_t>(n_tokens) * kv_dim, 28);
                const KvWriteTokens tok = kv_write_tokens(n_tokens, n_seq);
                const auto style =
                    rc.mode == engine::RopeMode::NeoX ? kernels::RopeStyle::NeoX : kernels::RopeStyle::Normal;
                Case c;
                c.bytes = kcases::rope_bytes(n_tokens, q_dim, kv_dim, rc.head_dim) +
                          kcases::kv_cache_write_bytes(n_tokens, kv_dim, kv_type);
                c.launch = [=](int) {
                    kernels::rope_kv_cache_write(q->as<float>(), k->as<float>(), v->as<float>(), n_tokens, n_head,
                                                 rc.q_stride(), rc.k_stride(), kv_dim, tok.positions->as<int32_t>(),
                                                 n_seq == 1 ? nullptr : tok.token_seq->as<int32_t>(),
                                                 d_inv->as<float>(), style, kv->tables->as<int32_t>(),
                                                 kv->blocks_per_seq, kv->layer(0), g_dev.stream);
                };
                return c;
            });

    for (const auto [ctx, batch] : kcases::decode_bench_cases())
        add("decode_attention/" + m.name + "/ctx:" + std::to_string(ctx) + "/batch:" + std::to_string(batch) +
                kv_suffix,
            dims(batch, ctx), [=] {
                auto kv = std::make_shared<KvCache>(m, batch, ctx, kv_copies(m, batch, ctx, kv_type), kv_type);
                auto q = device_floats(static_cast<uint64_t>(batch) * q_dim, 24);
                auto out = device_scratch(static_cast<uint64_t>(batch) * q_dim * 4);
                auto lens = device_ints(std::vector<int32_t>(batch, ctx));
                const int64_t ws_floats = kernels::decode_attention_workspace_floats(batch, n_head, m.head_dim(), ctx);
                auto ws = device_scratch(static_cast<uint64_t>(ws_floats) * 4);
                auto counters = device_ints(
                    std::vector<int32_t>(static_cast<size_t>(kernels::decode_attention_counters(batch, n_head)), 0));
                Case c;
                c.bytes = kcases::decode_attention_bytes(batch, ctx, q_dim, kv_dim, kv_type);
                c.copies = kv->layout.n_layer;
                c.launch = [=](int copy) {
                    kernels::decode_attention(q->as<float>(), q_dim, out->as<float>(), q_dim, batch, n_head,
                                              lens->as<int32_t>(), ctx, nullptr, kv->tables->as<int32_t>(),
                                              kv->blocks_per_seq, kv->layer(copy),
                                              ws_floats ? ws->as<float>() : nullptr,
                                              reinterpret_cast<unsigned*>(counters->as<int32_t>()), g_dev.stream);
                };
                return c;
            });

    const int T = kcases::kPrefillBenchTokens;
    add("prefill_attention/" + m.name + "/tokens:" + std::to_string(T) + kv_suffix, dims(T, T), [=] {
        auto kv = std::make_shared<KvCache>(m, 1, T, kv_copies(m, 1, T, kv_type), kv_type);
        auto q = device_floats(static_cast<uint64_t>(T) * q_dim, 25);
        auto out = device_scratch(static_cast<uint64_t>(T) * q_dim * 4);
        Case c;
        c.bytes = kcases::prefill_attention_bytes(T, q_dim, kv_dim, kv_type);
        c.copies = kv->layout.n_layer;
        c.launch = [=](int copy) {
            kernels::prefill_attention(q->as<float>(), q_dim, out->as<float>(), q_dim, T, 0, n_head,
                                       kv->tables->as<int32_t>(), kv->layer(copy), g_dev.stream);
        };
        return c;
    });
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

    // CI builds this on machines without a GPU: say why nothing runs and succeed.
    const auto cuda = kernels::query_cuda();
    if (cuda.devices.empty()) {
        std::printf("kernel_bench: no CUDA device (%s); no benchmarks run\n", cuda.error.c_str());
        return 0;
    }
    const auto& dev = cuda.devices.front();
    if (dev.cc_major < 8) {
        std::printf("kernel_bench: %s is sm_%d%d; loom's kernels need sm_80 or newer; no benchmarks run\n",
                    dev.name.c_str(), dev.cc_major, dev.cc_minor);
        return 0;
    }

    try {
        LOOM_CUDA_CHECK(cudaSetDevice(dev.index));
        int l2 = 0;
        LOOM_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev.index));
        g_dev.l2_bytes = static_cast<uint64_t>(l2);
        LOOM_CUDA_CHECK(cudaStreamCreateWithFlags(&g_dev.stream, cudaStreamNonBlocking));
        LOOM_CUDA_CHECK(cudaEventCreate(&g_dev.start));
        LOOM_CUDA_CHECK(cudaEventCreate(&g_dev.stop));
        g_dev.copy_gbps = kernels::measure_copy_bandwidth_gbps(0);
    } catch (const std::exception& e) {
        std::printf("kernel_bench: cannot set up %s: %s\n", dev.name.c_str(), e.what());
        return 1;
    }
    char copy_line[64];
    std::snprintf(copy_line, sizeof copy_line, "%.1f", g_dev.copy_gbps);
    std::printf(
        "kernel_bench: %s, L2 %.0f MiB; device-to-device copy of 1 GiB: %s GB/s (2 x size / time, median "
        "of 25)\n",
        dev.name.c_str(), static_cast<double>(g_dev.l2_bytes) / (1 << 20), copy_line);
    benchmark::AddCustomContext("device", dev.name);
    benchmark::AddCustomContext("copy_GB/s", copy_line);

    for (const auto& m : kcases::bench_models()) {
        add_embedding(m);
        add_norms_and_rope(m);
        add_residual_quantize(m);
        add_elementwise(m);
        add_kv_and_attention(m);
        if (m.name == "llama3-8b") add_kv_and_attention(m, kernels::KvType::f32);
        add_matvec(m);
        add_q8_product(m);
        add_fused_matvec(m);
        add_gemm(m);
        add_split(m);
        add_argmax(m);
        add_sampling(m);
    }
    for (const auto& m : kcases::attention_models()) add_kv_and_attention(m);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    cudaEventDestroy(g_dev.start);
    cudaEventDestroy(g_dev.stop);
    cudaStreamDestroy(g_dev.stream);
    return 0;
}
