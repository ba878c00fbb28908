// Parsing configured models and keep_alive durations.
#include "orchestrator/model_specs.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "orchestrator/admission.h"

namespace loom::orchestrator {

using nlohmann::json;

namespace {

constexpr double kMaxKeepAliveS = 366.0 * 24 * 3600;  // a year: longer is surely a unit mistake

std::optional<std::chrono::milliseconds> from_seconds(double s) {
    if (!std::isfinite(s)) return std::nullopt;
    if (s < 0) return kKeepForever;
    if (s > kMaxKeepAliveS) return std::nullopt;
    return std::chrono::milliseconds(static_cast<int64_t>(std::llround(s * 1000)));
}

// Seconds per unit of a duration string, 0 when it is none.
double unit_seconds(const std::string& u) {
    if (u == "ns") return 1e-9;
    if (u == "us" || u == "µs") return 1e-6;
    if (u == "ms") return 1e-3;
    if (u == "s") return 1;
    if (u == "m") return 60;
    if (u == "h") return 3600;
    return 0;
}

// "1h30m", "5m", "-1s", "2.5s": number-unit pairs; nullopt when it is not one.
std::optional<double> duration_seconds(const std::string& text) {
    size_t i = 0;
    const bool negative = !text.empty() && text[0] == '-';
    if (negative || (!text.empty() && text[0] == '+')) ++i;
    if (i == text.size()) return std::nullopt;
    double total = 0;
    while (i < text.size()) {
        const size_t num_start = i;
        while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
        const std::string number = text.substr(num_start, i - num_start);
        if (number.empty() || number == "." || std::count(number.begin(), number.end(), '.') > 1) return std::nullopt;
        const size_t unit_start = i;
        while (i < text.size() && !std::isdigit(static_cast<unsigned char>(text[i])) && text[i] != '.') ++i;
        const double per = unit_seconds(text.substr(unit_start, i - unit_start));
        if (per == 0) return std::nullopt;
        total += std::stod(number) * per;
    }
    return negative ? -total : total;
}

bool plain_number(const std::string& s) {
    size_t i = !s.empty() && s[0] == '-' ? 1 : 0;
    return i < s.size() && std::all_of(s.begin() + static_cast<std::ptrdiff_t>(i), s.end(),
                                       [](unsigned char c) { return std::isdigit(c); });
}

bool good_name(const std::string& n) {
    return !n.empty() && n.size() <= 128 && std::all_of(n.begin(), n.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '.' || c == '_' || c == '-' || c == ':' || c == '/';
    });
}

int int_field(const json& j, const char* field, int low, int high, int fallback, const std::string& where) {
    if (!j.contains(field)) return fallback;
    const json& v = j[field];
    if (!v.is_number_integer() || v.get<int64_t>() < low || v.get<int64_t>() > high)
        throw BadModelSpec(where + ": " + field + " must be an integer in [" + std::to_string(low) + ", " +
                           std::to_string(high) + "]");
    return v.get<int>();
}

std::vector<std::string> gpus_field(const json& j, const std::string& where) {
    std::vector<std::string> out;
    if (!j.contains("gpus")) return out;
    const auto fail = [&] { throw BadModelSpec(where + ": gpus must be a non-empty array of device indexes or ids"); };
    if (!j["gpus"].is_array() || j["gpus"].empty()) fail();
    for (const json& g : j["gpus"]) {
        if (g.is_number_integer() && g.get<int64_t>() >= 0)
            out.push_back(g.dump());
        else if (g.is_string() && good_name(g.get<std::string>()))
            out.push_back(g.get<std::string>());
        else
            fail();
    }
    return out;
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_keep_alive(const json& v) {
    if (v.is_number()) return from_seconds(v.get<double>());
    if (!v.is_string()) return std::nullopt;
    const std::string s = v.get<std::string>();
    if (plain_number(s) && s.size() <= 12) return from_seconds(std::stod(s));
    if (s.size() > 64) return std::nullopt;
    const auto seconds = duration_seconds(s);
    return seconds ? from_seconds(*seconds) : std::nullopt;
}

std::optional<std::chrono::milliseconds> take_keep_alive(json& body) {
    if (!body.contains("keep_alive")) return std::nullopt;
    const json v = body["keep_alive"];
    body.erase("keep_alive");
    if (v.is_null()) return std::nullopt;
    const auto k = parse_keep_alive(v);
    if (!k)
        throw BadField("keep_alive",
                       "keep_alive must be a number of seconds or a duration such as \"5m\", \"1h30m\" "
                       "or \"0\" (0 unloads the model after the request; negative keeps it loaded)");
    return k;
}

ModelSpec parse_model_spec(const json& j, const std::string& where,
                           const std::function<std::string(const std::string&)>& resolve) {
    if (!j.is_object()) throw BadModelSpec(where + ": must be a JSON object");
    static const std::set<std::string> known = {"name",    "model",    "gpus",      "replicas",
                                                "context", "max_seqs", "keep_alive"};
    for (const auto& [k, v] : j.items())
        if (!known.contains(k))
            throw BadModelSpec(where + ": unknown field '" + k +
                               "' (name, model, gpus, replicas, context, max_seqs, keep_alive)");
    ModelSpec m;
    if (!j.contains("name") || !j["name"].is_string() || !good_name(j["name"].get<std::string>()))
        throw BadModelSpec(where + ": name must be 1 to 128 letters, digits or . _ - : /");
    m.name = j["name"];
    const std::string w = where + " (" + m.name + ")";
    if (!j.contains("model") || !j["model"].is_string() || j["model"].get<std::string>().empty())
        throw BadModelSpec(w + ": model must be a GGUF file or a cached model's name");
    try {
        m.path = resolve(j["model"].get<std::string>());
    } catch (const std::invalid_argument& e) {
        throw BadModelSpec(w + ": model: " + e.what());
    }
    m.gpus = gpus_field(j, w);
    m.replicas = int_field(j, "replicas", 1, 64, 1, w);
    m.context = int_field(j, "context", 1, 1 << 24, 0, w);
    m.max_seqs = int_field(j, "max_seqs", 1, 4096, 0, w);
    if (j.contains("keep_alive")) {
        const auto k = parse_keep_alive(j["keep_alive"]);
        if (!k) throw BadModelSpec(w + ": keep_alive must be seconds or a duration such as \"5m\" (negative: forever)");
        m.keep_alive = *k;
    }
    return m;
}

std::vector<ModelSpec> parse_model_flags(const std::vector<std::string>& texts,
                                         const std::function<std::string(const std::string&)>& resolve) {
    std::vector<ModelSpec> out;
    std::set<std::string> names;
    for (size_t i = 0; i < texts.size(); ++i) {
        const std::string where = "model " + std::to_string(i + 1);
        const json j = json::parse(texts[i], nullptr, false);
        if (j.is_discarded()) throw BadModelSpec(where + ": not valid JSON");
        ModelSpec m = parse_model_spec(j, where, resolve);
        if (!names.insert(m.name).second) throw BadModelSpec(where + ": the name '" + m.name + "' is given twice");
        out.push_back(std::move(m));
    }
    return out;
}

}  // namespace loom::orchestrator
