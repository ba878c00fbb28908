// Evaluator: statements, expressions, scopes and Python operators over the syntax tree.
#include "tokenizer/jinja/evaluator.h"

#include <cmath>
#include <limits>
#include <unordered_map>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/text.h"

namespace loom::tokenizer::jinja {

namespace {

using Kind = OperationError::Kind;

// Largest string or list an operator may build; beyond it a template is surely hostile.
constexpr size_t kMaxBuiltSize = size_t{1} << 28;

[[noreturn]] void type_error(std::string message) { throw OperationError{Kind::Type, std::move(message)}; }

void require_defined(const Value& v) {
    if (v.is_undefined()) throw OperationError{Kind::Undefined, v.undefined_hint()};
}

bool integral(const Value& v) { return v.is_int() || v.is_bool(); }

[[noreturn]] void unsupported(std::string_view op, const Value& a, const Value& b) {
    type_error("unsupported operand type(s) for " + std::string(op) + ": '" + a.type_name() + "' and '" +
               b.type_name() + "'");
}

template <class Op>
Value checked(Op op, int64_t a, int64_t b) {
    int64_t r = 0;
    if (op(a, b, &r)) throw OperationError{Kind::Value, "integer overflow"};
    return Value::integer(r);
}
bool add_overflow(int64_t a, int64_t b, int64_t* r) { return __builtin_add_overflow(a, b, r); }
bool sub_overflow(int64_t a, int64_t b, int64_t* r) { return __builtin_sub_overflow(a, b, r); }
bool mul_overflow(int64_t a, int64_t b, int64_t* r) { return __builtin_mul_overflow(a, b, r); }

Value repeat(const Value& seq, int64_t times) {
    times = std::max<int64_t>(times, 0);
    if (seq.is_string()) {
        const auto& s = seq.as_string();
        if (!s.empty() && static_cast<size_t>(times) > kMaxBuiltSize / s.size())
            throw OperationError{Kind::Value, "repeated string too large"};
        std::string out;
        out.reserve(s.size() * static_cast<size_t>(times));
        for (int64_t i = 0; i < times; ++i) out += s;
        return Value::string(std::move(out));
    }
    const auto& items = seq.list_data().items;
    if (!items.empty() && static_cast<size_t>(times) > kMaxBuiltSize / items.size() / sizeof(Value))
        throw OperationError{Kind::Value, "repeated list too large"};
    std::vector<Value> out;
    for (int64_t i = 0; i < times; ++i) out.insert(out.end(), items.begin(), items.end());
    return seq.list_data().tuple ? Value::tuple(std::move(out)) : Value::list(std::move(out));
}

double float_floor_mod(double a, double b) {
    double m = std::fmod(a, b);
    if (m != 0 && ((m < 0) != (b < 0))) m += b;
    return m;
}

Value binary(BinaryOp op, const Value& a, const Value& b) {
    if (op == BinaryOp::Concat) return Value::string(a.str() + b.str());
    require_defined(a);
    require_defined(b);
    const bool numbers = a.is_number() && b.is_number();
    const bool ints = integral(a) && integral(b);
    switch (op) {
        case BinaryOp::Add:
            if (ints) return checked(add_overflow, a.as_int(), b.as_int());
            if (numbers) return Value::number(a.as_double() + b.as_double());
            if (a.is_string() && b.is_string()) return Value::string(a.as_string() + b.as_string());
            if (a.is_list() && b.is_list() && a.list_data().tuple == b.list_data().tuple) {
                std::vector<Value> out = a.list_data().items;
                out.insert(out.end(), b.list_data().items.begin(), b.list_data().items.end());
                return a.list_data().tuple ? Value::tuple(std::move(out)) : Value::list(std::move(out));
            }
            if (a.is_string()) type_error("can only concatenate str (not \"" + b.type_name() + "\") to str");
            if (a.is_list())
                type_error("can only concatenate " + a.type_name() + " (not \"" + b.type_name() + "\") to " +
                           a.type_name());
            unsupported("+", a, b);
        case BinaryOp::Sub:
            if (ints) return checked(sub_overflow, a.as_int(), b.as_int());
            if (numbers) return Value::number(a.as_double() - b.as_double());
            unsupported("-", a, b);
        case BinaryOp::Mul:
            if (ints) return checked(mul_overflow, a.as_int(), b.as_int());
            if (numbers) return Value::number(a.as_double() * b.as_double());
            if ((a.is_string() || a.is_list()) && integral(b)) return repeat(a, b.as_int());
            if (integral(a) && (b.is_string() || b.is_list())) return repeat(b, a.as_int());
            if (a.is_string() || b.is_string())
                type_error("can't multiply sequence by non-int of type '" + (a.is_string() ? b : a).type_name() + "'");
            unsupported("*", a, b);
        case BinaryOp::Div:
            if (!numbers) unsupported("/", a, b);
            if (b.as_double() == 0) throw OperationError{Kind::Value, "division by zero"};
            return Value::number(a.as_double() / b.as_double());
        case BinaryOp::FloorDiv:
            if (!numbers) unsupported("//", a, b);
            if (ints) {
                if (b.as_int() == 0) throw OperationError{Kind::Value, "integer division or modulo by zero"};
                if (a.as_int() == std::numeric_limits<int64_t>::min() && b.as_int() == -1)
                    throw OperationError{Kind::Value, "integer overflow"};
                int64_t q = a.as_int() / b.as_int();
                if ((a.as_int() % b.as_int() != 0) && ((a.as_int() < 0) != (b.as_int() < 0))) --q;
                return Value::integer(q);
            }
            if (b.as_double() == 0) throw OperationError{Kind::Value, "float floor division by zero"};
            return Value::number(std::floor(a.as_double() / b.as_double()));
        case BinaryOp::Mod:
            if (a.is_string()) type_error("printf-style '%' formatting of strings is not supported");
            if (!numbers) unsupported("%", a, b);
            if (ints) {
                if (b.as_int() == 0) throw OperationError{Kind::Value, "integer division or modulo by zero"};
                if (b.as_int() == -1) return Value::integer(0);
                int64_t m = a.as_int() % b.as_int();
                if (m != 0 && ((m < 0) != (b.as_int() < 0))) m += b.as_int();
                return Value::integer(m);
            }
            if (b.as_double() == 0) throw OperationError{Kind::Value, "float modulo"};
            return Value::number(float_floor_mod(a.as_double(), b.as_double()));
        case BinaryOp::Pow:
            if (!numbers) unsupported("** or pow()", a, b);
            if (ints && b.as_int() >= 0) {
                int64_t result = 1, base = a.as_int(), e = b.as_int();
                while (e > 0) {
                    if (e & 1)
                        if (__builtin_mul_overflow(result, base, &result))
                            throw OperationError{Kind::Value, "integer overflow"};
                    e >>= 1;
                    if (e > 0 && __builtin_mul_overflow(base, base, &base))
                        throw OperationError{Kind::Value, "integer overflow"};
                }
                return Value::integer(result);
            }
            if (a.as_double() == 0 && b.as_double() < 0)
                throw OperationError{Kind::Value, "0.0 cannot be raised to a negative power"};
            return Value::number(std::pow(a.as_double(), b.as_double()));
        case BinaryOp::Concat: break;
    }
    return Value();
}

bool contains(const Value& container, const Value& item) {
    if (container.is_string()) {
        if (!item.is_string()) type_error("'in <string>' requires string as left operand, not " + item.type_name());
        return container.as_string().find(item.as_string()) != std::string::npos;
    }
    if (container.is_dict() && container.dict_data().kind == Value::DictKind::Plain) {
        if (item.is_dict() || (item.is_list() && !item.list_data().tuple))
            type_error("unhashable type: '" + item.type_name() + "'");
        return container.dict_data().find(item) != nullptr;
    }
    if (container.is_undefined()) return false;
    if (!container.is_list()) type_error("argument of type '" + container.type_name() + "' is not iterable");
    for (const auto& x : container.list_data().items)
        if (x.equals(item)) return true;
    return false;
}

bool compare(CompareOp op, const Value& a, const Value& b) {
    switch (op) {
        case CompareOp::Eq: return a.equals(b);
        case CompareOp::Ne: return !a.equals(b);
        case CompareOp::Lt: return a.less(b);
        case CompareOp::Le: return a.less(b) || a.equals(b);
        case CompareOp::Gt: return b.less(a);
        case CompareOp::Ge: return b.less(a) || a.equals(b);
        case CompareOp::In: return contains(b, a);
        case CompareOp::NotIn: return !contains(b, a);
    }
    return false;
}

struct Scope {
    std::unordered_map<std::string, Value> vars;
    const Scope* parent = nullptr;

