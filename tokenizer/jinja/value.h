// Values of the Jinja interpreter: Python's None/bool/int/float/str/list/tuple/dict, Jinja's
// Undefined, namespaces and callables, with Python's str(), repr(), ==, < and json.dumps().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace loom::tokenizer::jinja {

class Value;

// Arguments of a call: f(a, b, key=c).
struct CallArgs {
    std::vector<Value> positional;
    std::vector<std::pair<std::string, Value>> keyword;
};

using NativeFunction = std::function<Value(CallArgs&)>;

// Thrown by value operations and builtins; the evaluator adds the template location.
struct OperationError {
    enum class Kind { Type, Undefined, Value, Raise };  // Raise: raise_exception(message)
    Kind kind;
    std::string message;
};

class Value {
public:
    enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Function };
    // Dicts double as namespace() objects and loop objects, which differ in attribute rules and name.
    enum class DictKind { Plain, Namespace, Loop };

    struct ListData {
        std::vector<Value> items;
        bool tuple = false;
    };
    struct DictData {
        std::vector<std::pair<Value, Value>> entries;  // insertion order, as Python dicts keep it
        DictKind kind = DictKind::Plain;
        const Value* find(const Value& key) const;
        Value* find(const Value& key);
        void set(Value key, Value value);
    };
    struct FunctionData {
        std::string name;
        NativeFunction call;
    };

    // Undefined; `hint` is what using it in a forbidden way reports, e.g. "'x' is undefined".
    Value() = default;
    static Value undefined(std::string hint);
    static Value none();
    static Value boolean(bool b);
    static Value integer(int64_t i);
    static Value number(double d);
    static Value string(std::string s);
    static Value list(std::vector<Value> items = {});
    static Value tuple(std::vector<Value> items);
    static Value dict(DictKind kind = DictKind::Plain);
    static Value function(std::string name, NativeFunction call);

    Kind kind() const { return kind_; }
    bool is_undefined() const { return kind_ == Kind::Undefined; }
    bool is_none() const { return kind_ == Kind::None; }
    bool is_bool() const { return kind_ == Kind::Bool; }
    bool is_int() const { return kind_ == Kind::Int; }
    bool is_float() const { return kind_ == Kind::Float; }
    bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool; }
    bool is_string() const { return kind_ == Kind::String; }
    bool is_list() const { return kind_ == Kind::List; }
    bool is_dict() const { return kind_ == Kind::Dict; }
    bool is_function() const { return kind_ == Kind::Function; }
    bool is_namespace() const { return is_dict() && dict_->kind == DictKind::Namespace; }

    bool as_bool() const { return bool_; }
    int64_t as_int() const { return int_; }  // Int and Bool
    double as_double() const;                // Int, Bool and Float
    const std::string& as_string() const { return *string_; }
    const ListData& list_data() const { return *list_; }
    ListData& list_data() { return *list_; }
    const DictData& dict_data() const { return *dict_; }
    DictData& dict_data() { return *dict_; }
    const FunctionData& function_data() const { return *function_; }
    const std::string& undefined_hint() const;

    // Python semantics.
    bool truthy() const;
    std::string str() const;   // str(x); Undefined gives ""
    std::string repr() const;  // repr(x)
    std::string type_name() const;
    bool equals(const Value& other) const;
    // Python `<`; throws OperationError for unorderable operands.
    bool less(const Value& other) const;

private:
    Kind kind_ = Kind::Undefined;
    bool bool_ = false;
    int64_t int_ = 0;
    double float_ = 0;
    std::shared_ptr<const std::string> string_;  // String, and the hint of an Undefined
    std::shared_ptr<ListData> list_;
    std::shared_ptr<DictData> dict_;
    std::shared_ptr<FunctionData> function_;
};

// Python's repr() of a float: shortest round-trip digits, "1.0", "1e+16", "inf".
std::string float_repr(double d);

struct JsonOptions {
    std::optional<std::string> indent;  // json.dumps(indent=...): None keeps everything on one line
    std::string item_separator = ", ";
    std::string key_separator = ": ";
    bool ensure_ascii = false;
    bool sort_keys = false;
};
// Python's json.dumps(x, ...); throws OperationError for values JSON cannot hold.
std::string to_json(const Value& v, const JsonOptions& options);

}  // namespace loom::tokenizer::jinja
