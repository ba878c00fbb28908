// Built-in filters, tests, globals and methods of str/dict/list values, with Python semantics.
#include "tokenizer/jinja/builtins.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <unordered_map>

#include "tokenizer/jinja/text.h"
#include "tokenizer/utf8.h"

namespace loom::tokenizer::jinja::builtins {

namespace {

using Kind = OperationError::Kind;

[[noreturn]] void fail(Kind kind, std::string message) { throw OperationError{kind, std::move(message)}; }
[[noreturn]] void type_error(std::string message) { fail(Kind::Type, std::move(message)); }

// Positional-or-keyword parameters of a builtin, read like Python binds them.
class Params {
public:
    Params(CallArgs& args, std::string_view function, std::initializer_list<std::string_view> names)
        : args_(args), function_(function), names_(names) {
        if (args.positional.size() > names_.size())
            type_error(std::string(function) + "() takes at most " + std::to_string(names_.size()) + " argument(s) (" +
                       std::to_string(args.positional.size()) + " given)");
        for (const auto& [key, _] : args.keyword)
            if (std::find(names_.begin(), names_.end(), key) == names_.end())
                type_error(std::string(function) + "() got an unexpected keyword argument '" + key + "'");
    }
    const Value* get(size_t i) const {
        if (i < args_.positional.size()) return &args_.positional[i];
        for (const auto& [key, value] : args_.keyword)
            if (key == names_[i]) return &value;
        return nullptr;
    }
    Value get_or(size_t i, Value fallback) const {
        const Value* v = get(i);
        return v ? *v : std::move(fallback);
    }
    const Value& required(size_t i) const {
        const Value* v = get(i);
        if (!v) type_error(std::string(function_) + "() missing required argument '" + std::string(names_[i]) + "'");
        return *v;
    }
    std::string string(size_t i, std::string fallback) const {
        const Value* v = get(i);
        return v && !v->is_none() ? v->str() : std::move(fallback);
    }
    std::optional<std::string> optional_string(size_t i) const {
        const Value* v = get(i);
        if (!v || v->is_none()) return std::nullopt;
        if (!v->is_string())
            type_error(std::string(function_) + "() argument must be str or None, not " + v->type_name());
        return v->as_string();
    }
    int64_t integer(size_t i, int64_t fallback) const {
        const Value* v = get(i);
        if (!v || v->is_none()) return fallback;
        if (!v->is_int() && !v->is_bool())
            type_error("'" + v->type_name() + "' object cannot be interpreted as an integer");
        return v->as_int();
    }
    bool flag(size_t i, bool fallback) const {
        const Value* v = get(i);
        return v ? v->truthy() : fallback;
    }

private:
    CallArgs& args_;
    std::string_view function_;
    std::vector<std::string_view> names_;
};

const std::string& require_string(const Value& v, std::string_view what) {
    if (!v.is_string()) type_error(std::string(what) + " requires a str, not '" + v.type_name() + "'");
    return v.as_string();
}

Value make_strings(const std::vector<std::string>& parts) {
    std::vector<Value> items;
    items.reserve(parts.size());
    for (const auto& p : parts) items.push_back(Value::string(p));
    return Value::list(std::move(items));
}

std::string object_repr(const Value& v) { return v.is_none() ? "None" : v.type_name() + " object"; }

Value missing_attribute(const Value& object, const std::string& name) {
    return Value::undefined("'" + object_repr(object) + "' has no attribute '" + name + "'");
}

// ---------------------------------------------------------------- str, dict and list methods

int64_t find_code_point_index(const std::string& s, const std::string& sub, bool reverse) {
    const size_t at = reverse ? s.rfind(sub) : s.find(sub);
    if (at == std::string::npos) return -1;
    return static_cast<int64_t>(text::length(std::string_view(s).substr(0, at)));
}

bool affix_matches(const std::string& s, const Value& affix, bool prefix, std::string_view method) {
    auto one = [&](const Value& a) {
        const std::string& x = require_string(a, method);
        return prefix ? s.starts_with(x) : s.ends_with(x);
    };
    if (affix.is_list() && affix.list_data().tuple) {
        for (const auto& a : affix.list_data().items)
            if (one(a)) return true;
        return false;
    }
    return one(affix);
}

template <class Pred>
bool all_code_points(const std::string& s, Pred pred) {
    if (s.empty()) return false;
    for (char32_t cp : text::decode(s))
        if (!pred(cp)) return false;
    return true;
}

bool cased_test(const std::string& s, bool want_lower) {
    bool any_cased = false;
    for (char32_t cp : text::decode(s)) {
        if (!text::is_cased(cp)) continue;
        any_cased = true;
        const bool is_lower = text::to_upper(cp) != cp || cp == 0xDF;
        if (is_lower != want_lower) return false;
    }
    return any_cased;
}

Value string_method(const Value& self, const std::string& name) {
    const std::string s = self.as_string();
    auto bind = [&](auto body) { return Value::function("str." + name, body); };
    if (name == "strip" || name == "lstrip" || name == "rstrip")
        return bind([s, name](CallArgs& a) {
            Params p(a, name, {"chars"});
            return Value::string(text::strip(s, p.optional_string(0), name != "rstrip", name != "lstrip"));
        });
    if (name == "startswith" || name == "endswith")
        return bind([s, name](CallArgs& a) {
            Params p(a, name, {"prefix"});
            return Value::boolean(affix_matches(s, p.required(0), name == "startswith", name));
        });
    if (name == "split" || name == "rsplit")
        return bind([s, name](CallArgs& a) {
            Params p(a, name, {"sep", "maxsplit"});
            return make_strings(text::split(s, p.optional_string(0), p.integer(1, -1), name == "rsplit"));
        });
    if (name == "splitlines")
        return bind([s](CallArgs& a) {
            Params p(a, "splitlines", {});
            return make_strings(text::splitlines(s));
        });
    if (name == "lower" || name == "upper" || name == "title" || name == "capitalize")
        return bind([s, name](CallArgs& a) {
            Params p(a, name, {});
            if (name == "lower") return Value::string(text::lower(s));
            if (name == "upper") return Value::string(text::upper(s));
            if (name == "title") return Value::string(text::title(s));
            return Value::string(text::capitalize(s));
        });
    if (name == "replace")
        return bind([s](CallArgs& a) {
            Params p(a, "replace", {"old", "new", "count"});
            return Value::string(text::replace(s, require_string(p.required(0), "replace()"),
                                               require_string(p.required(1), "replace()"), p.integer(2, -1)));
        });
    if (name == "find" || name == "rfind")
        return bind([s, name](CallArgs& a) {
            Params p(a, name, {"sub"});
            return Value::integer(find_code_point_index(s, require_string(p.required(0), name), name == "rfind"));
        });
    if (name == "count")
        return bind([s](CallArgs& a) {
            Params p(a, "count", {"sub"});
            const std::string& sub = require_string(p.required(0), "count()");
            if (sub.empty()) return Value::integer(static_cast<int64_t>(text::length(s)) + 1);
            int64_t n = 0;
            for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
            return Value::integer(n);
        });
    if (name == "join")
        return bind([s](CallArgs& a) {
            Params p(a, "join", {"iterable"});
            std::string out;
            size_t i = 0;
            for (const auto& item : iterate(p.required(0))) {
                if (!item.is_string())
                    type_error("sequence item " + std::to_string(i) + ": expected str instance, " + item.type_name() +
                               " found");
                if (i++) out += s;
                out += item.as_string();
            }
            return Value::string(std::move(out));
        });
    if (name == "removeprefix" || name == "removesuffix")
        return bind([s, name](CallArgs& a) {
            Params p(a, name, {"affix"});
            const std::string& x = require_string(p.required(0), name);
            if (name == "removeprefix" && s.starts_with(x)) return Value::string(s.substr(x.size()));
            if (name == "removesuffix" && !x.empty() && s.ends_with(x))
                return Value::string(s.substr(0, s.size() - x.size()));
            return Value::string(s);
        });
    if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" || name == "islower" ||
        name == "isupper")
        return bind([s, name](CallArgs& a) {
            Params p(a, name, {});
            auto digit = [](char32_t c) { return c >= '0' && c <= '9'; };
            auto alpha = [](char32_t c) {
                return text::is_cased(c) || (c >= 0x80 && !text::is_space(c) && c >= 0x3040);
            };
            if (name == "isdigit") return Value::boolean(all_code_points(s, digit));
            if (name == "isalpha") return Value::boolean(all_code_points(s, alpha));
            if (name == "isalnum")
                return Value::boolean(all_code_points(s, [&](char32_t c) { return digit(c) || alpha(c); }));
            if (name == "isspace") return Value::boolean(all_code_points(s, text::is_space));
            return Value::boolean(cased_test(s, name == "islower"));
        });
    return missing_attribute(self, name);
}

Value dict_method(const Value& self, const std::string& name) {
    if (name == "items" || name == "keys" || name == "values")
        return Value::function("dict." + name, [self, name](CallArgs& a) {
            Params p(a, name, {});
            std::vector<Value> out;
            for (const auto& [k, v] : self.dict_data().entries) {
                if (name == "items")
                    out.push_back(Value::tuple({k, v}));
                else
                    out.push_back(name == "keys" ? k : v);
            }
            return Value::list(std::move(out));
        });
    if (name == "get")
        return Value::function("dict.get", [self](CallArgs& a) {
            Params p(a, "get", {"key", "default"});
            const Value* v = self.dict_data().find(p.required(0));
            return v ? *v : p.get_or(1, Value::none());
        });
    return Value();
}

Value list_method(const Value& self, const std::string& name) {
    if (name == "index")
        return Value::function("list.index", [self](CallArgs& a) {
            Params p(a, "index", {"value"});
            const auto& items = self.list_data().items;
            for (size_t i = 0; i < items.size(); ++i)
                if (items[i].equals(p.required(0))) return Value::integer(static_cast<int64_t>(i));
            fail(Kind::Value, p.required(0).repr() + " is not in list");
        });
    if (name == "count")
        return Value::function("list.count", [self](CallArgs& a) {
            Params p(a, "count", {"value"});
            int64_t n = 0;
            for (const auto& item : self.list_data().items) n += item.equals(p.required(0));
            return Value::integer(n);
        });
    return Value();
}

// ---------------------------------------------------------------- helpers shared by filters

// `attribute` as the filters take it: "a.b" walks attributes, digits index.
Value attribute_path(const Value& item, const Value& attribute) {
    if (attribute.is_int()) return get_item(item, attribute);
    Value cur = item;
    for (const auto& part : text::split(attribute.str(), std::string("."), -1, false)) {
        const bool numeric =
            !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
        cur = numeric ? get_item(cur, Value::integer(std::strtoll(part.c_str(), nullptr, 10)))
                      : get_item(cur, Value::string(part));
        if (cur.is_undefined()) return cur;
    }
    return cur;
}

Value sort_key(const Value& item, const Value* attribute, bool case_sensitive) {
    Value key = attribute && !attribute->is_none() ? attribute_path(item, *attribute) : item;
    if (!case_sensitive && key.is_string()) return Value::string(text::lower(key.as_string()));
    return key;
}

CallArgs rest_args(const CallArgs& args, size_t skip) {
    CallArgs out;
    for (size_t i = skip; i < args.positional.size(); ++i) out.positional.push_back(args.positional[i]);
    out.keyword = args.keyword;
    return out;
}

std::string py_int_text(std::string s) {
    std::string out;
    for (char c : s)
        if (c != '_') out += c;
    return out;
}

std::optional<int64_t> parse_int(const std::string& raw, int base) {
    const std::string s = py_int_text(text::strip(raw, std::nullopt, true, true));
    if (s.empty()) return std::nullopt;
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(s.c_str(), &end, base);
    if (errno == ERANGE || *end != '\0' || end == s.c_str()) return std::nullopt;
    return v;
}

std::optional<double> parse_float(const std::string& raw) {
    const std::string s = py_int_text(text::strip(raw, std::nullopt, true, true));
    if (s.empty()) return std::nullopt;
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (*end != '\0') return std::nullopt;
    return v;
}

Value to_int(const Value& v, const Value& fallback, int base) {
    if (v.is_int() || v.is_bool()) return Value::integer(v.as_int());
    if (v.is_float()) {
        if (!std::isfinite(v.as_double())) return fallback;
        return Value::integer(static_cast<int64_t>(std::trunc(v.as_double())));
    }
    if (v.is_string()) {
        if (auto i = parse_int(v.as_string(), base)) return Value::integer(*i);
        if (auto d = parse_float(v.as_string()); d && std::isfinite(*d))
            return Value::integer(static_cast<int64_t>(std::trunc(*d)));
    }
    return fallback;
}

std::string html_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&#34;"; break;
            case '\'': out += "&#39;"; break;
            default: out += c;
        }
    }
    return out;
}

