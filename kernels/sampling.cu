// GPU sampler kernels: bias/penalties and row statistics, one CUB radix sort of all rows into σ order, tile
// weights with their prefix sums, and the top-p / min-p / Philox draw search.
#include "kernels/sampling.h"

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "core/philox.h"
#include "core/sampling_math.h"
#include "kernels/cuda_check.h"
#include "kernels/launch.cuh"

namespace loom::kernels {
namespace {

constexpr int kRowThreads = 1024;  // prepare: one block per row
constexpr int kTileThreads = 256;  // weigh: one block per tile of σ
constexpr int kTileItems = 8;
constexpr int kTile = kTileThreads * kTileItems;
constexpr int kFinishThreads = 256;  // finish: one block per row
constexpr size_t kAlign = 256;

// What prepare learns about a row, for the later kernels.
struct RowState {
    double log_normalizer;  // log Σ exp(z) over the vocabulary (when n_top >= 0)
    float max_logit;        // l at the argmax
    int32_t status;
};

// Where each piece of the workspace lies, for `rows` rows of n_vocab tokens.
struct Layout {
    size_t adjusted;     // float (rows, V): l after bias and penalties
    size_t keys[2];      // each uint64 (rows, V): the sort's double buffer of (row << 32 | ~order key)
    size_t ids[2];       // each int32 (rows, V): the ids riding along
    size_t prefix_minp;  // uint64 (rows, V): tile-local inclusive prefix of the min-p weights
    size_t tile_sums;    // uint64 (rows, tiles): tile totals of w, then their inclusive prefix
    size_t tile_minp;    // uint64 (rows, tiles): the same for the min-p weights
    size_t states;       // RowState (rows)
    size_t sort_temp;
    size_t sort_temp_bytes;
    size_t total;
};

size_t align_up(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

__host__ __device__ inline int tiles_of(int n_vocab) { return (n_vocab + kTile - 1) / kTile; }

// The sort's key bits: the 32 of ~order key below the row index's.
int sort_end_bit(int rows) {
    int bits = 0;
    while ((1 << bits) < rows) ++bits;
    return 32 + bits;
}

size_t sort_temp_bytes(int rows, int n_vocab) {
    size_t bytes = 0;
    cub::DoubleBuffer<uint64_t> keys(nullptr, nullptr);
    cub::DoubleBuffer<int32_t> ids(nullptr, nullptr);
    LOOM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys, ids, rows * n_vocab, 0, sort_end_bit(rows)));
    return bytes;
}

Layout layout_for(int rows, int n_vocab) {
    if (rows <= 0 || n_vocab <= 0 || n_vocab > sampling::kMaxVocab ||
        static_cast<int64_t>(rows) * n_vocab > std::numeric_limits<int32_t>::max())
        throw std::invalid_argument("sampling: rows " + std::to_string(rows) + " x n_vocab " + std::to_string(n_vocab) +
                                    " out of range");
    const size_t elems = static_cast<size_t>(rows) * static_cast<size_t>(n_vocab);
    const size_t tiles = static_cast<size_t>(rows) * static_cast<size_t>(tiles_of(n_vocab));
    Layout l{};
    size_t at = 0;
    const auto take = [&](size_t bytes) {
        const size_t here = at;
        at = align_up(at + bytes);
        return here;
    };
    l.adjusted = take(elems * sizeof(float));
    for (int b = 0; b < 2; ++b) {
        l.keys[b] = take(elems * sizeof(uint64_t));
        l.ids[b] = take(elems * sizeof(int32_t));
    }
    l.prefix_minp = take(elems * sizeof(uint64_t));
    l.tile_sums = take(tiles * sizeof(uint64_t));
    l.tile_minp = take(tiles * sizeof(uint64_t));
    l.states = take(static_cast<size_t>(rows) * sizeof(RowState));
    l.sort_temp_bytes = sort_temp_bytes(rows, n_vocab);
    l.sort_temp = take(l.sort_temp_bytes);
    l.total = at;
    return l;
}

__device__ __forceinline__ uint32_t key_of(float x) { return sampling::order_key(__float_as_uint(x)); }

// The order key in int32 order, as the CPU sampler compares them.
__device__ __forceinline__ int32_t signed_key_of(float x) { return static_cast<int32_t>(key_of(x) ^ 0x80000000u); }

// The order key of a sorted composite key.
__device__ __forceinline__ uint32_t sorted_key(const uint64_t* sorted, size_t i) {
    return ~static_cast<uint32_t>(sorted[i]);
}

// The logit of an order key (-0 comes back as +0, which gives every z, weight and log-probability
// the same value).
__device__ __forceinline__ float logit_of_key(uint32_t key) {
    return __uint_as_float((key & 0x80000000u) ? key ^ 0x80000000u : ~key);
}

// A token's weight; z <= -32 weighs 0 (sampling::weight's own cut), skipped here for speed.
__device__ __forceinline__ uint64_t weight_of(float logit, float max_logit, float temperature) {
    const double z = sampling::exponent(logit, max_logit, temperature);
    return z > -32.0 ? sampling::weight(z) : 0;
}

// The largest order key with its lowest id, the smallest key, and the first NaN/+inf id.
struct Extremes {
    int32_t max_key, argmax, min_key, first_bad;
};

struct CombineExtremes {
    __device__ Extremes operator()(const Extremes& a, const Extremes& b) const {
        Extremes r;
        const bool a_wins = a.max_key > b.max_key || (a.max_key == b.max_key && a.argmax < b.argmax);
        r.max_key = a_wins ? a.max_key : b.max_key;
        r.argmax = a_wins ? a.argmax : b.argmax;
        r.min_key = min(a.min_key, b.min_key);
        r.first_bad = min(a.first_bad, b.first_bad);
        return r;
    }
};

__device__ __forceinline__ bool row_sorts(const SamplingRow& p) { return p.temperature > 0 || p.n_top > 0; }

// One block per row: l = logits + bias (in order) with the penalties of each distinct window token,
// then the row's max/argmax/validity, the sort's keys (every row when the sort runs, so each row's
// tokens stay in its own stretch), the log-normalizer, and the whole result of greedy rows.
__global__ void __launch_bounds__(kRowThreads)
    prepare_kernel(const float* __restrict__ logits, int64_t stride, int n_vocab, const SamplingRow* __restrict__ rows,
                   const int32_t* __restrict__ history, const LogitBias* __restrict__ biases, float* adjusted,
                   uint64_t* keys, int32_t* ids, RowState* states, SampleResult* results, bool sort_rows) {
    wait_for_previous_kernel();
    using ExtremesReduce = cub::BlockReduce<Extremes, kRowThreads>;
    using SumReduce = cub::BlockReduce<double, kRowThreads>;
    __shared__ union {
        typename ExtremesReduce::TempStorage extremes;
        typename SumReduce::TempStorage sum;
    } temp;
    __shared__ Extremes row_extremes;
    __shared__ double row_sum;

    const int row = blockIdx.x;
    const SamplingRow p = rows[row];
    const size_t base = static_cast<size_t>(row) * static_cast<size_t>(n_vocab);
    const float* src = logits + static_cast<int64_t>(p.logits_row) * stride;
    // A row without bias or penalties is read where it lies; the others are adjusted in a copy.
    const bool adjusts = p.bias_count > 0 || p.history_count > 0;
    float* l = adjusted + base;
    const float* x_of = adjusts ? l : src;

    if (adjusts)
        for (int i = threadIdx.x; i < n_vocab; i += kRowThreads) l[i] = __ldg(src + i);
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int b = 0; b < p.bias_count; ++b) {
            const LogitBias e = biases[p.bias_offset + b];
            if (e.token >= 0 && e.token < n_vocab) l[e.token] = __fadd_rn(l[e.token], e.bias);
        }
    }
    __syncthreads();

    if (p.history_count > 0) {
        // Counts per token in the (not yet written) key buffer: zero the window's entries, count,
        // then the one occurrence that swaps a non-zero count out applies that token's penalties.
        int32_t* counts = reinterpret_cast<int32_t*>(keys + base);
        const int32_t* window = history + p.history_offset;
        for (int i = threadIdx.x; i < p.history_count; i += kRowThreads) {
            const int32_t t = window[i];
            if (t >= 0 && t < n_vocab) counts[t] = 0;
        }
        __syncthreads();
        for (int i = threadIdx.x; i < p.history_count; i += kRowThreads) {
            const int32_t t = window[i];
            if (t >= 0 && t < n_vocab) atomicAdd(counts + t, 1);
        }
        __syncthreads();
        for (int i = threadIdx.x; i < p.history_count; i += kRowThreads) {
            const int32_t t = window[i];
            if (t < 0 || t >= n_vocab) continue;
            const int32_t c = atomicExch(counts + t, 0);
            if (c == 0) continue;
            float x = l[t];
            x = x > 0 ? __fdiv_rn(x, p.repetition_penalty) : __fmul_rn(x, p.repetition_penalty);
            x = __fsub_rn(x, p.presence_penalty);
            x = __fsub_rn(x, __fmul_rn(__int2float_rn(c), p.frequency_penalty));
            l[t] = x;
        }
        __syncthreads();
    }

    const bool sorts = row_sorts(p);
    const uint64_t row_bits = static_cast<uint64_t>(row) << 32;
    const float infinity = __uint_as_float(0x7f800000u);
    Extremes mine{INT32_MIN, n_vocab, INT32_MAX, n_vocab};
    for (int i = threadIdx.x; i < n_vocab; i += kRowThreads) {
        const float x = x_of[i];
        const int32_t key = signed_key_of(x);
        if (key > mine.max_key) {  // ids rise along a thread's slice: the first of a key is its lowest
            mine.max_key = key;
            mine.argmax = i;
        }
        mine.min_key = min(mine.min_key, key);
        if (!(x < infinity) && i < mine.first_bad) mine.first_bad = i;
        if (sort_rows) {
            keys[base + i] = row_bits | ~key_of(x);
            ids[base + i] = i;
        }
    }
    const Extremes all = ExtremesReduce(temp.extremes).Reduce(mine, CombineExtremes{});
    if (threadIdx.x == 0) row_extremes = all;
    __syncthreads();
    const Extremes e = row_extremes;

    int32_t status = kSampleOk;
    if (e.first_bad < n_vocab) {
        status = kSampleBadLogit;
    } else if (e.max_key == signed_key_of(-infinity)) {
        status = kSampleAllBanned;
    } else if (sorts && !sort_rows) {
        status = kSampleNeedsSort;
    }
    const float max_logit = status == kSampleOk ? x_of[e.argmax] : 0.f;
    const double temperature = p.temperature > 0 ? static_cast<double>(p.temperature) : 1.0;

    double log_normalizer = 0;
    if (status == kSampleOk && p.n_top >= 0) {
        double sum = 0;
        for (int i = threadIdx.x; i < n_vocab; i += kRowThreads)
            sum += exp((static_cast<double>(x_of[i]) - static_cast<double>(max_logit)) / temperature);
        __syncthreads();  // temp.extremes is reused
        const double total = SumReduce(temp.sum).Sum(sum);
        if (threadIdx.x == 0) row_sum = total;
        __syncthreads();
        log_normalizer = log(row_sum);
    }

    if (threadIdx.x != 0) return;
    states[row] = RowState{log_normalizer, max_logit, status};
    SampleResult& r = results[row];
    r.status = status;
    r.n_top = status == kSampleOk && p.n_top > 0 ? min(p.n_top, n_vocab) : 0;
    r.token = 0;
    r.logprob = 0;
    if (status == kSampleBadLogit) {
        r.token = e.first_bad;
        r.logprob = x_of[e.first_bad];
    } else if (status == kSampleOk && p.temperature == 0) {
        r.token = e.argmax;
        if (p.n_top >= 0) r.logprob = static_cast<float>(0.0 - log_normalizer);  // z of the argmax is 0
    }
}

