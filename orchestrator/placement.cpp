// What placement counts beside the registry's own estimates: --spawn's workers (estimated until they
// report) and the GPU's memory as nvidia-smi reports it.
#include "orchestrator/placement.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <spdlog/spdlog.h>

#include "gguf/memory_estimate.h"
#include "gguf/reader.h"
#include "orchestrator/spawn_plan.h"

namespace loom::orchestrator {

namespace {

// The last value of `flag` in a worker's arguments (`--ctx 256` or `--ctx=256`), if any.
std::optional<std::string> flag_value(const std::vector<std::string>& args, const std::string& flag) {
    std::optional<std::string> value;
    for (size_t i = 0; i < args.size(); ++i) {
        if (args[i] == flag && i + 1 < args.size())
            value = args[i + 1];
        else if (args[i].rfind(flag + "=", 0) == 0)
            value = args[i].substr(flag.size() + 1);
    }
    return value;
}

// `flag`'s value as an integer, or `fallback`.
int int_flag(const std::vector<std::string>& args, const std::string& flag, int fallback) {
    const std::optional<std::string> text = flag_value(args, flag);
    if (!text) return fallback;
    try {
        return std::stoi(*text);
    } catch (const std::exception&) {
        return fallback;  // the worker refuses it at start (exit 2); the fallback stands for the estimate
    }
}

// Bytes per KV value that --kv-type asks for; 0 (the model's default) without it.
int kv_value_bytes(const std::vector<std::string>& args) {
    const std::optional<std::string> type = flag_value(args, "--kv-type");
    return type == "f32" ? 4 : type == "f16" ? 2 : 0;
}

uint64_t spawned_estimate(const SpawnOptions& spawn) {
    // The worker's own defaults: the model's context, 16 sequences, the model's KV cache type.
    const gguf::MemoryDemand demand{int_flag(spawn.worker_args, "--ctx", 0),
                                    int_flag(spawn.worker_args, "--max-seqs", 16), 512,
                                    kv_value_bytes(spawn.worker_args)};
    try {
        return gguf::estimate_memory(gguf::File::open(spawn.model), demand).total();
    } catch (const std::exception& e) {
        std::error_code ec;
        const uint64_t size = std::filesystem::file_size(spawn.model, ec);
        spdlog::warn(
            "--spawn {}: no memory estimate ({}); placement counts its file size, {} bytes, until its "
            "workers report their memory",
            spawn.model, e.what(), ec ? 0 : size);
        return ec ? 0 : size;
    }
}

}  // namespace

std::vector<std::string> placement_device_ids(const SpawnOptions& spawn) {
    std::vector<std::string> out;
    int cpu = 0;
    for (const std::string& gpu : spawn_devices(spawn))
        out.push_back(gpu.empty() ? "cpu" + std::to_string(cpu++) : gpu);
    return out;
}

std::vector<Resident> spawned_residents(const SpawnOptions& spawn, const std::vector<std::string>& worker_ids) {
    if (spawn.model.empty() || worker_ids.empty()) return {};
    const std::vector<std::string> devices = placement_device_ids(spawn);
    const uint64_t estimate = spawned_estimate(spawn);
    std::vector<Resident> out;
    for (size_t i = 0; i < worker_ids.size() && i < devices.size(); ++i)
        out.push_back({worker_ids[i], devices[i], estimate});
    return out;
}

uint64_t reported_bytes(const WorkerStatus& w) {
    uint64_t sum = 0;
    for (const VramUse& v : w.vram) sum += static_cast<uint64_t>(std::max<int64_t>({v.reserved, v.used, 0}));
    return sum;
}

std::optional<GpuMemory> parse_gpu_memory(std::string_view line) {
    uint64_t mib[2] = {0, 0};
    for (uint64_t& v : mib) {
        while (!line.empty() && (line.front() == ' ' || line.front() == ',')) line.remove_prefix(1);
        const auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), v);
        if (ec != std::errc() || end == line.data()) return std::nullopt;
        line.remove_prefix(static_cast<size_t>(end - line.data()));
    }
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front()))) line.remove_prefix(1);
    if (!line.empty() || mib[0] == 0 || mib[1] > mib[0]) return std::nullopt;
    return GpuMemory{mib[0] << 20, mib[1] << 20};
}

std::optional<GpuMemory> query_gpu_memory(const std::string& gpu) {
    // `gpu` came from --gpus or the visible devices: digits or a GPU-… UUID, nothing a shell reads.
    const auto plain = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-'; };
    if (gpu.empty() || !std::all_of(gpu.begin(), gpu.end(), plain)) return std::nullopt;
    const std::string cmd =
        "nvidia-smi --query-gpu=memory.total,memory.used --format=csv,noheader,nounits -i " + gpu + " 2>/dev/null";
    std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
    if (!p) return std::nullopt;
    char buf[128] = {};
    if (!std::fgets(buf, sizeof buf, p.get())) return std::nullopt;
    return parse_gpu_memory(buf);
}

}  // namespace loom::orchestrator