    const Value* find(const std::string& name) const {
        for (const Scope* s = this; s; s = s->parent)
            if (auto it = s->vars.find(name); it != s->vars.end()) return &it->second;
        return nullptr;
    }
};

enum class Flow { Normal, Break, Continue };

class Evaluator {
public:
    Evaluator(const Program& program, const Variables& variables) : program_(program) {
        for (const auto& [name, value] : builtins::globals()) root_.vars[name] = value;
        for (const auto& [name, value] : variables) root_.vars[name] = value;
    }

    std::string run() {
        std::string out;
        exec_body(program_.body, root_, out);
        return out;
    }

private:
    class Depth {
    public:
        Depth(Evaluator& e, size_t offset) : e_(e) {
            if (++e_.depth_ > kMaxRenderDepth) {
                --e_.depth_;
                throw RenderError(e_.program_.source.at(offset), "maximum render depth exceeded (recursion too deep)");
            }
        }
        ~Depth() { --e_.depth_; }

    private:
        Evaluator& e_;
    };

    [[noreturn]] void fail(size_t offset, const OperationError& e) const {
        const SourceLocation where = program_.source.at(offset);
        if (e.kind == Kind::Raise) throw RaisedException(where, e.message);
        throw RenderError(where, e.message);
    }

    // ---- statements

