// The CUDA stream type for launch-function signatures, without including the CUDA headers.
#pragma once

// The runtime defines cudaStream_t as a pointer to this opaque struct, so callers pass a
// cudaStream_t (or nullptr for the legacy default stream) where a Stream is asked for.
struct CUstream_st;

namespace loom::kernels {

using Stream = CUstream_st*;

}  // namespace loom::kernels