// Jinja's title filter: words start after whitespace, '-', '(', '{', '[' or '<'.
std::string jinja_title(const std::string& s) {
    std::string out;
    bool word_start = true;
    for (size_t i = 0; i < s.size();) {
        const auto d = decode_utf8(s, i);
        const char32_t cp = d.cp;
        const bool separator = text::is_space(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
        if (separator) {
            out.append(s, i, d.length);
            word_start = true;
        } else {
            append_utf8(out, word_start ? text::to_upper(cp) : text::to_lower(cp));
            word_start = false;
        }
        i += d.length;
    }
    return out;
}

Value python_round(const Value& v, int64_t precision, const std::string& method) {
    if (!v.is_number()) type_error("type " + v.type_name() + " doesn't define __round__ method");
    if (method == "common" && (v.is_int() || v.is_bool()) && precision >= 0) return Value::integer(v.as_int());
    const double scale = std::pow(10.0, static_cast<double>(precision));
    const double x = v.as_double() * scale;
    double r;
    if (method == "common")
        r = std::nearbyint(x);  // half to even, as Python's round()
    else if (method == "ceil")
        r = std::ceil(x);
    else if (method == "floor")
        r = std::floor(x);
    else
        fail(Kind::Value, "method must be 'common', 'ceil' or 'floor'");
    return Value::number(r / scale);
}

// ---------------------------------------------------------------- filters

using Filter = Value (*)(const Value& input, CallArgs& args);

Value f_abs(const Value& v, CallArgs& a) {
    Params p(a, "abs", {});
    if (v.is_float()) return Value::number(std::fabs(v.as_double()));
    if (v.is_int() || v.is_bool()) return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
    type_error("bad operand type for abs(): '" + v.type_name() + "'");
}
Value f_attr(const Value& v, CallArgs& a) {
    Params p(a, "attr", {"name"});
    return get_attribute(v, p.required(0).str());
}
Value f_capitalize(const Value& v, CallArgs& a) {
    Params p(a, "capitalize", {});
    return Value::string(text::capitalize(v.str()));
}
Value f_default(const Value& v, CallArgs& a) {
    Params p(a, "default", {"default_value", "boolean"});
    if (v.is_undefined() || (p.flag(1, false) && !v.truthy())) return p.get_or(0, Value::string(""));
    return v;
}
Value f_dictsort(const Value& v, CallArgs& a) {
    Params p(a, "dictsort", {"case_sensitive", "by", "reverse"});
    if (!v.is_dict()) type_error("dictsort requires a mapping");
    const bool case_sensitive = p.flag(0, false), reverse = p.flag(2, false);
    const size_t pos = p.string(1, "key") == "value" ? 1 : 0;
    std::vector<Value> items;
    for (const auto& [k, val] : v.dict_data().entries) items.push_back(Value::tuple({k, val}));
    std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
        const Value kx = sort_key(x.list_data().items[pos], nullptr, case_sensitive);
        const Value ky = sort_key(y.list_data().items[pos], nullptr, case_sensitive);
        return reverse ? ky.less(kx) : kx.less(ky);
    });
    return Value::list(std::move(items));
}
Value f_escape(const Value& v, CallArgs& a) {
    Params p(a, "escape", {});
    return Value::string(html_escape(v.str()));
}
Value f_first(const Value& v, CallArgs& a) {
    Params p(a, "first", {});
    const auto items = iterate(v);
    if (items.empty()) return Value::undefined("No first item, sequence was empty.");
    return items.front();
}
Value f_float(const Value& v, CallArgs& a) {
    Params p(a, "float", {"default"});
    if (v.is_undefined()) fail(Kind::Undefined, v.undefined_hint());
    if (v.is_number()) return Value::number(v.as_double());
    if (v.is_string())
        if (auto d = parse_float(v.as_string())) return Value::number(*d);
    return p.get_or(0, Value::number(0.0));
}
Value f_indent(const Value& v, CallArgs& a) {
    Params p(a, "indent", {"width", "first", "blank"});
    if (v.is_undefined()) fail(Kind::Undefined, v.undefined_hint());
    if (!v.is_string()) type_error("unsupported operand type(s) for +=: '" + v.type_name() + "' and 'str'");
    const Value width = p.get_or(0, Value::integer(4));
    const std::string indention = width.is_string()
                                      ? width.as_string()
                                      : std::string(static_cast<size_t>(std::max<int64_t>(0, p.integer(0, 4))), ' ');
    const bool first = p.flag(1, false), blank = p.flag(2, false);
    auto lines = text::splitlines(v.str() + "\n");
    std::string rv;
    if (blank) {
        for (size_t i = 0; i < lines.size(); ++i) rv += (i ? "\n" + indention : "") + lines[i];
    } else {
        rv = lines.empty() ? "" : lines[0];
        for (size_t i = 1; i < lines.size(); ++i) rv += "\n" + (lines[i].empty() ? lines[i] : indention + lines[i]);
    }
    if (first) rv = indention + rv;
    return Value::string(std::move(rv));
}
Value f_int(const Value& v, CallArgs& a) {
    Params p(a, "int", {"default", "base"});
    if (v.is_undefined()) fail(Kind::Undefined, v.undefined_hint());
    return to_int(v, p.get_or(0, Value::integer(0)), static_cast<int>(p.integer(1, 10)));
}
Value f_items(const Value& v, CallArgs& a) {
    Params p(a, "items", {});
    if (v.is_undefined()) return Value::list();
    if (!v.is_dict() || v.dict_data().kind != Value::DictKind::Plain)
        type_error("Can only get item pairs from a mapping.");
    std::vector<Value> out;
    for (const auto& [k, val] : v.dict_data().entries) out.push_back(Value::tuple({k, val}));
    return Value::list(std::move(out));
}
Value f_join(const Value& v, CallArgs& a) {
    Params p(a, "join", {"d", "attribute"});
    const std::string sep = p.string(0, "");
    const Value* attribute = p.get(1);
    std::string out;
    bool first = true;
    for (const auto& item : iterate(v)) {
        if (!first) out += sep;
        first = false;
        out += (attribute && !attribute->is_none() ? attribute_path(item, *attribute) : item).str();
    }
    return Value::string(std::move(out));
}
Value f_last(const Value& v, CallArgs& a) {
    Params p(a, "last", {});
    const auto items = iterate(v);
    if (items.empty()) return Value::undefined("No last item, sequence was empty.");
    return items.back();
}
Value f_length(const Value& v, CallArgs& a) {
    Params p(a, "length", {});
    return Value::integer(length(v));
}
Value f_list(const Value& v, CallArgs& a) {
    Params p(a, "list", {});
    return Value::list(iterate(v));
}
Value f_lower(const Value& v, CallArgs& a) {
    Params p(a, "lower", {});
    return Value::string(text::lower(v.str()));
}
Value f_map(const Value& v, CallArgs& a) {
    std::vector<Value> out;
    if (!v.truthy()) return Value::list();  // Jinja maps nothing over a falsy value
    const Value* attribute = nullptr;
    const Value* fallback = nullptr;
    for (const auto& [key, value] : a.keyword) {
        if (key == "attribute")
            attribute = &value;
        else if (key == "default")
            fallback = &value;
    }
    if (attribute) {
        for (const auto& item : iterate(v)) {
            Value x = attribute_path(item, *attribute);
            out.push_back(x.is_undefined() && fallback ? *fallback : x);
        }
        return Value::list(std::move(out));
    }
    if (a.positional.empty()) type_error("map requires a filter name or attribute=");
    const std::string name = a.positional[0].str();
    if (!has_filter(name)) type_error("no filter named '" + name + "'");
    for (const auto& item : iterate(v)) {
        CallArgs rest = rest_args(a, 1);
        out.push_back(apply_filter(name, item, rest));
    }
    return Value::list(std::move(out));
}
Value min_max(const Value& v, CallArgs& a, bool want_max) {
    Params p(a, want_max ? "max" : "min", {"case_sensitive", "attribute"});
    const auto items = iterate(v);
    if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
    const bool case_sensitive = p.flag(0, false);
    const Value* attribute = p.get(1);
    size_t best = 0;
    for (size_t i = 1; i < items.size(); ++i) {
        const Value ki = sort_key(items[i], attribute, case_sensitive),
                    kb = sort_key(items[best], attribute, case_sensitive);
        if (want_max ? kb.less(ki) : ki.less(kb)) best = i;
    }
    return items[best];
}
Value f_max(const Value& v, CallArgs& a) { return min_max(v, a, true); }
Value f_min(const Value& v, CallArgs& a) { return min_max(v, a, false); }
Value select_items(const Value& v, CallArgs& a, bool by_attribute, bool keep_if) {
    if (!v.truthy()) return Value::list();  // Jinja selects nothing from a falsy value
    const auto items = iterate(v);
    size_t next_arg = 0;
    Value attribute;
    if (by_attribute) {
        if (a.positional.empty()) type_error("selectattr/rejectattr need an attribute name");
        attribute = a.positional[next_arg++];
    }
    std::optional<std::string> test;
    if (next_arg < a.positional.size()) test = a.positional[next_arg++].str();
    if (test && !has_test(*test)) type_error("no test named '" + *test + "'");
    std::vector<Value> out;
    for (const auto& item : items) {
        const Value subject = by_attribute ? attribute_path(item, attribute) : item;
        bool ok;
        if (test) {
            CallArgs rest = rest_args(a, next_arg);
            ok = apply_test(*test, subject, rest);
        } else {
            ok = subject.truthy();
        }
        if (ok == keep_if) out.push_back(item);
    }
    return Value::list(std::move(out));
}
Value f_reject(const Value& v, CallArgs& a) { return select_items(v, a, false, false); }
Value f_rejectattr(const Value& v, CallArgs& a) { return select_items(v, a, true, false); }
Value f_select(const Value& v, CallArgs& a) { return select_items(v, a, false, true); }
Value f_selectattr(const Value& v, CallArgs& a) { return select_items(v, a, true, true); }
Value f_replace(const Value& v, CallArgs& a) {
    Params p(a, "replace", {"old", "new", "count"});
    return Value::string(text::replace(v.str(), p.required(0).str(), p.required(1).str(), p.integer(2, -1)));
}
Value f_reverse(const Value& v, CallArgs& a) {
    Params p(a, "reverse", {});
    if (v.is_string()) {
        auto cps = text::decode(v.as_string());
        std::reverse(cps.begin(), cps.end());
        return Value::string(text::encode(cps));
    }
    auto items = iterate(v);
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
}
Value f_round(const Value& v, CallArgs& a) {
    Params p(a, "round", {"precision", "method"});
    return python_round(v, p.integer(0, 0), p.string(1, "common"));
}
Value f_safe(const Value& v, CallArgs& a) {
    Params p(a, "safe", {});
    return Value::string(v.str());
}
Value f_sort(const Value& v, CallArgs& a) {
    Params p(a, "sort", {"reverse", "case_sensitive", "attribute"});
    const bool reverse = p.flag(0, false), case_sensitive = p.flag(1, false);
    const Value* attribute = p.get(2);
    auto items = iterate(v);
    std::vector<std::pair<Value, Value>> keyed;
    for (auto& item : items) keyed.emplace_back(sort_key(item, attribute, case_sensitive), item);
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
        return reverse ? y.first.less(x.first) : x.first.less(y.first);
    });
    std::vector<Value> out;
    for (auto& [_, item] : keyed) out.push_back(std::move(item));
    return Value::list(std::move(out));
}
Value f_string(const Value& v, CallArgs& a) {
    Params p(a, "string", {});
    return Value::string(v.str());
}
Value f_sum(const Value& v, CallArgs& a) {
    Params p(a, "sum", {"attribute", "start"});
    const Value* attribute = p.get(0);
    Value total = p.get_or(1, Value::integer(0));
    for (const auto& item : iterate(v)) {
        const Value x = attribute && !attribute->is_none() ? attribute_path(item, *attribute) : item;
        if (!x.is_number() || !total.is_number())
            type_error("unsupported operand type(s) for +: '" + total.type_name() + "' and '" + x.type_name() + "'");
        if (total.is_float() || x.is_float())
            total = Value::number(total.as_double() + x.as_double());
        else
            total = Value::integer(total.as_int() + x.as_int());
    }
    return total;
}
Value f_title(const Value& v, CallArgs& a) {
    Params p(a, "title", {});
    return Value::string(jinja_title(v.str()));
}
// transformers replaces Jinja's tojson with json.dumps(x, ensure_ascii=False, indent, separators, sort_keys).
Value f_tojson(const Value& v, CallArgs& a) {
    Params p(a, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
    JsonOptions o;
    o.ensure_ascii = p.flag(0, false);
    o.sort_keys = p.flag(3, false);
    if (const Value* indent = p.get(1); indent && !indent->is_none()) {
        o.indent = indent->is_string() ? indent->as_string()
                                       : std::string(static_cast<size_t>(std::max<int64_t>(0, p.integer(1, 0))), ' ');
        o.item_separator = ",";
    }
    if (const Value* sep = p.get(2); sep && !sep->is_none()) {
        if (!sep->is_list() || sep->list_data().items.size() != 2) type_error("separators must be an (item, key) pair");
        o.item_separator = sep->list_data().items[0].str();
        o.key_separator = sep->list_data().items[1].str();
    }
    return Value::string(to_json(v, o));
}
Value f_trim(const Value& v, CallArgs& a) {
    Params p(a, "trim", {"chars"});
    return Value::string(text::strip(v.str(), p.optional_string(0), true, true));
}
Value f_unique(const Value& v, CallArgs& a) {
    Params p(a, "unique", {"case_sensitive", "attribute"});
    const bool case_sensitive = p.flag(0, false);
    const Value* attribute = p.get(1);
    std::vector<Value> seen, out;
    for (const auto& item : iterate(v)) {
        const Value key = sort_key(item, attribute, case_sensitive);
        if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return s.equals(key); })) continue;
        seen.push_back(key);
        out.push_back(item);
    }
    return Value::list(std::move(out));
}
Value f_upper(const Value& v, CallArgs& a) {
    Params p(a, "upper", {});
    return Value::string(text::upper(v.str()));
}
Value f_wordcount(const Value& v, CallArgs& a) {
    Params p(a, "wordcount", {});
    int64_t n = 0;
    bool in_word = false;
    for (char32_t cp : text::decode(v.str())) {
        const bool word = cp == '_' || (cp >= '0' && cp <= '9') || text::is_cased(cp) || cp >= 0x3040;
        if (word && !in_word) ++n;
        in_word = word;
    }
    return Value::integer(n);
}

