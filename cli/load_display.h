// How the `loom` commands show a model's load steps: on a terminal, lines on stderr with the
// weight upload as a redrawn bar (rate and ETA); otherwise one plain log line per finished step.
#pragma once

#include <cstdio>

#include "engine/load_step.h"

namespace loom::cli {

// A callback for BackendOptions::on_load_step writing to `out` (stderr). After the `ready` step a
// terminal shows nothing more (graph captures would cut into the streamed answer); logs keep them.
engine::LoadCallback load_display(bool tty, std::FILE* out = stderr);

}  // namespace loom::cli
