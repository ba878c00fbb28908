// The model registry's configuration: each configured model (name, GGUF, GPUs, replicas, context,
// keep_alive) parsed from --model-config / the config file's "models", and Ollama's keep_alive forms.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>
#include <nlohmann/json_fwd.hpp>

namespace loom::orchestrator {

// A model entry that does not parse; the message names the entry and the field.
class BadModelSpec : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// keep_alive below zero: never unloaded for idleness.
inline constexpr std::chrono::milliseconds kKeepForever{-1};

struct ModelSpec {
    std::string name;               // what requests name, and the worker's --served-name
    std::string path;               // the GGUF file (a cached model's name resolved)
    std::vector<std::string> gpus;  // devices it may use; empty: every one
    int replicas = 1;               // workers on distinct devices
    int context = 0;                // --ctx; 0: the model's
    int max_seqs = 0;               // --max-seqs; 0: the worker's default (16)
    std::chrono::milliseconds keep_alive{300'000};
};

// Ollama's keep_alive: a number of seconds, or a duration string ("5m", "1h30m", "90s", "500ms",
// "300" as seconds); 0 unloads after the request; negative keeps the model loaded. nullopt when
// the value is none of these (or longer than a year).
std::optional<std::chrono::milliseconds> parse_keep_alive(const nlohmann::json& v);

// The request body's `keep_alive`, taken out of it (the worker is not told); nullopt when absent or
// null. BadField naming keep_alive for anything parse_keep_alive refuses.
std::optional<std::chrono::milliseconds> take_keep_alive(nlohmann::json& body);

// {"name", "model", "gpus"?, "replicas"?, "context"?, "max_seqs"?, "keep_alive"?}; `resolve` turns
// "model" (a file or a cached model's name) into a readable file's path or throws
// std::invalid_argument saying why. Throws BadModelSpec naming `where` ("model 2") and the field.
ModelSpec parse_model_spec(const nlohmann::json& j, const std::string& where,
                           const std::function<std::string(const std::string&)>& resolve);

// --model-config values (JSON text, one model each); a name given twice throws BadModelSpec.
std::vector<ModelSpec> parse_model_flags(const std::vector<std::string>& texts,
                                         const std::function<std::string(const std::string&)>& resolve);

}  // namespace loom::orchestrator