// Grid (tiles, rows): the weights of one tile of a sampling row's σ order (only its first K = top_k
// tokens weigh), their tile-local inclusive prefix sums, and the tile total; the same for the
// min-p weights (w >= threshold, else 0) when min-p is on. Tiles past z <= -32 weigh nothing.
__global__ void __launch_bounds__(kTileThreads)
    weigh_kernel(const SamplingRow* __restrict__ rows, int n_vocab, const RowState* __restrict__ states,
                 const uint64_t* __restrict__ sorted_keys, uint64_t* prefix, uint64_t* prefix_minp, uint64_t* tile_sums,
                 uint64_t* tile_minp) {
    wait_for_previous_kernel();
    using Scan = cub::BlockScan<uint64_t, kTileThreads>;
    __shared__ typename Scan::TempStorage scan_temp;

    const int row = blockIdx.y, tile = blockIdx.x;
    const SamplingRow p = rows[row];
    const RowState st = states[row];
    if (st.status != kSampleOk || !(p.temperature > 0)) return;
    const int k = p.top_k > 0 && p.top_k < n_vocab ? p.top_k : n_vocab;
    const int start = tile * kTile;
    if (start >= k) return;
    const size_t base = static_cast<size_t>(row) * static_cast<size_t>(n_vocab);
    const size_t tile_at = static_cast<size_t>(row) * static_cast<size_t>(tiles_of(n_vocab)) + tile;
    const bool min_p_on = p.min_p > 0;

    // σ is sorted, so z falls along it: a tile starting at z <= -32 weighs nothing.
    if (sampling::exponent(logit_of_key(sorted_key(sorted_keys, base + start)), st.max_logit, p.temperature) <= -32.0) {
        if (threadIdx.x == 0) {
            tile_sums[tile_at] = 0;
            tile_minp[tile_at] = 0;
        }
        return;
    }

    uint64_t w[kTileItems], w_minp[kTileItems];
    const int first = start + threadIdx.x * kTileItems;
    const uint64_t threshold = min_p_on ? sampling::min_p_threshold(p.min_p) : 0;
#pragma unroll
    for (int j = 0; j < kTileItems; ++j) {
        const int i = first + j;
        w[j] = i < k ? weight_of(logit_of_key(sorted_key(sorted_keys, base + i)), st.max_logit, p.temperature) : 0;
        w_minp[j] = w[j] >= threshold ? w[j] : 0;
    }
    uint64_t total = 0;
    Scan(scan_temp).InclusiveSum(w, w, total);
#pragma unroll
    for (int j = 0; j < kTileItems; ++j)
        if (first + j < k) prefix[base + first + j] = w[j];
    if (threadIdx.x == 0) tile_sums[tile_at] = total;
    if (min_p_on) {
        __syncthreads();  // scan_temp is reused
        Scan(scan_temp).InclusiveSum(w_minp, w_minp, total);
#pragma unroll
        for (int j = 0; j < kTileItems; ++j)
            if (first + j < k) prefix_minp[base + first + j] = w_minp[j];
        if (threadIdx.x == 0) tile_minp[tile_at] = total;
    }
}

