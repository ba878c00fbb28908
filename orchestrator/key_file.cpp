// Reading and checking the --api-keys file.
#include "orchestrator/key_file.h"

#include <cmath>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>

namespace loom::orchestrator {

using nlohmann::json;

namespace {

double limit(const json& entry, const char* field, const std::string& where) {
    if (!entry.contains(field)) return 0;
    const json& v = entry[field];
    // Below one a bucket would never hold a whole request.
    if (!v.is_number() || !std::isfinite(v.get<double>()) || (v.get<double>() != 0 && v.get<double>() < 1))
        throw BadKeyFile(where + "." + field + " must be a number >= 1, or 0 for no limit");
    return v.get<double>();
}

std::string text_field(const json& entry, const char* field, const std::string& where) {
    if (!entry.contains(field) || !entry[field].is_string() || entry[field].get<std::string>().empty())
        throw BadKeyFile(where + "." + field + " must be a non-empty string");
    return entry[field].get<std::string>();
}

}  // namespace

std::vector<KeyEntry> parse_key_file(const std::string& text, const std::string& path) {
    const std::string file = "--api-keys " + path + ": ";
    const json j = json::parse(text, nullptr, false);
    if (!j.is_object() || !j.contains("keys") || !j["keys"].is_array())
        throw BadKeyFile(file + "expected a JSON object {\"keys\": [{\"key\", \"name\", ...}]}");
    std::vector<KeyEntry> out;
    std::set<std::string> keys, names;
    for (size_t i = 0; i < j["keys"].size(); ++i) {
        const json& e = j["keys"][i];
        const std::string where = file + "keys[" + std::to_string(i) + "]";
        if (!e.is_object()) throw BadKeyFile(where + " must be an object");
        for (const auto& [field, value] : e.items())
            if (field != "key" && field != "name" && field != "requests_per_minute" && field != "tokens_per_minute")
                throw BadKeyFile(where + ": unknown field '" + field + "'");
        KeyEntry k{text_field(e, "key", where), text_field(e, "name", where), limit(e, "requests_per_minute", where),
                   limit(e, "tokens_per_minute", where)};
        if (!keys.insert(k.key).second) throw BadKeyFile(where + ".key repeats an earlier key");
        if (!names.insert(k.name).second) throw BadKeyFile(where + ".name '" + k.name + "' is used twice");
        out.push_back(std::move(k));
    }
    return out;
}

std::vector<KeyEntry> load_key_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw BadKeyFile("--api-keys " + path + ": cannot be read");
    return parse_key_file({std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()}, path);
}

}  // namespace loom::orchestrator
