// Values of the Jinja interpreter and their Python semantics (str, repr, ==, <, json.dumps).
#include "tokenizer/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "tokenizer/jinja/text.h"
#include "tokenizer/utf8.h"

namespace loom::tokenizer::jinja {

namespace {

[[noreturn]] void type_error(std::string message) {
    throw OperationError{OperationError::Kind::Type, std::move(message)};
}

// Python's str.isprintable() for the code points a chat template may plausibly hold.
bool printable(char32_t cp) {
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) return false;
    if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F)) return false;
    if ((cp >= 0x205F && cp <= 0x206F) || cp == 0x3000 || cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB)) return false;
    if ((cp >= 0xE000 && cp <= 0xF8FF) || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    return true;
}

std::string hex_escape(char32_t cp) {
    char buf[16];
    if (cp < 0x100)
        std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(cp));
    else if (cp < 0x10000)
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
    else
        std::snprintf(buf, sizeof buf, "\\U%08x", static_cast<unsigned>(cp));
    return buf;
}

std::string string_repr(const std::string& s) {
    const char quote = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
    std::string out(1, quote);
    for (size_t i = 0; i < s.size();) {
        const auto d = decode_utf8(s, i);
        const char32_t cp = d.cp;
        if (cp == static_cast<char32_t>(quote) || cp == '\\')
            out += '\\', out += static_cast<char>(cp);
        else if (cp == '\n')
            out += "\\n";
        else if (cp == '\r')
            out += "\\r";
        else if (cp == '\t')
            out += "\\t";
        else if (!d.valid || !printable(cp))
            out += hex_escape(cp);
        else
            out.append(s, i, d.length);
        i += d.length;
    }
    out += quote;
    return out;
}

std::string json_string(const std::string& s, bool ensure_ascii) {
    std::string out = "\"";
    for (size_t i = 0; i < s.size();) {
        const auto d = decode_utf8(s, i);
        const char32_t cp = d.cp;
        char buf[16];
        switch (cp) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (cp < 0x20 || (ensure_ascii && cp >= 0x7F)) {
                    if (cp >= 0x10000) {
                        const char32_t v = cp - 0x10000;
                        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)),
                                      static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
                    } else {
                        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
                    }
                    out += buf;
                } else {
                    out.append(s, i, d.length);
                }
        }
        i += d.length;
    }
    out += '"';
    return out;
}

void json_append(std::string& out, const Value& v, const JsonOptions& o, int depth) {
    auto newline = [&](int level) {
        if (!o.indent) return;
        out += '\n';
        for (int i = 0; i < level; ++i) out += *o.indent;
    };
    switch (v.kind()) {
        case Value::Kind::None: out += "null"; return;
        case Value::Kind::Bool: out += v.as_bool() ? "true" : "false"; return;
        case Value::Kind::Int: out += std::to_string(v.as_int()); return;
        case Value::Kind::Float: {
            const double d = v.as_double();
            if (std::isnan(d))
                out += "NaN";
            else if (std::isinf(d))
                out += d > 0 ? "Infinity" : "-Infinity";
            else
                out += float_repr(d);
            return;
        }
        case Value::Kind::String: out += json_string(v.as_string(), o.ensure_ascii); return;
        case Value::Kind::List: {
            const auto& items = v.list_data().items;
            if (items.empty()) {
                out += "[]";
                return;
            }
            out += '[';
            for (size_t i = 0; i < items.size(); ++i) {
                if (i) out += o.item_separator;
                newline(depth + 1);
                json_append(out, items[i], o, depth + 1);
            }
            newline(depth);
            out += ']';
            return;
        }
        case Value::Kind::Dict: {
            if (v.dict_data().kind != Value::DictKind::Plain)
                type_error("Object of type " + v.type_name() + " is not JSON serializable");
            std::vector<std::pair<std::string, const Value*>> entries;
            for (const auto& [key, value] : v.dict_data().entries) {
                std::string k;
                if (key.is_string())
                    k = key.as_string();
                else if (key.is_none())
                    k = "null";
                else if (key.is_bool())
                    k = key.as_bool() ? "true" : "false";
                else if (key.is_int() || key.is_float())
                    k = key.str();
                else
                    type_error("keys must be str, int, float, bool or None, not " + key.type_name());
                entries.emplace_back(std::move(k), &value);
            }
            if (o.sort_keys)
                std::stable_sort(entries.begin(), entries.end(),
                                 [](const auto& a, const auto& b) { return a.first < b.first; });
            if (entries.empty()) {
                out += "{}";
                return;
            }
            out += '{';
            for (size_t i = 0; i < entries.size(); ++i) {
                if (i) out += o.item_separator;
                newline(depth + 1);
                out += json_string(entries[i].first, o.ensure_ascii);
                out += o.key_separator;
                json_append(out, *entries[i].second, o, depth + 1);
            }
            newline(depth);
            out += '}';
            return;
        }
        default: type_error("Object of type " + v.type_name() + " is not JSON serializable");
    }
}

}  // namespace

