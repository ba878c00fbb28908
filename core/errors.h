// The base of loom's typed errors, below both kernels and engine: what the engine refuses or fails
// at (EngineError), and the device failures inside it (DeviceError: a CUDA call, missing VRAM).
#pragma once

#include <stdexcept>
#include <string>

namespace loom {

class EngineError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A CUDA call failed, the device is unfit, or its memory is short; callers catch this one type.
class DeviceError : public EngineError {
public:
    using EngineError::EngineError;
};

}  // namespace loom