const std::unordered_map<std::string_view, Filter>& filters() {
    static const std::unordered_map<std::string_view, Filter> table = {
        {"abs", f_abs},           {"attr", f_attr},       {"capitalize", f_capitalize},
        {"count", f_length},      {"d", f_default},       {"default", f_default},
        {"dictsort", f_dictsort}, {"e", f_escape},        {"escape", f_escape},
        {"first", f_first},       {"float", f_float},     {"indent", f_indent},
        {"int", f_int},           {"items", f_items},     {"join", f_join},
        {"last", f_last},         {"length", f_length},   {"list", f_list},
        {"lower", f_lower},       {"map", f_map},         {"max", f_max},
        {"min", f_min},           {"reject", f_reject},   {"rejectattr", f_rejectattr},
        {"replace", f_replace},   {"reverse", f_reverse}, {"round", f_round},
        {"safe", f_safe},         {"select", f_select},   {"selectattr", f_selectattr},
        {"sort", f_sort},         {"string", f_string},   {"sum", f_sum},
        {"title", f_title},       {"tojson", f_tojson},   {"trim", f_trim},
        {"unique", f_unique},     {"upper", f_upper},     {"wordcount", f_wordcount},
    };
    return table;
}

// ---------------------------------------------------------------- tests

using Test = bool (*)(const Value& v, CallArgs& args);