const Value* Value::DictData::find(const Value& key) const {
    for (const auto& [k, v] : entries)
        if (k.equals(key)) return &v;
    return nullptr;
}

Value* Value::DictData::find(const Value& key) {
    for (auto& [k, v] : entries)
        if (k.equals(key)) return &v;
    return nullptr;
}

void Value::DictData::set(Value key, Value value) {
    if (Value* existing = find(key))
        *existing = std::move(value);
    else
        entries.emplace_back(std::move(key), std::move(value));
}

Value Value::undefined(std::string hint) {
    Value v;
    v.string_ = std::make_shared<const std::string>(std::move(hint));
    return v;
}
Value Value::none() {
    Value v;
    v.kind_ = Kind::None;
    return v;
}
Value Value::boolean(bool b) {
    Value v;
    v.kind_ = Kind::Bool;
    v.bool_ = b;
    v.int_ = b;
    return v;
}
Value Value::integer(int64_t i) {
    Value v;
    v.kind_ = Kind::Int;
    v.int_ = i;
    return v;
}
Value Value::number(double d) {
    Value v;
    v.kind_ = Kind::Float;
    v.float_ = d;
    return v;
}
Value Value::string(std::string s) {
    Value v;
    v.kind_ = Kind::String;
    v.string_ = std::make_shared<const std::string>(std::move(s));
    return v;
}
Value Value::list(std::vector<Value> items) {
    Value v;
    v.kind_ = Kind::List;
    v.list_ = std::make_shared<ListData>(ListData{std::move(items), false});
    return v;
}
Value Value::tuple(std::vector<Value> items) {
    Value v = list(std::move(items));
    v.list_->tuple = true;
    return v;
}
Value Value::dict(DictKind kind) {
    Value v;
    v.kind_ = Kind::Dict;
    v.dict_ = std::make_shared<DictData>();
    v.dict_->kind = kind;
    return v;
}
Value Value::function(std::string name, NativeFunction call) {
    Value v;
    v.kind_ = Kind::Function;
    v.function_ = std::make_shared<FunctionData>(FunctionData{std::move(name), std::move(call)});
    return v;
}

double Value::as_double() const { return kind_ == Kind::Float ? float_ : static_cast<double>(int_); }

const std::string& Value::undefined_hint() const {
    static const std::string kNone = "value is undefined";
    return string_ ? *string_ : kNone;
}

bool Value::truthy() const {
    switch (kind_) {
        case Kind::Undefined:
        case Kind::None: return false;
        case Kind::Bool: return bool_;
        case Kind::Int: return int_ != 0;
        case Kind::Float: return float_ != 0;
        case Kind::String: return !string_->empty();
        case Kind::List: return !list_->items.empty();
        case Kind::Dict: return dict_->kind != DictKind::Plain || !dict_->entries.empty();
        case Kind::Function: return true;
    }
    return false;
}

std::string Value::str() const {
    switch (kind_) {
        case Kind::Undefined: return "";
        case Kind::String: return *string_;
        default: return repr();
    }
}

std::string Value::repr() const {
    switch (kind_) {
        case Kind::Undefined: return "Undefined";
        case Kind::None: return "None";
        case Kind::Bool: return bool_ ? "True" : "False";
        case Kind::Int: return std::to_string(int_);
        case Kind::Float: return float_repr(float_);
        case Kind::String: return string_repr(*string_);
        case Kind::List: {
            std::string out = list_->tuple ? "(" : "[";
            for (size_t i = 0; i < list_->items.size(); ++i) {
                if (i) out += ", ";
                out += list_->items[i].repr();
            }
            if (list_->tuple && list_->items.size() == 1) out += ',';
            out += list_->tuple ? ")" : "]";
            return out;
        }
        case Kind::Dict: {
            std::string out = "{";
            for (size_t i = 0; i < dict_->entries.size(); ++i) {
                if (i) out += ", ";
                out += dict_->entries[i].first.repr() + ": " + dict_->entries[i].second.repr();
            }
            out += "}";
            if (dict_->kind == DictKind::Namespace) return "<Namespace " + out + ">";
            if (dict_->kind == DictKind::Loop) return "<LoopContext>";
            return out;
        }
        case Kind::Function: return "<function " + function_->name + ">";
    }
    return "";
}

