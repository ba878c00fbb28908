// Resolving --spawn's settings into worker command lines: the binary, the GPUs, the flags.
#include "orchestrator/spawn_plan.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <unistd.h>

namespace loom::orchestrator {

namespace fs = std::filesystem;

namespace {

// loom-worker beside this executable (an installed pair), else in the build tree's worker/ folder.
std::string default_worker_bin() {
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (ec) throw BadSpawn("--worker-bin: cannot find this executable's folder (" + ec.message() + "); name it");
    const fs::path beside = self.parent_path() / "loom-worker";
    const fs::path built = self.parent_path().parent_path() / "worker" / "loom-worker";
    return (fs::exists(beside) || !fs::exists(built) ? beside : built).string();
}

// The flags the orchestrator sets itself on every spawned worker.
void check_worker_args(const std::vector<std::string>& args) {
    for (const std::string& a : args)
        for (const char* own : {"--host", "--port", "--model", "--backend", "--gpu", "--log", "--served-name"})
            if (a == own || a.rfind(std::string(own) + "=", 0) == 0)
                throw BadSpawn("--worker-arg " + a + ": the orchestrator sets " + own + " itself");
}

int count_lines(const char* command) {
    std::unique_ptr<FILE, int (*)(FILE*)> p(popen(command, "r"), pclose);
    if (!p) return 0;
    int n = 0;
    char buf[512];
    while (fgets(buf, sizeof buf, p.get()))
        if (std::string(buf).rfind("GPU ", 0) == 0) ++n;
    return n;
}

}  // namespace

int count_visible_gpus() {
    if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES")) {
        // CUDA stops at the first entry that is not a device (-1 hides them all).
        int n = 0;
        for (std::string rest = v; !rest.empty() && rest[0] != '-';) {
            const size_t comma = rest.find(',');
            if (comma == 0) break;
            ++n;
            rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
        }
        return n;
    }
    std::error_code ec;
    int n = 0;
    for (fs::directory_iterator it("/proc/driver/nvidia/gpus", ec), end; !ec && it != end; it.increment(ec)) ++n;
    if (n > 0) return n;
    return count_lines("nvidia-smi -L 2>/dev/null");
}

std::string worker_binary(const SpawnOptions& o) {
    if (o.backend != "cuda" && o.backend != "cpu") throw BadSpawn("--backend: '" + o.backend + "' is not cuda or cpu");
    const std::string bin = o.worker_bin.empty() ? default_worker_bin() : o.worker_bin;
    std::error_code ec;
    if (!fs::is_regular_file(bin, ec) || access(bin.c_str(), X_OK) != 0)
        throw BadSpawn("--worker-bin " + bin + ": not an executable file");
    check_worker_args(o.worker_args);
    return bin;
}

std::vector<std::string> spawn_devices(const SpawnOptions& o) {
    std::vector<std::string> devices;  // --gpu values; one "" per CPU worker
    if (o.backend == "cpu") {
        if (!o.gpus.empty()) throw BadSpawn("--gpus names GPUs; with --backend cpu say --cpu-workers N");
        if (o.cpu_workers < 1) throw BadSpawn("--cpu-workers must be at least 1");
        devices.assign(static_cast<size_t>(o.cpu_workers), "");
    } else if (!o.gpus.empty()) {
        for (const std::string& g : o.gpus) {
            const bool ok = !g.empty() && std::all_of(g.begin(), g.end(),
                                                      [](unsigned char c) { return std::isalnum(c) || c == '-'; });
            if (!ok) throw BadSpawn("--gpus: '" + g + "' is not a device index or UUID");
        }
        devices = o.gpus;
    } else {
        const int n = count_visible_gpus();
        if (n == 0) throw BadSpawn("--spawn: no GPU is visible here; name them with --gpus, or say --backend cpu");
        for (int i = 0; i < n; ++i) devices.push_back(std::to_string(i));
    }
    return devices;
}

std::vector<std::string> worker_command(const SpawnOptions& o, const std::string& bin, const std::string& model,
                                        const std::string& device, const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {bin, "--model", model, "--backend", o.backend};
    if (!device.empty()) argv.insert(argv.end(), {"--gpu", device});
    argv.insert(argv.end(), {"--host", "127.0.0.1", "--port", "0", "--log", "info"});
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.insert(argv.end(), o.worker_args.begin(), o.worker_args.end());
    return argv;
}

std::vector<std::vector<std::string>> spawn_commands(const SpawnOptions& o) {
    if (o.backend != "cuda" && o.backend != "cpu") throw BadSpawn("--backend: '" + o.backend + "' is not cuda or cpu");
    std::error_code ec;
    if (!fs::is_regular_file(o.model, ec) || access(o.model.c_str(), R_OK) != 0)
        throw BadSpawn("--spawn " + o.model + ": not a readable file");
    const std::string bin = worker_binary(o);
    std::vector<std::vector<std::string>> out;
    for (const std::string& d : spawn_devices(o)) out.push_back(worker_command(o, bin, o.model, d, {}));
    return out;
}

}  // namespace loom::orchestrator