const Value& one_arg(CallArgs& a, std::string_view test) {
    if (a.positional.size() != 1 || !a.keyword.empty())
        type_error("test '" + std::string(test) + "' takes one argument");
    return a.positional[0];
}
void no_args(CallArgs& a, std::string_view test) {
    if (!a.positional.empty() || !a.keyword.empty()) type_error("test '" + std::string(test) + "' takes no arguments");
}
// Python's `value % divisor` for the number tests.
double py_mod(const Value& v, const Value& divisor, std::string_view test) {
    if (v.is_undefined()) fail(Kind::Undefined, v.undefined_hint());
    if (!v.is_number() || !divisor.is_number())
        type_error("test '" + std::string(test) + "' needs numbers, not " + v.type_name() + " and " +
                   divisor.type_name());
    const double d = divisor.as_double();
    if (d == 0) fail(Kind::Value, "integer division or modulo by zero");
    if (v.is_float() || divisor.is_float()) {
        double m = std::fmod(v.as_double(), d);
        if (m != 0 && ((m < 0) != (d < 0))) m += d;
        return m;
    }
    int64_t m = v.as_int() % divisor.as_int();
    if (m != 0 && ((m < 0) != (divisor.as_int() < 0))) m += divisor.as_int();
    return static_cast<double>(m);
}