// In-place inclusive prefix sum of n values by one block.
__device__ void block_inclusive_scan(uint64_t* values, int n) {
    using Scan = cub::BlockScan<uint64_t, kFinishThreads>;
    __shared__ typename Scan::TempStorage scan_temp;
    uint64_t carry = 0;
    for (int start = 0; start < n; start += kFinishThreads) {
        const int i = start + threadIdx.x;
        uint64_t v = i < n ? values[i] : 0;
        uint64_t chunk_total = 0;
        Scan(scan_temp).InclusiveSum(v, v, chunk_total);
        if (i < n) values[i] = carry + v;
        carry += chunk_total;
        __syncthreads();
    }
}

// Cumulative weights along σ: tile_prefix (tiles) inclusive over tiles, local (K) inclusive
// within each tile.
struct Cumulative {
    const uint64_t* tile_prefix;
    const uint64_t* local;
    int n_tiles;
    int k;

    __device__ uint64_t before_tile(int tile) const { return tile > 0 ? tile_prefix[tile - 1] : 0; }

    // The inclusive cumulative weight at σ index i.
    __device__ uint64_t at(int i) const { return before_tile(i / kTile) + local[i]; }

    // The first σ index whose inclusive cumulative weight exceeds x (x < the total).
    __device__ int first_above(uint64_t x) const {
        int lo = 0, hi = n_tiles - 1;
        while (lo < hi) {
            const int mid = (lo + hi) / 2;
            if (tile_prefix[mid] > x)
                hi = mid;
            else
                lo = mid + 1;
        }
        const uint64_t inside = x - before_tile(lo);
        int a = lo * kTile, b = min((lo + 1) * kTile, k) - 1;
        while (a < b) {
            const int mid = (a + b) / 2;
            if (local[mid] > inside)
                b = mid;
            else
                a = mid + 1;
        }
        return a;
    }
};