    Flow exec_body(const Body& body, Scope& scope, std::string& out) {
        for (const auto& stmt : body) {
            const Flow flow = exec(*stmt, scope, out);
            if (flow != Flow::Normal) return flow;
        }
        return Flow::Normal;
    }

    Flow exec(const Stmt& stmt, Scope& scope, std::string& out) {
        Depth depth(*this, stmt.offset);
        if (const auto* s = std::get_if<TextStmt>(&stmt.node)) {
            out += s->text;
        } else if (const auto* s = std::get_if<OutputStmt>(&stmt.node)) {
            out += eval(*s->expr, scope).str();
        } else if (const auto* s = std::get_if<IfStmt>(&stmt.node)) {
            for (const auto& [cond, body] : s->branches)
                if (eval(*cond, scope).truthy()) return exec_body(body, scope, out);
            return exec_body(s->otherwise, scope, out);
        } else if (const auto* s = std::get_if<ForStmt>(&stmt.node)) {
            return exec_for(*s, stmt.offset, scope, out);
        } else if (const auto* s = std::get_if<SetStmt>(&stmt.node)) {
            exec_set(*s, stmt.offset, scope);
        } else if (const auto* s = std::get_if<SetBlockStmt>(&stmt.node)) {
            std::string captured;
            exec_body(s->body, scope, captured);
            scope.vars[s->target] = apply_filters(s->filters, Value::string(std::move(captured)), scope);
        } else if (const auto* s = std::get_if<MacroStmt>(&stmt.node)) {
            scope.vars[s->name] = make_macro(*s, stmt.offset);
        } else if (const auto* s = std::get_if<FilterBlockStmt>(&stmt.node)) {
            std::string captured;
            const Flow flow = exec_body(s->body, scope, captured);
            out += apply_filters(s->filters, Value::string(std::move(captured)), scope).str();
            return flow;
        } else if (std::holds_alternative<BreakStmt>(stmt.node)) {
            return Flow::Break;
        } else if (std::holds_alternative<ContinueStmt>(stmt.node)) {
            return Flow::Continue;
        }
        return Flow::Normal;
    }