bool t_defined(const Value& v, CallArgs& a) { return no_args(a, "defined"), !v.is_undefined(); }
bool t_undefined(const Value& v, CallArgs& a) { return no_args(a, "undefined"), v.is_undefined(); }
bool t_none(const Value& v, CallArgs& a) { return no_args(a, "none"), v.is_none(); }
bool t_boolean(const Value& v, CallArgs& a) { return no_args(a, "boolean"), v.is_bool(); }
bool t_true(const Value& v, CallArgs& a) { return no_args(a, "true"), v.is_bool() && v.as_bool(); }
bool t_false(const Value& v, CallArgs& a) { return no_args(a, "false"), v.is_bool() && !v.as_bool(); }
bool t_integer(const Value& v, CallArgs& a) { return no_args(a, "integer"), v.is_int(); }
bool t_float(const Value& v, CallArgs& a) { return no_args(a, "float"), v.is_float(); }
bool t_number(const Value& v, CallArgs& a) { return no_args(a, "number"), v.is_number(); }
bool t_string(const Value& v, CallArgs& a) { return no_args(a, "string"), v.is_string(); }
bool t_mapping(const Value& v, CallArgs& a) {
    return no_args(a, "mapping"), v.is_dict() && v.dict_data().kind == Value::DictKind::Plain;
}
bool t_iterable(const Value& v, CallArgs& a) {
    no_args(a, "iterable");
    return v.is_undefined() || v.is_string() || v.is_list() ||
           (v.is_dict() && v.dict_data().kind == Value::DictKind::Plain);
}
bool t_sequence(const Value& v, CallArgs& a) { return t_iterable(v, a); }
bool t_callable(const Value& v, CallArgs& a) { return no_args(a, "callable"), v.is_function() || v.is_undefined(); }
bool t_lower(const Value& v, CallArgs& a) { return no_args(a, "lower"), cased_test(v.str(), true); }
bool t_upper(const Value& v, CallArgs& a) { return no_args(a, "upper"), cased_test(v.str(), false); }
bool t_odd(const Value& v, CallArgs& a) { return no_args(a, "odd"), py_mod(v, Value::integer(2), "odd") == 1; }
bool t_even(const Value& v, CallArgs& a) { return no_args(a, "even"), py_mod(v, Value::integer(2), "even") == 0; }
bool t_divisibleby(const Value& v, CallArgs& a) { return py_mod(v, one_arg(a, "divisibleby"), "divisibleby") == 0; }
bool t_eq(const Value& v, CallArgs& a) { return v.equals(one_arg(a, "eq")); }
bool t_ne(const Value& v, CallArgs& a) { return !v.equals(one_arg(a, "ne")); }
bool t_lt(const Value& v, CallArgs& a) { return v.less(one_arg(a, "lt")); }
bool t_le(const Value& v, CallArgs& a) {
    const Value& o = one_arg(a, "le");
    return v.less(o) || v.equals(o);
}
bool t_gt(const Value& v, CallArgs& a) { return one_arg(a, "gt").less(v); }
bool t_ge(const Value& v, CallArgs& a) {
    const Value& o = one_arg(a, "ge");
    return o.less(v) || v.equals(o);
}
bool t_in(const Value& v, CallArgs& a) {
    const Value& container = one_arg(a, "in");
    if (container.is_string())
        return container.as_string().find(require_string(v, "'in <string>'")) != std::string::npos;
    for (const auto& item : iterate(container))
        if (item.equals(v)) return true;
    return false;
}
bool t_sameas(const Value& v, CallArgs& a) {
    const Value& o = one_arg(a, "sameas");
    if (v.kind() != o.kind()) return false;
    switch (v.kind()) {
        case Value::Kind::List: return &v.list_data() == &o.list_data();
        case Value::Kind::Dict: return &v.dict_data() == &o.dict_data();
        case Value::Kind::Function: return &v.function_data() == &o.function_data();
        default: return v.equals(o);
    }
}

