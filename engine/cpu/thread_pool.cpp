// ThreadPool: workers sleep on a condition variable and claim chunks from a shared counter.
#include "engine/cpu/thread_pool.h"

#include <algorithm>

namespace loom::engine::cpu {

ThreadPool::ThreadPool(int n_threads) {
    if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunks() {
    for (;;) {
        size_t chunk;
        {
            std::lock_guard lock(mutex_);
            if (next_ >= n_chunks_) return;
            chunk = next_++;
        }
        const size_t begin = chunk * chunk_;
        const size_t end = std::min(n_, begin + chunk_);
        try {
            (*job_)(begin, end);
        } catch (...) {
            std::lock_guard lock(mutex_);
            if (!error_) error_ = std::current_exception();
        }
        std::lock_guard lock(mutex_);
        if (++finished_ == n_chunks_) done_.notify_all();
    }
}

void ThreadPool::worker_loop() {
    uint64_t seen = 0;
    for (;;) {
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
        }
        run_chunks();
    }
}

void ThreadPool::parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
    if (n == 0) return;
    const size_t threads = static_cast<size_t>(size());
    // About four chunks per thread balances uneven chunks without much locking.
    const size_t chunk = std::max<size_t>(std::max<size_t>(grain, 1), (n + threads * 4 - 1) / (threads * 4));
    if (workers_.empty() || chunk >= n) {
        fn(0, n);
        return;
    }
    {
        std::lock_guard lock(mutex_);
        job_ = &fn;
        n_ = n;
        chunk_ = chunk;
        n_chunks_ = (n + chunk - 1) / chunk;
        next_ = 0;
        finished_ = 0;
        error_ = nullptr;
        ++generation_;
    }
    wake_.notify_all();
    run_chunks();
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return finished_ == n_chunks_; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
}

}  // namespace loom::engine::cpu