// One block per row: the tile prefix sums, the top-p boundary, the draw (sampling rows), and the
// top log-probabilities from the head of σ (every row that sorted).
__global__ void __launch_bounds__(kFinishThreads)
    finish_kernel(const SamplingRow* __restrict__ rows, int n_vocab, const RowState* __restrict__ states,
                  const uint64_t* __restrict__ sorted_keys, const int32_t* __restrict__ sorted_ids,
                  const uint64_t* prefix, const uint64_t* prefix_minp, uint64_t* tile_sums, uint64_t* tile_minp,
                  SampleResult* results) {
    wait_for_previous_kernel();
    const int row = blockIdx.x;
    const SamplingRow p = rows[row];
    const RowState st = states[row];
    if (st.status != kSampleOk || !row_sorts(p)) return;
    const size_t base = static_cast<size_t>(row) * static_cast<size_t>(n_vocab);
    const uint64_t* keys = sorted_keys + base;
    const int32_t* ids = sorted_ids + base;
    SampleResult& r = results[row];
    const double temperature = p.temperature > 0 ? static_cast<double>(p.temperature) : 1.0;
    const auto logprob_of = [&](uint32_t key) {
        const double z = (static_cast<double>(logit_of_key(key)) - static_cast<double>(st.max_logit)) / temperature;
        return static_cast<float>(z - st.log_normalizer);
    };

    if (p.temperature > 0) {
        const int k = p.top_k > 0 && p.top_k < n_vocab ? p.top_k : n_vocab;
        const int n_tiles = (k + kTile - 1) / kTile;
        const size_t tile_base = static_cast<size_t>(row) * static_cast<size_t>(tiles_of(n_vocab));
        const bool min_p_on = p.min_p > 0;
        block_inclusive_scan(tile_sums + tile_base, n_tiles);
        if (min_p_on) block_inclusive_scan(tile_minp + tile_base, n_tiles);
        if (threadIdx.x == 0) {
            const Cumulative all{tile_sums + tile_base, prefix + base, n_tiles, k};
            const Cumulative kept_by_min_p{tile_minp + tile_base, prefix_minp + base, n_tiles, k};
            const Cumulative& drawn = min_p_on ? kept_by_min_p : all;
            // W_F: everything up to the top-p boundary (the shortest σ-prefix reaching the target)
            // that min-p keeps.
            uint64_t kept = drawn.tile_prefix[n_tiles - 1];
            if (p.top_p < 1) {
                const uint64_t target = sampling::top_p_target(all.tile_prefix[n_tiles - 1], p.top_p);
                kept = drawn.at(all.first_above(target - 1));
            }
            const uint64_t position = sampling::draw_position(philox::sampling_bits(p.seed, p.step), kept);
            const int chosen = drawn.first_above(position);
            r.token = ids[chosen];
            if (p.n_top >= 0) r.logprob = logprob_of(sorted_key(keys, chosen));
        }
    }
    const int n_top = p.n_top > 0 ? min(p.n_top, n_vocab) : 0;
    if (static_cast<int>(threadIdx.x) < n_top) {
        r.top_tokens[threadIdx.x] = ids[threadIdx.x];
        r.top_logprobs[threadIdx.x] = logprob_of(sorted_key(keys, threadIdx.x));
    }
}

}  // namespace

