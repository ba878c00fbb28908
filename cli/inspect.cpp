// `loom inspect FILE [--json] [--tensors]`: what a GGUF file holds, without reading tensor data.
#include <bit>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "models/model_cache.h"
#include "gguf/errors.h"
#include "gguf/reader.h"

namespace loom::cli {
namespace {

using nlohmann::json;
using gguf::Value;
using gguf::ValueType;

constexpr size_t kArraySummaryAbove = 16;  // longer arrays are shown as type and length only

// One fixed-size array element, given as its little-endian bits.
json scalar_json(ValueType type, uint64_t bits) {
    switch (type) {
        case ValueType::INT8: return static_cast<int8_t>(bits);
        case ValueType::INT16: return static_cast<int16_t>(bits);
        case ValueType::INT32: return static_cast<int32_t>(bits);
        case ValueType::INT64: return static_cast<int64_t>(bits);
        case ValueType::FLOAT32: return std::bit_cast<float>(static_cast<uint32_t>(bits));
        case ValueType::FLOAT64: return std::bit_cast<double>(bits);
        case ValueType::BOOL: return bits != 0;
        default: return bits;
    }
}

json value_json(const Value& v) {
    switch (v.type()) {
        case ValueType::BOOL: return v.as_bool();
        case ValueType::STRING: return v.as_string();
        case ValueType::FLOAT32:
        case ValueType::FLOAT64: return v.as_float();
        case ValueType::INT8:
        case ValueType::INT16:
        case ValueType::INT32:
        case ValueType::INT64: return v.as_int();
        case ValueType::ARRAY: {
            const auto& a = v.as_array();
            if (a.size() > kArraySummaryAbove) return json{{"type", v.type_description()}, {"length", a.size()}};
            json out = json::array();
            if (a.elem_type == ValueType::STRING) {
                for (const auto& s : a.strings) out.push_back(s);
            } else if (a.elem_type == ValueType::ARRAY) {
                for (const auto& sub : a.arrays) out.push_back(value_json(sub));
            } else {
                const size_t w = gguf::value_type_size(a.elem_type);
                for (size_t i = 0; i < a.size(); ++i) {
                    uint64_t raw = 0;
                    std::memcpy(&raw, a.packed.data() + i * w, w);
                    out.push_back(scalar_json(a.elem_type, raw));
                }
            }
            return out;
        }
        default: return v.as_uint();
    }
}

json summary(const gguf::File& f, const std::string& path, bool with_tensors) {
    json j;
    j["file"] = path;
    j["gguf_version"] = f.version();
    j["alignment"] = f.alignment();
    j["data_offset"] = f.data_offset();
    j["file_size"] = f.file_size();

    const std::string arch = f.find_string("general.architecture").value_or("");
    j["architecture"] = arch.empty() ? json(nullptr) : json(arch);
    if (auto name = f.find_string("general.name")) j["name"] = *name;
    if (auto ft = f.find_uint("general.file_type")) j["file_type"] = *ft;

    json hp = json::object();
    static const std::pair<const char*, const char*> kHyper[] = {
        {"block_count", "block_count"},
        {"embedding_length", "embedding_length"},
        {"feed_forward_length", "feed_forward_length"},
        {"head_count", "attention.head_count"},
        {"head_count_kv", "attention.head_count_kv"},
        {"key_length", "attention.key_length"},
        {"value_length", "attention.value_length"},
        {"context_length", "context_length"},
        {"rope_dimension_count", "rope.dimension_count"},
        {"rope_freq_base", "rope.freq_base"},
        {"rope_scaling_type", "rope.scaling.type"},
        {"rope_scaling_factor", "rope.scaling.factor"},
        {"rms_norm_epsilon", "attention.layer_norm_rms_epsilon"},
        {"vocab_size", "vocab_size"},
    };
    if (!arch.empty())
        for (const auto& [label, suffix] : kHyper)
            if (const Value* v = f.find(arch + "." + suffix)) hp[label] = value_json(*v);

    json tok = json::object();
    if (auto model = f.find_string("tokenizer.ggml.model")) tok["model"] = *model;
    if (auto pre = f.find_string("tokenizer.ggml.pre")) tok["pre"] = *pre;
    if (const Value* tokens = f.find("tokenizer.ggml.tokens")) {
        tok["vocab_size"] = tokens->as_array("tokenizer.ggml.tokens").size();
        if (!hp.contains("vocab_size")) hp["vocab_size"] = tok["vocab_size"];
    }
    if (const Value* merges = f.find("tokenizer.ggml.merges")) tok["merges"] = merges->as_array().size();
    json special = json::object();
    const std::string prefix = "tokenizer.ggml.", suffix = "_token_id";
    for (const auto& [key, v] : f.metadata())
        if (key.starts_with(prefix) && key.ends_with(suffix) && key.size() > prefix.size() + suffix.size())
            special[key.substr(prefix.size(), key.size() - prefix.size() - suffix.size())] = value_json(v);
    tok["special_ids"] = special;
    for (const char* flag : {"add_bos_token", "add_eos_token", "add_space_prefix"})
        if (auto b = f.find_bool(std::string(prefix) + flag)) tok[flag] = *b;
    tok["has_chat_template"] = f.find("tokenizer.chat_template") != nullptr;
    j["hyperparameters"] = hp;
    j["tokenizer"] = tok;

    j["tensor_count"] = f.tensors().size();
    std::map<std::string, std::pair<uint64_t, uint64_t>> per_type;  // name -> (tensors, bytes)
    uint64_t total_bytes = 0, total_params = 0;
    json tensors = json::array();
    for (const auto& t : f.tensors()) {
        auto& [count, bytes] = per_type[std::string(gguf::tensor_type_name(t.type))];
        ++count;
        bytes += t.n_bytes;
        total_bytes += t.n_bytes;
        total_params += t.n_elems;
        if (with_tensors)
            tensors.push_back({{"name", t.name},
                               {"type", gguf::tensor_type_name(t.type)},
                               {"ne", t.ne},
                               {"rows", t.n_rows()},
                               {"cols", t.row_length()},
                               {"bytes", t.n_bytes},
                               {"offset", f.data_offset() + t.offset}});
    }
    json types = json::object();
    for (const auto& [name, cb] : per_type) types[name] = {{"tensors", cb.first}, {"bytes", cb.second}};
    j["bytes_per_type"] = types;
    j["tensor_bytes"] = total_bytes;
    j["parameters"] = total_params;
    if (with_tensors) j["tensors"] = tensors;
    return j;
}

std::string human_bytes(uint64_t b) {
    char s[32];
    if (b >= (1ull << 30))
        std::snprintf(s, sizeof s, "%.2f GiB", b / double(1ull << 30));
    else if (b >= (1ull << 20))
        std::snprintf(s, sizeof s, "%.2f MiB", b / double(1ull << 20));
    else if (b >= (1ull << 10))
        std::snprintf(s, sizeof s, "%.1f KiB", b / 1024.0);
    else
        std::snprintf(s, sizeof s, "%llu B", static_cast<unsigned long long>(b));
    return s;
}

std::string plain(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

void print_text(const json& j) {
    std::cout << "file          " << plain(j["file"]) << " (GGUF v" << plain(j["gguf_version"]) << ", "
              << human_bytes(j["file_size"].get<uint64_t>()) << ", alignment " << plain(j["alignment"]) << ")\n";
    std::cout << "architecture  " << (j["architecture"].is_null() ? "(none)" : plain(j["architecture"])) << "\n";
    if (j.contains("name")) std::cout << "name          " << plain(j["name"]) << "\n";
    for (const auto& [k, v] : j["hyperparameters"].items()) std::printf("  %-22s %s\n", k.c_str(), plain(v).c_str());
    const auto& tok = j["tokenizer"];
    std::cout << "tokenizer     model " << (tok.contains("model") ? plain(tok["model"]) : "(none)") << ", pre "
              << (tok.contains("pre") ? plain(tok["pre"]) : "(none)") << ", vocab "
              << (tok.contains("vocab_size") ? plain(tok["vocab_size"]) : "(none)") << ", chat template "
              << (tok["has_chat_template"].get<bool>() ? "yes" : "no") << "\n";
    for (const auto& [k, v] : tok["special_ids"].items())
        std::printf("  %-22s %s\n", (k + " id").c_str(), plain(v).c_str());
    std::cout << "tensors       " << plain(j["tensor_count"]) << ", " << plain(j["parameters"]) << " parameters, "
              << human_bytes(j["tensor_bytes"].get<uint64_t>()) << "\n";
    for (const auto& [type, cb] : j["bytes_per_type"].items())
        std::printf("  %-8s %6s tensors  %s\n", type.c_str(), plain(cb["tensors"]).c_str(),
                    human_bytes(cb["bytes"].get<uint64_t>()).c_str());
    if (!j.contains("tensors")) return;
    std::printf("\n%-40s %-7s %-28s %-16s %12s %12s\n", "name", "type", "ne (GGUF order)", "rows x cols", "bytes",
                "offset");
    for (const auto& t : j["tensors"]) {
        std::string ne;
        for (const auto& d : t["ne"]) ne += (ne.empty() ? "" : ", ") + plain(d);
        const std::string rc = plain(t["rows"]) + " x " + plain(t["cols"]);
        std::printf("%-40s %-7s %-28s %-16s %12s %12s\n", plain(t["name"]).c_str(), plain(t["type"]).c_str(),
                    ("[" + ne + "]").c_str(), rc.c_str(), plain(t["bytes"]).c_str(), plain(t["offset"]).c_str());
    }
}

}  // namespace

void register_inspect(CLI::App& app, int& exit_code) {
    auto* cmd = app.add_subcommand("inspect", "Show what a GGUF file holds (metadata, tokenizer, tensors)");
    struct Options {
        std::string file;
        bool json = false;
        bool tensors = false;
    };
    auto opt = std::make_shared<Options>();
    cmd->add_option("file", opt->file, "GGUF file or cached model name")
        ->required()
        ->transform(models::file_or_cached_model());
    cmd->add_flag("--json", opt->json, "Print one JSON object");
    cmd->add_flag("--tensors", opt->tensors, "List every tensor");
    cmd->callback([opt, &exit_code] {
        try {
            const auto f = gguf::File::open(opt->file);
            const json j = summary(f, opt->file, opt->tensors);
            if (opt->json)
                std::cout << j.dump(2) << "\n";
            else
                print_text(j);
            exit_code = 0;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "loom inspect: %s: %s\n", opt->file.c_str(), e.what());
            exit_code = 2;
        }
    });
}

}  // namespace loom::cli