    void bind_targets(const std::vector<std::string>& targets, const Value& value, Scope& scope, size_t offset) {
        if (targets.size() == 1) {
            scope.vars[targets[0]] = value;
            return;
        }
        std::vector<Value> items;
        try {
            items = builtins::iterate(value);
        } catch (const OperationError& e) {
            fail(offset, e);
        }
        if (items.size() != targets.size())
            fail(offset, {Kind::Value, "cannot unpack " + std::to_string(items.size()) + " values into " +
                                           std::to_string(targets.size()) + " names"});
        for (size_t i = 0; i < targets.size(); ++i) scope.vars[targets[i]] = items[i];
    }

    Flow exec_for(const ForStmt& s, size_t offset, Scope& scope, std::string& out) {
        const Value iterable = eval(*s.iterable, scope);
        std::vector<Value> items;
        try {
            items = builtins::iterate(iterable);
        } catch (const OperationError& e) {
            fail(s.iterable->offset, e);
        }
        if (s.condition) {
            std::vector<Value> kept;
            for (auto& item : items) {
                Scope test_scope{{}, &scope};
                bind_targets(s.targets, item, test_scope, offset);
                if (eval(*s.condition, test_scope).truthy()) kept.push_back(std::move(item));
            }
            items = std::move(kept);
        }
        if (items.empty()) return exec_body(s.otherwise, scope, out);
        const int64_t n = static_cast<int64_t>(items.size());
        for (int64_t i = 0; i < n; ++i) {
            Scope iteration{{}, &scope};
            bind_targets(s.targets, items[static_cast<size_t>(i)], iteration, offset);
            iteration.vars["loop"] = loop_object(items, i);
            if (exec_body(s.body, iteration, out) == Flow::Break) break;
        }
        return Flow::Normal;
    }

    static Value loop_object(const std::vector<Value>& items, int64_t i) {
        const int64_t n = static_cast<int64_t>(items.size());
        Value loop = Value::dict(Value::DictKind::Loop);
        auto& d = loop.dict_data();
        auto set = [&](const char* key, Value v) { d.entries.emplace_back(Value::string(key), std::move(v)); };
        set("index", Value::integer(i + 1));
        set("index0", Value::integer(i));
        set("revindex", Value::integer(n - i));
        set("revindex0", Value::integer(n - i - 1));
        set("first", Value::boolean(i == 0));
        set("last", Value::boolean(i == n - 1));
        set("length", Value::integer(n));
        set("depth", Value::integer(1));
        set("depth0", Value::integer(0));
        set("previtem", i > 0 ? items[static_cast<size_t>(i - 1)] : Value::undefined("there is no previous item"));
        set("nextitem", i + 1 < n ? items[static_cast<size_t>(i + 1)] : Value::undefined("there is no next item"));
        set("cycle", Value::function("loop.cycle", [i](CallArgs& a) {
                if (a.positional.empty()) type_error("no items for cycling given");
                return a.positional[static_cast<size_t>(i) % a.positional.size()];
            }));
        return loop;
    }

    void exec_set(const SetStmt& s, size_t offset, Scope& scope) {
        Value value = eval(*s.value, scope);
        if (!s.attribute.empty()) {
            const Value* target = scope.find(s.targets[0]);
            if (!target || !target->is_namespace())
                fail(offset, {Kind::Type, "cannot assign attribute on non-namespace object '" + s.targets[0] + "'"});
            // A namespace is shared by reference, so this mutation is visible from every scope.
            Value ns = *target;
            ns.dict_data().set(Value::string(s.attribute), std::move(value));
            return;
        }
        bind_targets(s.targets, value, scope, offset);
    }

    Value apply_filters(const std::vector<FilterCall>& filters, Value value, Scope& scope) {
        for (const auto& f : filters) {
            CallArgs args = eval_args(f.args, f.keywords, scope);
            try {
                value = builtins::apply_filter(f.name, value, args);
            } catch (const OperationError& e) {
                fail(f.offset, e);
            }
        }
        return value;
    }

