// The real-model shapes of kernel_bench, from gguf's model shapes and synth plans.
#include "kernel_cases/bench_shapes.h"

#include <algorithm>
#include <stdexcept>
#include <tuple>
#include <utility>

namespace loom::kcases {

namespace {

constexpr gguf::SynthType kSynthTypes[] = {gguf::SynthType::q4_0, gguf::SynthType::q4_1, gguf::SynthType::q8_0,
                                           gguf::SynthType::q4_k_m, gguf::SynthType::f16};

std::vector<gguf::PlannedTensor> plan(const BenchModel& m, gguf::SynthType type) {
    gguf::SynthOptions o;
    o.arch = m.arch;
    o.shape = m.shape;
    o.type = type;
    return gguf::plan_tensors(o);
}

}  // namespace

std::vector<BenchModel> bench_models() {
    std::vector<BenchModel> models;
    for (const auto& [name, arch] :
         {std::pair{"smollm2-135m", gguf::SynthArch::llama}, std::pair{"qwen2.5-0.5b", gguf::SynthArch::qwen2},
          std::pair{"llama3-8b", gguf::SynthArch::llama}})
        models.push_back({name, arch, gguf::parse_model_shape(name)});
    return models;
}

BenchModel bench_model(const std::string& name) {
    for (auto& m : bench_models())
        if (m.name == name) return m;
    throw std::invalid_argument("no bench model named " + name);
}

std::vector<BenchModel> attention_models() {
    std::vector<BenchModel> models;
    for (const auto& [name, embd, heads, kv_heads] :
         {std::tuple{"hd80-phi2", 2560u, 32u, 32u}, std::tuple{"hd96-phi3", 3072u, 32u, 32u},
          std::tuple{"hd256-gemma2", 2048u, 8u, 4u}}) {
        gguf::ModelShape shape;
        shape.name = name;
        shape.embd = embd;
        shape.heads = heads;
        shape.kv_heads = kv_heads;
        models.push_back({name, gguf::SynthArch::llama, shape});
    }
    return models;
}

bool BenchMatrix::operator<(const BenchMatrix& o) const {
    return std::tie(role, type, n_in, n_out) < std::tie(o.role, o.type, o.n_in, o.n_out);
}

std::vector<BenchMatrix> synth_matrices(const BenchModel& m) {
    std::set<BenchMatrix> out;
    const uint32_t plain_layer = m.shape.layers / 8;  // (i - n/8) % 3 == 0: not a "more bits" layer
    static const std::pair<const char*, const char*> kRoles[] = {
        {"attn_q", "q"},      {"attn_k", "k"},  {"attn_v", "v"},     {"attn_output", "o"},
        {"ffn_gate", "gate"}, {"ffn_up", "up"}, {"ffn_down", "down"}};
    for (const auto type : kSynthTypes)
        for (const auto& t : plan(m, type)) {
            const auto n_in = static_cast<int>(t.ne[0]);
            const auto n_out = t.ne.size() > 1 ? static_cast<int>(t.ne[1]) : 0;
            if (t.name == "output.weight" || (m.shape.tied_embeddings && t.name == "token_embd.weight"))
                out.insert({"output", t.type, n_in, n_out});
            for (const auto& [suffix, role] : kRoles)
                for (const uint32_t layer : {0u, plain_layer})
                    if (t.name == "blk." + std::to_string(layer) + "." + suffix + ".weight")
                        out.insert({role, t.type, n_in, n_out});
        }
    std::vector<BenchMatrix> sorted(out.begin(), out.end());
    static const std::vector<std::string> kOrder = {"q", "k", "v", "o", "gate", "up", "down", "output"};
    std::stable_sort(sorted.begin(), sorted.end(), [](const BenchMatrix& a, const BenchMatrix& b) {
        return std::find(kOrder.begin(), kOrder.end(), a.role) < std::find(kOrder.begin(), kOrder.end(), b.role);
    });
    return sorted;
}

std::set<gguf::TensorType> embedding_types(const BenchModel& m) {
    std::set<gguf::TensorType> types;
    for (const auto type : kSynthTypes)
        for (const auto& t : plan(m, type))
            if (t.name == "token_embd.weight") types.insert(t.type);
    return types;
}

}  // namespace loom::kcases