const std::unordered_map<std::string_view, Test>& tests() {
    static const std::unordered_map<std::string_view, Test> table = {
        {"defined", t_defined},
        {"undefined", t_undefined},
        {"none", t_none},
        {"boolean", t_boolean},
        {"true", t_true},
        {"false", t_false},
        {"integer", t_integer},
        {"float", t_float},
        {"number", t_number},
        {"string", t_string},
        {"mapping", t_mapping},
        {"iterable", t_iterable},
        {"sequence", t_sequence},
        {"callable", t_callable},
        {"lower", t_lower},
        {"upper", t_upper},
        {"odd", t_odd},
        {"even", t_even},
        {"divisibleby", t_divisibleby},
        {"eq", t_eq},
        {"equalto", t_eq},
        {"==", t_eq},
        {"ne", t_ne},
        {"!=", t_ne},
        {"lt", t_lt},
        {"lessthan", t_lt},
        {"<", t_lt},
        {"le", t_le},
        {"<=", t_le},
        {"gt", t_gt},
        {"greaterthan", t_gt},
        {">", t_gt},
        {"ge", t_ge},
        {">=", t_ge},
        {"in", t_in},
        {"sameas", t_sameas},
    };
    return table;
}

// ---------------------------------------------------------------- globals

constexpr int64_t kMaxRange = 100000;  // the sandbox's MAX_RANGE

