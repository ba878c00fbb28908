// What backend steps cost, measured one way for `loom bench` and bench/decode_bench: batched greedy
// decode steps, a whole-prompt prefill, and the bandwidth floor of reading the weights once per step.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/kv_manager.h"

namespace loom::engine {

// The bytes the backend's "weights" arena holds (what each decode step reads at least once).
uint64_t weight_bytes(const Backend& backend);

// Copy bandwidth in GB/s as 2 * size / time (bytes read + written): device-to-device copies on the
// CUDA device for a cuda backend, host memcpy for the CPU one. The yardstick of the bandwidth floors.
double measure_copy_bandwidth_gbps(const Backend& backend, int device = 0);

// The floor of one decode step in ms: the weights read once at `gbps`.
double floor_ms(uint64_t weight_bytes, double gbps);

// `n` token ids drawn uniformly from the vocabulary (reproducible by seed).
std::vector<int32_t> random_tokens(int n_vocab, int n, uint32_t seed);

// `batch` sequences decoding greedily in one step each (sampled on the backend). Each starts from
// `context` random tokens (prefilled in chunks of the backend's step size, so decode attention
// reads that many positions from the first step); a sequence reaching `max_positions` is closed and
// reopened before the next step, outside the timed part. One KvManager per backend at a time: the
// object holds one.
class DecodeSteps {
public:
    DecodeSteps(Backend& backend, int batch, int max_positions = 1024, int context = 16);
    ~DecodeSteps();
    DecodeSteps(const DecodeSteps&) = delete;
    DecodeSteps& operator=(const DecodeSteps&) = delete;

    // One step: every sequence feeds its last token and samples the next. Returns its wall seconds,
    // the host work and the single synchronisation included.
    double step();

private:
    void open_all();

    KvManager kv_;
    int batch_, max_positions_, context_;
    SamplingParams greedy_;
    std::vector<int> seqs_;
    std::vector<std::vector<int32_t>> history_;
    std::vector<BatchEntry> entries_;
};

// The wall seconds of one prefill of a `tokens`-token random prompt on a fresh sequence (the step
// samples one token after it, as a request's first step does).
class PrefillSteps {
public:
    PrefillSteps(Backend& backend, int tokens);
    double run();

private:
    KvManager kv_;
    std::vector<int32_t> prompt_;
    SamplingParams greedy_;
};

}  // namespace loom::engine
