// Helpers of the kernel tests: device buffers with a poisoned guard tail, a stream, the NMSE
// measure and its report line.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kernel_cases/inputs.h"
#include "kernels/cuda_check.h"

namespace loom::test {

// Outputs are filled with 0xFF bytes before each launch: a NaN for floats, -1 for int32, and a
// pattern no kernel writes, so unwritten elements are found by their bits.
inline constexpr unsigned char kPoisonByte = 0xFF;
inline constexpr size_t kGuardBytes = 256;  // poisoned bytes after each buffer, to catch overruns

template <class T>
class DeviceBuffer {
public:
    explicit DeviceBuffer(size_t n) : n_(n) {
        void* p = nullptr;
        LOOM_CUDA_CHECK(cudaMalloc(&p, bytes() + kGuardBytes));
        data_ = static_cast<T*>(p);
        // The guard starts poisoned, so guard_intact() means something even for a buffer never
        // poisoned or uploaded (a rejection test's output that no call may touch).
        LOOM_CUDA_CHECK(cudaMemset(reinterpret_cast<char*>(data_) + bytes(), kPoisonByte, kGuardBytes));
        LOOM_CUDA_CHECK(cudaDeviceSynchronize());
    }
    explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
    ~DeviceBuffer() { cudaFree(data_); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    T* get() const { return data_; }
    size_t size() const { return n_; }

    void upload(const std::vector<T>& host) {
        LOOM_CUDA_CHECK(cudaMemcpy(data_, host.data(), bytes(), cudaMemcpyHostToDevice));
        LOOM_CUDA_CHECK(cudaMemset(reinterpret_cast<char*>(data_) + bytes(), kPoisonByte, kGuardBytes));
        LOOM_CUDA_CHECK(cudaDeviceSynchronize());  // see poison()
    }
    // cudaMemset runs on the legacy default stream, which does not order work on the tests'
    // non-blocking streams: wait for it, or a kernel may write first and have its output poisoned.
    void poison() {
        LOOM_CUDA_CHECK(cudaMemset(data_, kPoisonByte, bytes() + kGuardBytes));
        LOOM_CUDA_CHECK(cudaDeviceSynchronize());
    }

    // Synchronizes the device first, so work queued on any stream has landed.
    std::vector<T> download() const {
        LOOM_CUDA_CHECK(cudaDeviceSynchronize());
        std::vector<T> host(n_);
        LOOM_CUDA_CHECK(cudaMemcpy(host.data(), data_, bytes(), cudaMemcpyDeviceToHost));
        return host;
    }
    bool guard_intact() const {
        LOOM_CUDA_CHECK(cudaDeviceSynchronize());
        std::vector<unsigned char> guard(kGuardBytes);
        LOOM_CUDA_CHECK(cudaMemcpy(guard.data(), reinterpret_cast<const char*>(data_) + bytes(), kGuardBytes,
                                   cudaMemcpyDeviceToHost));
        for (const unsigned char b : guard)
            if (b != kPoisonByte) return false;
        return true;
    }

private:
    size_t bytes() const { return n_ * sizeof(T); }
    T* data_ = nullptr;
    size_t n_;
};

// A non-default stream, so the tests exercise the launch functions' stream argument.
class TestStream {
public:
    TestStream() { LOOM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
    ~TestStream() { cudaStreamDestroy(stream_); }
    TestStream(const TestStream&) = delete;
    TestStream& operator=(const TestStream&) = delete;
    cudaStream_t get() const { return stream_; }

private:
    cudaStream_t stream_ = nullptr;
};

inline bool is_poison(float v) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    return bits == 0xFFFFFFFFu;
}

inline size_t count_unwritten(const std::vector<float>& out) {
    size_t n = 0;
    for (const float v : out) n += is_poison(v) ? 1 : 0;
    return n;
}

// Elements that differ (as floats: -0 equals +0); a count, so a failure prints one number.
inline size_t count_mismatches(const std::vector<float>& a, const std::vector<float>& b) {
    size_t n = a.size() > b.size() ? a.size() - b.size() : b.size() - a.size();
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) n += a[i] == b[i] ? 0 : 1;
    return n;
}

// Seeded inputs come from the kernel cases (tests/kernel_cases), which kernel_bench shares.
using kcases::random_normal;
using kcases::random_uniform;

// NMSE = sum (out - ref)^2 / sum ref^2, in double.
template <class Ref>
double nmse(const std::vector<float>& out, const std::vector<Ref>& ref) {
    double err = 0, norm = 0;
    for (size_t i = 0; i < out.size(); ++i) {
        const double r = static_cast<double>(ref[i]);
        const double d = static_cast<double>(out[i]) - r;
        err += d * d;
        norm += r * r;
    }
    return norm > 0 ? err / norm : err;
}

// One line per checked case, "[nmse] <kernel> <case> <value>", for the run's summary table.
inline void report_nmse(const std::string& kernel, const std::string& what, double value) {
    std::printf("[nmse] %s %s %.3e\n", kernel.c_str(), what.c_str(), value);
}

}  // namespace loom::test
