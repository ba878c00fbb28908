// Where kernels may use programmatic dependent launch (plain C++: the engine sets the scope).
#pragma once

namespace loom::kernels {

// Whether launches on the current device carry the PDL attribute now: compute capability 9.0 or
// newer, inside a ProgrammaticLaunchScope on this thread, and LOOM_PDL is not 0.
bool programmatic_launch_enabled();

// Kernels launched on this thread while one exists may be scheduled before their predecessor ends.
// Meant for the decode step's small one-wave kernels: around larger multi-wave kernels (prefill)
// the early-scheduled blocks were measured to slow the pass down (docs/PERFORMANCE.md).
class ProgrammaticLaunchScope {
public:
    ProgrammaticLaunchScope();
    ~ProgrammaticLaunchScope();
    ProgrammaticLaunchScope(const ProgrammaticLaunchScope&) = delete;
    ProgrammaticLaunchScope& operator=(const ProgrammaticLaunchScope&) = delete;
};

}  // namespace loom::kernels