Value g_range(CallArgs& a) {
    if (!a.keyword.empty()) type_error("range() takes no keyword arguments");
    if (a.positional.empty() || a.positional.size() > 3) type_error("range expected 1 to 3 arguments");
    auto as_int = [](const Value& v) {
        if (!v.is_int() && !v.is_bool())
            type_error("'" + v.type_name() + "' object cannot be interpreted as an integer");
        return v.as_int();
    };
    int64_t start = 0, stop, step = 1;
    if (a.positional.size() == 1) {
        stop = as_int(a.positional[0]);
    } else {
        start = as_int(a.positional[0]);
        stop = as_int(a.positional[1]);
        if (a.positional.size() == 3) step = as_int(a.positional[2]);
    }
    if (step == 0) fail(Kind::Value, "range() arg 3 must not be zero");
    const long double count = step > 0 ? (static_cast<long double>(stop) - start + step - 1) / step
                                       : (static_cast<long double>(start) - stop - step - 1) / -step;
    if (count > kMaxRange)
        fail(Kind::Value, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    std::vector<Value> out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(Value::integer(i));
    return Value::list(std::move(out));
}

Value build_dict(CallArgs& a, Value::DictKind kind, std::string_view name) {
    Value d = Value::dict(kind);
    if (a.positional.size() > 1) type_error(std::string(name) + "() takes at most one positional argument");
    if (!a.positional.empty()) {
        const Value& src = a.positional[0];
        if (!src.is_dict()) type_error(std::string(name) + "() positional argument must be a mapping");
        for (const auto& [k, v] : src.dict_data().entries) d.dict_data().set(k, v);
    }
    for (const auto& [k, v] : a.keyword) d.dict_data().set(Value::string(k), v);
    return d;
}

}  // namespace

