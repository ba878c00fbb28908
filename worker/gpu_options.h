// What loom-worker's --gpu and --vram-budget mean: one CUDA device picked from the visible ones by
// index or UUID, and a byte count with units (shared: http/byte_size.h). Pure: no CUDA, so both are
// tested without a GPU.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "http/byte_size.h"

namespace loom::worker {

// A device as CUDA lists it (its index honours CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER).
struct GpuCandidate {
    int index = 0;
    std::string name;
    std::string uuid;  // "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as nvidia-smi -L prints it
};

// The device `spec` names: an index ("0", "3"), a UUID ("GPU-8e2f…", any case, "GPU-" optional),
// or a UUID prefix of at least 8 hex digits that only one device has. std::invalid_argument
// naming the spec and listing every visible device otherwise.
const GpuCandidate& select_gpu(const std::string& spec, const std::vector<GpuCandidate>& visible);

// "0 NVIDIA H100 80GB HBM3 GPU-…, 1 …" (or "none").
std::string describe_gpus(const std::vector<GpuCandidate>& visible);

// --vram-budget's sizes: the parser both daemons share.
using http::parse_byte_size;

}  // namespace loom::worker
