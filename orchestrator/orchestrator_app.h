// OrchestratorApp: the orchestrator's routes over the worker pool, its threads and its lifecycle.
#pragma once

#include <memory>
#include <string>

#include "orchestrator/options.h"

namespace loom::orchestrator {

// Loggers "orchestrator" and "http" at one level; throws std::invalid_argument for an unknown level.
void configure_logging(const std::string& level);

class OrchestratorApp {
public:
    explicit OrchestratorApp(Options options);
    ~OrchestratorApp();
    // Serves until SIGTERM or SIGINT; returns the exit code.
    int run();

private:
    struct State;
    std::unique_ptr<State> s_;
};

}  // namespace loom::orchestrator