    // The macro closes over the template's top-level scope, which lives as long as the render.
    Value make_macro(const MacroStmt& m, size_t offset) {
        return Value::function(m.name, [this, &m, offset](CallArgs& args) {
            Depth depth(*this, offset);
            Scope scope{{}, &root_};
            if (args.positional.size() > m.params.size())
                type_error("macro '" + m.name + "' takes not more than " + std::to_string(m.params.size()) +
                           " argument(s)");
            for (const auto& [key, _] : args.keyword) {
                bool known = false;
                for (const auto& p : m.params) known = known || p.first == key;
                if (!known) type_error("macro '" + m.name + "' takes no keyword argument '" + key + "'");
            }
            for (size_t i = 0; i < m.params.size(); ++i) {
                const auto& [name, dflt] = m.params[i];
                if (i < args.positional.size()) {
                    scope.vars[name] = args.positional[i];
                    continue;
                }
                const Value* kw = nullptr;
                for (const auto& [key, v] : args.keyword)
                    if (key == name) kw = &v;
                if (kw)
                    scope.vars[name] = *kw;
                else if (dflt)
                    scope.vars[name] = eval(*dflt, scope);
                else
                    scope.vars[name] = Value::undefined("parameter '" + name + "' was not provided");
            }
            std::string out;
            exec_body(*m.body, scope, out);
            return Value::string(std::move(out));
        });
    }

    // ---- expressions

    CallArgs eval_args(const std::vector<ExprPtr>& positional,
                       const std::vector<std::pair<std::string, ExprPtr>>& keywords, Scope& scope, size_t skip = 0) {
        CallArgs args;
        for (size_t i = skip; i < positional.size(); ++i) args.positional.push_back(eval(*positional[i], scope));
        for (const auto& [key, e] : keywords) args.keyword.emplace_back(key, eval(*e, scope));
        return args;
    }

    Value eval(const Expr& e, Scope& scope) {
        Depth depth(*this, e.offset);
        try {
            return eval_node(e, scope);
        } catch (const OperationError& err) {
            fail(e.offset, err);
        }
    }

    std::optional<int64_t> slice_bound(const Expr* e, Scope& scope) {
        if (!e) return std::nullopt;
        const Value v = eval(*e, scope);
        if (v.is_none()) return std::nullopt;
        if (!integral(v)) type_error("slice indices must be integers or None, not " + v.type_name());
        return v.as_int();
    }

    Value eval_dict(const Expr& e, Scope& scope) {
        Value d = Value::dict();
        for (size_t i = 0; i + 1 < e.items.size(); i += 2) {
            Value key = eval(*e.items[i], scope);
            if (key.is_list() && !key.list_data().tuple) type_error("unhashable type: 'list'");
            if (key.is_dict()) type_error("unhashable type: 'dict'");
            d.dict_data().set(std::move(key), eval(*e.items[i + 1], scope));
        }
        return d;
    }

    // object[start:stop:step] of a string (by code point) or a list or tuple.
    Value eval_slice(const Expr& e, Scope& scope) {
        const Value object = eval(*e.items[0], scope);
        const auto start = slice_bound(e.slice_parts[0].get(), scope);
        const auto stop = slice_bound(e.slice_parts[1].get(), scope);
        const auto step = slice_bound(e.slice_parts[2].get(), scope);
        require_defined(object);
        if (object.is_string()) {
            const auto& s = object.as_string();
            const auto pos = text::offsets(s);
            std::string out;
            for (int64_t i : text::slice_indices(static_cast<int64_t>(pos.size()) - 1, start, stop, step))
                out.append(s, pos[i], pos[i + 1] - pos[i]);
            return Value::string(std::move(out));
        }
        if (object.is_list()) {
            const auto& items = object.list_data().items;
            std::vector<Value> out;
            for (int64_t i : text::slice_indices(static_cast<int64_t>(items.size()), start, stop, step))
                out.push_back(items[static_cast<size_t>(i)]);
            return object.list_data().tuple ? Value::tuple(std::move(out)) : Value::list(std::move(out));
        }
        type_error("'" + object.type_name() + "' object is not subscriptable");
    }

