// Preset parsing (every field checked at start) and the rewriting of a request that names one.
#include "orchestrator/presets.h"

#include <cmath>
#include <limits>

namespace loom::orchestrator {

using nlohmann::json;

namespace {

// A generation field a preset may default, with the worker's own range (docs/API.md).
struct Parameter {
    const char* name;
    bool integer;
    double low, high;
    bool low_open;  // (low, ...: the low end itself is refused
};

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr Parameter kParameters[] = {
    {"temperature", false, 0, 2, false},
    {"top_p", false, 0, 1, true},
    {"top_k", true, 0, kInf, false},
    {"min_p", false, 0, 1, false},
    {"presence_penalty", false, -2, 2, false},
    {"frequency_penalty", false, -2, 2, false},
    {"repetition_penalty", false, 0, 10, true},
    {"max_tokens", true, 1, kInf, false},
    {"seed", true, 0, kInf, false},
};
constexpr size_t kMaxStops = 16;  // the worker's limit

std::string range_text(const Parameter& p) {
    const auto num = [](double v) {
        std::string s = std::to_string(v);
        s.erase(s.find_last_not_of('0') + 1);
        if (s.back() == '.') s.pop_back();
        return s;
    };
    const std::string kind = p.integer ? "an integer" : "a number";
    if (p.high == kInf) return kind + " >= " + num(p.low);
    return kind + " in " + (p.low_open ? "(" : "[") + num(p.low) + ", " + num(p.high) + "]";
}

void check_stop(const json& v, const std::string& where) {
    const auto fail = [&] {
        throw BadPreset(where + ": parameters.stop must be a non-empty string or a list of at most 16 of them");
    };
    if (v.is_string()) {
        if (v.get<std::string>().empty()) fail();
        return;
    }
    if (!v.is_array() || v.empty() || v.size() > kMaxStops) fail();
    for (const json& s : v)
        if (!s.is_string() || s.get<std::string>().empty()) fail();
}

void check_parameter(const std::string& name, const json& v, const std::string& where) {
    if (name == "stop") return check_stop(v, where);
    for (const Parameter& p : kParameters) {
        if (name != p.name) continue;
        const bool typed = p.integer ? v.is_number_integer() : v.is_number();
        const double x = typed ? v.get<double>() : 0;
        const bool in = typed && std::isfinite(x) && (p.low_open ? x > p.low : x >= p.low) && x <= p.high;
        if (!in) throw BadPreset(where + ": parameters." + name + " must be " + range_text(p));
        return;
    }
    std::string known;
    for (const Parameter& p : kParameters) known += std::string(p.name) + ", ";
    throw BadPreset(where + ": parameters." + name + " is not a parameter a preset may set (" + known + "stop)");
}

std::string required_string(const json& j, const char* field, const std::string& where) {
    if (!j.contains(field) || !j[field].is_string() || j[field].get<std::string>().empty())
        throw BadPreset(where + ": " + field + " must be a non-empty string");
    return j[field];
}

bool set(const json& body, const char* field) { return body.contains(field) && !body[field].is_null(); }

}  // namespace

Preset parse_preset(const json& j, const std::string& where) {
    if (!j.is_object()) throw BadPreset(where + ": must be a JSON object");
    for (const auto& [key, value] : j.items())
        if (key != "name" && key != "model" && key != "system" && key != "parameters")
            throw BadPreset(where + ": unknown field '" + key + "' (name, model, system, parameters)");
    Preset p;
    p.name = required_string(j, "name", where);
    const std::string named = where + " '" + p.name + "'";
    p.model = required_string(j, "model", named);
    if (j.contains("system")) {
        if (!j["system"].is_string()) throw BadPreset(named + ": system must be a string");
        p.system = j["system"];
    }
    p.parameters = j.contains("parameters") ? j["parameters"] : json::object();
    if (!p.parameters.is_object()) throw BadPreset(named + ": parameters must be a JSON object");
    for (const auto& [key, value] : p.parameters.items()) check_parameter(key, value, named);
    return p;
}

std::map<std::string, Preset> parse_preset_flags(const std::vector<std::string>& texts) {
    std::map<std::string, Preset> out;
    for (size_t i = 0; i < texts.size(); ++i) {
        const std::string where = "preset " + std::to_string(i + 1);
        const json j = json::parse(texts[i], nullptr, false);
        if (j.is_discarded()) throw BadPreset(where + ": not valid JSON");
        Preset p = parse_preset(j, where);
        const std::string name = p.name;
        if (!out.emplace(name, std::move(p)).second)
            throw BadPreset(where + ": the name '" + name + "' is taken by an earlier preset");
    }
    return out;
}

void apply_preset(const Preset& preset, json& body, bool chat) {
    body["model"] = preset.model;
    for (const auto& [key, value] : preset.parameters.items()) {
        // Chat's newer name for the limit counts as the client's own.
        const bool given =
            set(body, key.c_str()) || (chat && key == "max_tokens" && set(body, "max_completion_tokens"));
        if (!given) body[key] = value;
    }
    if (!chat || preset.system.empty() || !body.contains("messages") || !body["messages"].is_array()) return;
    for (const json& m : body["messages"])
        if (m.is_object() && m.contains("role") && m["role"] == "system") return;
    body["messages"].insert(body["messages"].begin(), json{{"role", "system"}, {"content", preset.system}});
}

json preset_model_object(const Preset& preset) {
    return {{"id", preset.name},      {"object", "model"},    {"owned_by", "loom"},
            {"parent", preset.model}, {"root", preset.model}, {"preset", true}};
}

}  // namespace loom::orchestrator