std::string Value::type_name() const {
    switch (kind_) {
        case Kind::Undefined: return "Undefined";
        case Kind::None: return "NoneType";
        case Kind::Bool: return "bool";
        case Kind::Int: return "int";
        case Kind::Float: return "float";
        case Kind::String: return "str";
        case Kind::List: return list_->tuple ? "tuple" : "list";
        case Kind::Dict:
            return dict_->kind == DictKind::Namespace ? "Namespace"
                   : dict_->kind == DictKind::Loop    ? "LoopContext"
                                                      : "dict";
        case Kind::Function: return "function";
    }
    return "";
}

bool Value::equals(const Value& other) const {
    if (is_number() && other.is_number()) {
        if (kind_ == Kind::Float || other.kind_ == Kind::Float) return as_double() == other.as_double();
        return int_ == other.int_;
    }
    if (kind_ != other.kind_) return false;
    switch (kind_) {
        case Kind::Undefined:
        case Kind::None: return true;
        case Kind::String: return *string_ == *other.string_;
        case Kind::List: {
            if (list_->tuple != other.list_->tuple) return false;
            const auto &a = list_->items, &b = other.list_->items;
            if (a.size() != b.size()) return false;
            for (size_t i = 0; i < a.size(); ++i)
                if (!a[i].equals(b[i])) return false;
            return true;
        }
        case Kind::Dict: {
            if (dict_->kind != DictKind::Plain || other.dict_->kind != DictKind::Plain) return dict_ == other.dict_;
            if (dict_->entries.size() != other.dict_->entries.size()) return false;
            for (const auto& [k, v] : dict_->entries) {
                const Value* o = other.dict_->find(k);
                if (!o || !v.equals(*o)) return false;
            }
            return true;
        }
        case Kind::Function: return function_ == other.function_;
        default: return false;
    }
}

bool Value::less(const Value& other) const {
    if (is_number() && other.is_number()) {
        if (kind_ == Kind::Float || other.kind_ == Kind::Float) return as_double() < other.as_double();
        return int_ < other.int_;
    }
    if (is_string() && other.is_string()) return *string_ < *other.string_;  // UTF-8 order is code point order
    if (is_list() && other.is_list() && list_->tuple == other.list_->tuple) {
        const auto &a = list_->items, &b = other.list_->items;
        for (size_t i = 0; i < a.size() && i < b.size(); ++i)
            if (!a[i].equals(b[i])) return a[i].less(b[i]);
        return a.size() < b.size();
    }
    if (is_undefined() || other.is_undefined())
        throw OperationError{OperationError::Kind::Undefined, (is_undefined() ? *this : other).undefined_hint()};
    type_error("'<' not supported between instances of '" + type_name() + "' and '" + other.type_name() + "'");
}

std::string float_repr(double d) {
    if (std::isnan(d)) return "nan";
    if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
    if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
    char buf[64];
    const auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
    const std::string sci(buf, res.ptr);  // e.g. "-1.5e-07": shortest round-trip digits
    const size_t e_pos = sci.find('e');
    std::string mantissa = sci.substr(0, e_pos);
    const int exponent = std::stoi(sci.substr(e_pos + 1));
    const bool negative = mantissa[0] == '-';
    if (negative) mantissa.erase(0, 1);
    std::string digits;
    for (char c : mantissa)
        if (c != '.') digits += c;
    std::string out = negative ? "-" : "";
    if (exponent >= -4 && exponent < 16) {
        if (exponent < 0) {
            out += "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
        } else if (static_cast<size_t>(exponent) + 1 >= digits.size()) {
            out += digits + std::string(static_cast<size_t>(exponent) + 1 - digits.size(), '0') + ".0";
        } else {
            out += digits.substr(0, static_cast<size_t>(exponent) + 1) + "." +
                   digits.substr(static_cast<size_t>(exponent) + 1);
        }
        return out;
    }
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp[16];
    std::snprintf(exp, sizeof exp, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    return out + exp;
}

std::string to_json(const Value& v, const JsonOptions& options) {
    std::string out;
    json_append(out, v, options, 0);
    return out;
}

}  // namespace loom::tokenizer::jinja
