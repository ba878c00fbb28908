// The config file's keys (one table line each) and their translation into command-line arguments.
#include "orchestrator/config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

namespace loom::orchestrator {

using nlohmann::json;

namespace {

enum class Kind {
    string,   // "host": "0.0.0.0"
    integer,  // "port": 9000
    number,   // "promote_after": 2.5
    strings,  // "workers": ["http://...", ...]: the flag once per element
    list,     // "gpus": [0, 1] or ["GPU-UUID", ...]: one comma-separated value
    objects,  // "presets": [{...}, ...]: the flag once per element, as JSON text
};

struct Key {
    const char* name;
    const char* flag;
    Kind kind;
};

// Every setting a config file may hold. A new flag becomes a config key with one line here.
constexpr Key kKeys[] = {
    {"workers", "--worker", Kind::strings},
    {"host", "--host", Kind::string},
    {"port", "--port", Kind::integer},
    {"routing", "--routing", Kind::string},
    {"upstream", "--upstream", Kind::string},
    {"retries", "--retries", Kind::integer},
    {"api_keys", "--api-key", Kind::strings},
    {"admin_key", "--admin-key", Kind::string},
    {"log", "--log", Kind::string},
    {"drain_timeout", "--drain-timeout", Kind::integer},
    {"spawn", "--spawn", Kind::string},
    {"backend", "--backend", Kind::string},
    {"gpus", "--gpus", Kind::list},
    {"cpu_workers", "--cpu-workers", Kind::integer},
    {"worker_bin", "--worker-bin", Kind::string},
    {"worker_args", "--worker-arg", Kind::strings},
    {"api_keys_file", "--api-keys", Kind::string},
    {"tokenizers", "--tokenizer", Kind::strings},
    {"register_secret", "--register-secret", Kind::string},
    {"queue_size", "--queue-size", Kind::integer},
    {"promote_after", "--promote-after", Kind::number},
    {"worker_queue", "--worker-queue", Kind::integer},
    {"request_timeout", "--request-timeout", Kind::number},
    {"presets", "--preset", Kind::objects},
    {"models", "--registry-model", Kind::objects},
    {"vram_budget", "--vram-budget", Kind::string},
    {"load_wait", "--load-wait", Kind::number},
    {"load_timeout", "--load-timeout", Kind::number},
};

const char* expected(Kind k) {
    switch (k) {
        case Kind::string: return "a string";
        case Kind::integer: return "an integer";
        case Kind::number: return "a number";
        case Kind::strings: return "an array of strings";
        case Kind::list: return "an array of integers or strings";
        case Kind::objects: return "an array of objects";
    }
    return "";
}

// The value as the flag's text; nullopt when its JSON type is not the key's.
std::optional<std::vector<std::string>> flag_values(const json& v, Kind k) {
    const auto scalar = [](const json& e) -> std::optional<std::string> {
        if (e.is_string()) return e.get<std::string>();
        if (e.is_number_integer()) return e.dump();
        return std::nullopt;
    };
    if (k == Kind::string && v.is_string()) return std::vector<std::string>{v.get<std::string>()};
    if (k == Kind::integer && v.is_number_integer()) return std::vector<std::string>{v.dump()};
    if (k == Kind::number && v.is_number()) return std::vector<std::string>{v.dump()};
    if ((k != Kind::strings && k != Kind::list && k != Kind::objects) || !v.is_array()) return std::nullopt;
    std::vector<std::string> out;
    if (k == Kind::objects) {
        for (const json& e : v) {
            if (!e.is_object()) return std::nullopt;
            out.push_back(e.dump());
        }
        return out;
    }
    for (const json& e : v) {
        if (k == Kind::strings && !e.is_string()) return std::nullopt;
        const auto s = scalar(e);
        if (!s) return std::nullopt;
        out.push_back(*s);
    }
    if (k == Kind::list) {
        std::string joined;
        for (const auto& s : out) joined += (joined.empty() ? "" : ",") + s;
        return std::vector<std::string>{joined};
    }
    return out;
}

json read_json(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw BadConfig("--config " + path + ": cannot be read");
    std::stringstream text;
    text << in.rdbuf();
    try {
        return json::parse(text.str());
    } catch (const json::exception& e) {
        throw BadConfig("--config " + path + ": not valid JSON: " + e.what());
    }
}

}  // namespace

std::vector<std::string> config_arguments(const std::string& path,
                                          const std::function<bool(const std::string& flag)>& given) {
    const json j = read_json(path);
    if (!j.is_object()) throw BadConfig("--config " + path + ": the file must hold a JSON object");
    std::vector<std::string> args;
    for (const auto& [name, value] : j.items()) {
        const Key* key = nullptr;
        for (const Key& k : kKeys)
            if (name == k.name) key = &k;
        if (!key) throw BadConfig("--config " + path + ": unknown key '" + name + "'");
        const auto values = flag_values(value, key->kind);
        if (!values) throw BadConfig("--config " + path + ": '" + name + "' must be " + expected(key->kind));
        if (given(key->flag)) continue;
        for (const auto& v : *values) args.push_back(std::string(key->flag) + "=" + v);
    }
    return args;
}

}  // namespace loom::orchestrator
