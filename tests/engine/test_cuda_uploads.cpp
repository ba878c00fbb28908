// The CUDA backend's upload plan (host-only: collect_uploads reads the GGUF and plans regions, no CUDA
// call): which matrices it keeps repacked, and the output projection's repack by rows, on the oracle models.
#include <algorithm>
#include <filesystem>

#include "catch.hpp"
#include "engine/cuda/cuda_weights.h"
#include "engine/model_config.h"
#include "gguf/reader.h"
#include "kernels/q8_layout.h"
#include "support/oracle_models.h"

using namespace loom;
using gguf::TensorType;

namespace {

struct Plan {
    engine::ModelConfig cfg;
    engine::cuda::ModelWeights weights;
    engine::cuda::Uploads uploads;
};

// The plan of the llama oracle model (hidden 128, vocabulary 256) with `type` matrices.
void plan(TensorType type, Plan& p) {
    const auto path = std::filesystem::temp_directory_path() / ("loom_uploads_" + std::to_string(int(type)) + ".gguf");
    test::write_oracle_model({"llama", 64, type}, path);
    const gguf::File file = gguf::File::open(path);
    p.cfg = engine::ModelConfig::from_gguf(file);
    p.uploads = engine::cuda::collect_uploads(file, p.cfg, p.weights);
    std::filesystem::remove(path);
}

const engine::cuda::Repack* repack_of(const Plan& p, const engine::cuda::Matrix& m) {
    const auto& r = p.uploads.repacks;
    const auto it = std::find_if(r.begin(), r.end(), [&](const engine::cuda::Repack& x) { return x.matrix == &m; });
    return it == r.end() ? nullptr : &*it;
}

}  // namespace

TEST_CASE("the output projection is repacked by rows where the f32 family takes its type", "[engine][cuda]") {
    Plan q8;
    plan(TensorType::Q8_0, q8);
    const engine::cuda::Repack* out = repack_of(q8, q8.weights.output);
    REQUIRE(out != nullptr);
    CHECK(out->by_rows);
    const kernels::Q8Layout want = kernels::q8_layout(TensorType::Q8_0, q8.cfg.n_vocab, q8.cfg.n_embd);
    CHECK(out->layout.bytes == want.bytes);
    CHECK(q8.uploads.regions[static_cast<size_t>(out->region)].count == static_cast<int64_t>(want.bytes));
    // Its staging is 256 rows (of 256): no more than the largest whole-region repack or those rows.
    const uint64_t row = gguf::tensor_bytes(TensorType::Q8_0, static_cast<uint64_t>(q8.cfg.n_embd));
    CHECK(q8.uploads.staging_bytes() >= row * 256);
    const engine::cuda::Repack* down = repack_of(q8, q8.weights.layers[0].down);
    REQUIRE(down != nullptr);  // layer matrices: whole regions, as before
    CHECK_FALSE(down->by_rows);

    Plan f32;  // F32 matrices: nothing repacked, the output read by kernels::matvec
    plan(TensorType::F32, f32);
    CHECK(f32.uploads.repacks.empty());
}
