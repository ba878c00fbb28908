// Presets: a name standing for a served model plus a system prompt and default sampling parameters
// (what an Ollama Modelfile gives), applied to a request before it is routed to that model's workers.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace loom::orchestrator {

// A preset that does not parse; the message names the preset and the field.
class BadPreset : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

struct Preset {
    std::string name;
    std::string model;          // the base model, as its workers name it
    std::string system;         // "" = none
    nlohmann::json parameters;  // an object of generation fields as the worker takes them (stop included)
};

// {"name", "model", "system"?, "parameters"?} with every parameter checked against the worker's
// ranges (docs/API.md), so a bad preset fails at start, not on every request. `where` prefixes
// the message ("preset 2"). Throws BadPreset.
Preset parse_preset(const nlohmann::json& j, const std::string& where);

// --preset values (JSON text, one preset each) by name; "preset N" (from 1) in messages. A name
// given twice or text that is not JSON throws BadPreset.
std::map<std::string, Preset> parse_preset_flags(const std::vector<std::string>& texts);

// Rewrites a client's body in place: `model` becomes the base model; every parameter the body does
// not set is the preset's; for chat, the system prompt becomes the first message unless a message
// with role "system" is already there. Completions take raw text, so they get no system prompt.
void apply_preset(const Preset& preset, nlohmann::json& body, bool chat);

// The preset as /v1/models lists it: parent and root name the base model.
nlohmann::json preset_model_object(const Preset& preset);

}  // namespace loom::orchestrator