bool has_filter(std::string_view name) { return filters().contains(name); }
bool has_test(std::string_view name) { return tests().contains(name); }

Value apply_filter(const std::string& name, const Value& input, CallArgs& args) {
    const auto it = filters().find(name);
    if (it == filters().end()) type_error("no filter named '" + name + "'");
    return it->second(input, args);
}

bool apply_test(const std::string& name, const Value& input, CallArgs& args) {
    const auto it = tests().find(name);
    if (it == tests().end()) type_error("no test named '" + name + "'");
    return it->second(input, args);
}

Value get_attribute(const Value& object, const std::string& name) {
    switch (object.kind()) {
        case Value::Kind::Undefined: fail(Kind::Undefined, object.undefined_hint());
        case Value::Kind::String: return string_method(object, name);
        case Value::Kind::Dict: {
            const auto& d = object.dict_data();
            if (d.kind == Value::DictKind::Plain) {
                if (Value m = dict_method(object, name); !m.is_undefined()) return m;
            }
            if (const Value* v = d.find(Value::string(name))) return *v;
            return missing_attribute(object, name);
        }
        case Value::Kind::List:
            if (Value m = list_method(object, name); !m.is_undefined()) return m;
            return missing_attribute(object, name);
        default: return missing_attribute(object, name);
    }
}

Value get_item(const Value& object, const Value& key) {
    switch (object.kind()) {
        case Value::Kind::Undefined: fail(Kind::Undefined, object.undefined_hint());
        case Value::Kind::List:
        case Value::Kind::String:
            if (key.is_int() || key.is_bool()) {
                const int64_t n = length(object);
                int64_t i = key.as_int();
                if (i < 0) i += n;
                if (i < 0 || i >= n)
                    return Value::undefined("'" + object_repr(object) + "' has no element " +
                                            std::to_string(key.as_int()));
                if (object.is_list()) return object.list_data().items[static_cast<size_t>(i)];
                const auto pos = text::offsets(object.as_string());
                return Value::string(object.as_string().substr(pos[i], pos[i + 1] - pos[i]));
            }
            if (key.is_string()) return get_attribute(object, key.as_string());
            return Value::undefined("'" + object_repr(object) + "' has no element " + key.repr());
        case Value::Kind::Dict:
            if (object.dict_data().kind == Value::DictKind::Plain)
                if (const Value* v = object.dict_data().find(key)) return *v;
            if (key.is_string()) return get_attribute(object, key.as_string());
            return Value::undefined("'" + object_repr(object) + "' has no element " + key.repr());
        default:
            if (key.is_string()) return get_attribute(object, key.as_string());
            return Value::undefined("'" + object_repr(object) + "' has no element " + key.repr());
    }
}

const Variables& globals() {
    static const Variables table = {
        {"range", Value::function("range", g_range)},
        {"namespace",
         Value::function("namespace",
                         [](CallArgs& a) { return build_dict(a, Value::DictKind::Namespace, "namespace"); })},
        {"dict", Value::function("dict", [](CallArgs& a) { return build_dict(a, Value::DictKind::Plain, "dict"); })},
    };
    return table;
}

int64_t length(const Value& v) {
    switch (v.kind()) {
        case Value::Kind::Undefined: return 0;
        case Value::Kind::String: return static_cast<int64_t>(text::length(v.as_string()));
        case Value::Kind::List: return static_cast<int64_t>(v.list_data().items.size());
        case Value::Kind::Dict:
            if (v.dict_data().kind == Value::DictKind::Plain) return static_cast<int64_t>(v.dict_data().entries.size());
            [[fallthrough]];
        default: type_error("object of type '" + v.type_name() + "' has no len()");
    }
}

std::vector<Value> iterate(const Value& v) {
    switch (v.kind()) {
        case Value::Kind::Undefined: return {};
        case Value::Kind::List: return v.list_data().items;
        case Value::Kind::String: {
            std::vector<Value> out;
            const auto& s = v.as_string();
            const auto pos = text::offsets(s);
            for (size_t i = 0; i + 1 < pos.size(); ++i)
                out.push_back(Value::string(s.substr(pos[i], pos[i + 1] - pos[i])));
            return out;
        }
        case Value::Kind::Dict:
            if (v.dict_data().kind == Value::DictKind::Plain) {
                std::vector<Value> out;
                for (const auto& [k, _] : v.dict_data().entries) out.push_back(k);
                return out;
            }
            [[fallthrough]];
        default: type_error("'" + v.type_name() + "' object is not iterable");
    }
}

}  // namespace loom::tokenizer::jinja::builtins
