// A fixed pool of worker threads for the CPU backend's parallel loops (the caller takes part too).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace loom::engine::cpu {

class ThreadPool {
public:
    explicit ThreadPool(int n_threads);  // n_threads <= 0: one per hardware thread
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return static_cast<int>(workers_.size()) + 1; }

    // Splits [0, n) into contiguous chunks of at least `grain` items and runs fn(begin, end) on
    // them across the pool; returns when all are done. The first exception thrown is rethrown.
    void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

private:
    void worker_loop();
    void run_chunks();

    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::condition_variable done_;
    const std::function<void(size_t, size_t)>* job_ = nullptr;
    size_t n_ = 0, chunk_ = 0, next_ = 0, finished_ = 0, n_chunks_ = 0;
    uint64_t generation_ = 0;
    bool stop_ = false;
    std::exception_ptr error_;
};

}  // namespace loom::engine::cpu