    // Unary - and +.
    Value eval_unary(const Expr& e, Scope& scope) {
        const Value v = eval(*e.items[0], scope);
        require_defined(v);
        if (!v.is_number())
            type_error("bad operand type for unary " + std::string(e.kind == Expr::Kind::Negate ? "-" : "+") + ": '" +
                       v.type_name() + "'");
        if (e.kind == Expr::Kind::Plus) return v.is_float() ? v : Value::integer(v.as_int());
        if (v.is_float()) return Value::number(-v.as_double());
        if (v.as_int() == std::numeric_limits<int64_t>::min()) throw OperationError{Kind::Value, "integer overflow"};
        return Value::integer(-v.as_int());
    }

    Value eval_node(const Expr& e, Scope& scope) {
        switch (e.kind) {
            case Expr::Kind::Literal: return e.value;
            case Expr::Kind::Name: {
                if (const Value* v = scope.find(e.name)) return *v;
                return Value::undefined("'" + e.name + "' is undefined");
            }
            case Expr::Kind::List:
            case Expr::Kind::Tuple: {
                std::vector<Value> items;
                for (const auto& i : e.items) items.push_back(eval(*i, scope));
                return e.kind == Expr::Kind::Tuple ? Value::tuple(std::move(items)) : Value::list(std::move(items));
            }
            case Expr::Kind::Dict: return eval_dict(e, scope);
            case Expr::Kind::Attribute: return builtins::get_attribute(eval(*e.items[0], scope), e.name);
            case Expr::Kind::Subscript: {
                const Value object = eval(*e.items[0], scope);
                return builtins::get_item(object, eval(*e.items[1], scope));
            }
            case Expr::Kind::Slice: return eval_slice(e, scope);
            case Expr::Kind::Call: {
                const Value callee = eval(*e.items[0], scope);
                CallArgs args = eval_args(e.items, e.keywords, scope, 1);
                require_defined(callee);
                if (!callee.is_function()) type_error("'" + callee.type_name() + "' object is not callable");
                return callee.function_data().call(args);
            }
            case Expr::Kind::Filter: {
                const Value input = eval(*e.items[0], scope);
                CallArgs args = eval_args(e.items, e.keywords, scope, 1);
                return builtins::apply_filter(e.name, input, args);
            }
            case Expr::Kind::Test: {
                const Value input = eval(*e.items[0], scope);
                CallArgs args = eval_args(e.items, e.keywords, scope, 1);
                return Value::boolean(builtins::apply_test(e.name, input, args) != e.negated);
            }
            case Expr::Kind::Negate:
            case Expr::Kind::Plus: return eval_unary(e, scope);
            case Expr::Kind::Not: return Value::boolean(!eval(*e.items[0], scope).truthy());
            case Expr::Kind::And: {
                Value a = eval(*e.items[0], scope);
                return a.truthy() ? eval(*e.items[1], scope) : a;
            }
            case Expr::Kind::Or: {
                Value a = eval(*e.items[0], scope);
                return a.truthy() ? a : eval(*e.items[1], scope);
            }
            case Expr::Kind::Binary: {
                const Value a = eval(*e.items[0], scope);
                return binary(e.binary_op, a, eval(*e.items[1], scope));
            }
            case Expr::Kind::Compare: {
                Value left = eval(*e.items[0], scope);
                for (size_t i = 0; i < e.compare_ops.size(); ++i) {
                    Value right = eval(*e.items[i + 1], scope);
                    if (!compare(e.compare_ops[i], left, right)) return Value::boolean(false);
                    left = std::move(right);
                }
                return Value::boolean(true);
            }
            case Expr::Kind::Conditional:
                if (eval(*e.items[0], scope).truthy()) return eval(*e.items[1], scope);
                if (e.items[2]) return eval(*e.items[2], scope);
                return Value::undefined("the inline if-expression evaluated to false and no else section was defined");
        }
        return Value();
    }

    const Program& program_;
    Scope root_;
    int depth_ = 0;
};

}  // namespace

std::string render_program(const Program& program, const Variables& variables) {
    return Evaluator(program, variables).run();
}

}  // namespace loom::tokenizer::jinja