uint64_t sampling_workspace_bytes(int max_rows, int n_vocab) { return layout_for(max_rows, n_vocab).total; }

void sample_rows(const float* logits, int64_t logits_row_stride, int n_vocab, const SamplingRow* rows, int n_rows,
                 const int32_t* history, const LogitBias* biases, void* workspace, uint64_t workspace_bytes,
                 SampleResult* results, Stream stream, bool sort_rows) {
    if (n_rows == 0) return;
    const Layout lay = layout_for(n_rows, n_vocab);
    if (workspace_bytes < lay.total)
        throw std::invalid_argument("sample_rows: workspace of " + std::to_string(workspace_bytes) + " bytes, " +
                                    std::to_string(n_rows) + " rows of " + std::to_string(n_vocab) + " need " +
                                    std::to_string(lay.total));
    char* ws = static_cast<char*>(workspace);
    const size_t elems = static_cast<size_t>(n_rows) * static_cast<size_t>(n_vocab);
    const auto keys_of = [&](int b) { return reinterpret_cast<uint64_t*>(ws + lay.keys[b]); };
    const auto ids_of = [&](int b) { return reinterpret_cast<int32_t*>(ws + lay.ids[b]); };
    auto* states = reinterpret_cast<RowState*>(ws + lay.states);

    launch_kernel("prepare_kernel", prepare_kernel, {n_rows, kRowThreads, 0, stream}, logits, logits_row_stride,
                  n_vocab, rows, history, biases, reinterpret_cast<float*>(ws + lay.adjusted), keys_of(0), ids_of(0),
                  states, results, sort_rows);
    if (!sort_rows) return;

    // One device-wide sort of every row: ascending (row, ~order key) keeps each row in its own
    // stretch in σ order, ties in ascending id (the radix sort is stable and ids enter ascending).
    cub::DoubleBuffer<uint64_t> keys(keys_of(0), keys_of(1));
    cub::DoubleBuffer<int32_t> ids(ids_of(0), ids_of(1));
    size_t temp_bytes = lay.sort_temp_bytes;
    LOOM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(ws + lay.sort_temp, temp_bytes, keys, ids, static_cast<int>(elems),
                                                    0, sort_end_bit(n_rows), stream));
    // The key buffer the sort did not end in holds the tile-local prefix sums.
    auto* prefix = keys.Alternate();
    auto* prefix_minp = reinterpret_cast<uint64_t*>(ws + lay.prefix_minp);
    auto* tile_sums = reinterpret_cast<uint64_t*>(ws + lay.tile_sums);
    auto* tile_minp = reinterpret_cast<uint64_t*>(ws + lay.tile_minp);

    launch_kernel("weigh_kernel", weigh_kernel, {dim3(tiles_of(n_vocab), n_rows), kTileThreads, 0, stream}, rows,
                  n_vocab, states, keys.Current(), prefix, prefix_minp, tile_sums, tile_minp);
    launch_kernel("finish_kernel", finish_kernel, {n_rows, kFinishThreads, 0, stream}, rows, n_vocab, states,
                  keys.Current(), ids.Current(), prefix, prefix_minp, tile_sums, tile_minp, results);
}

}  // namespace loom::kernels
