// Parser: Jinja's grammar and operator precedence over the lexer's tokens.
#include "tokenizer/jinja/parser.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <initializer_list>

#include "tokenizer/jinja/builtins.h"

namespace loom::tokenizer::jinja {

namespace {

using Type = Token::Type;

class Parser {
public:
    Parser(const LocationMap& map, std::vector<Token> tokens) : map_(map), tokens_(std::move(tokens)) {}

    Body parse_template() { return subparse({}, 0, ""); }

private:
    // Counts active recursive parse calls; bounded so hostile input cannot exhaust the stack.
    class Nest {
    public:
        Nest(Parser& p, size_t offset) : p_(p) {
            if (++p_.nesting_ > kMaxNesting * 2) p_.fail(offset, "template nested too deeply");
        }
        ~Nest() { --p_.nesting_; }

    private:
        Parser& p_;
    };

    const Token& cur() const { return tokens_[pos_]; }
    const Token& peek(size_t n = 1) const { return tokens_[std::min(pos_ + n, tokens_.size() - 1)]; }
    void next() {
        if (pos_ + 1 < tokens_.size()) ++pos_;
    }
    bool is_op(std::string_view op) const { return cur().type == Type::Operator && cur().text == op; }
    bool is_name(std::string_view name) const { return cur().type == Type::Name && cur().text == name; }

    [[noreturn]] void fail(size_t offset, const std::string& message) const {
        throw SyntaxError(map_.at(offset), message);
    }

    static std::string describe(const Token& t) {
        switch (t.type) {
            case Type::Data: return "template data";
            case Type::VariableBegin: return "'{{'";
            case Type::VariableEnd: return "end of print statement";
            case Type::BlockBegin: return "'{%'";
            case Type::BlockEnd: return "end of statement block";
            case Type::End: return "end of template";
            case Type::String: return "string";
            default: return "'" + t.text + "'";
        }
    }
    [[noreturn]] void unexpected() const { fail(cur().offset, "unexpected " + describe(cur())); }

    void expect_op(std::string_view op) {
        if (!is_op(op)) fail(cur().offset, "expected '" + std::string(op) + "', got " + describe(cur()));
        next();
    }
    void expect_block_end() {
        if (cur().type != Type::BlockEnd) fail(cur().offset, "expected end of statement block, got " + describe(cur()));
        next();
    }
    std::string expect_name() {
        if (cur().type != Type::Name) fail(cur().offset, "expected a name, got " + describe(cur()));
        std::string name = cur().text;
        next();
        return name;
    }

    ExprPtr make(Expr::Kind kind, size_t offset) {
        auto e = std::make_unique<Expr>();
        e->kind = kind;
        e->offset = offset;
        return e;
    }
    // Records the subtree height once the children are attached.
    ExprPtr finish(ExprPtr e) {
        int d = 0;
        for (const auto& c : e->items)
            if (c) d = std::max(d, c->depth);
        for (const auto& [_, c] : e->keywords) d = std::max(d, c->depth);
        for (const auto& c : e->slice_parts)
            if (c) d = std::max(d, c->depth);
        e->depth = d + 1;
        if (e->depth > kMaxNesting) fail(e->offset, "expression nested too deeply");
        return e;
    }
    ExprPtr unary(Expr::Kind kind, size_t offset, ExprPtr operand) {
        auto e = make(kind, offset);
        e->items.push_back(std::move(operand));
        return finish(std::move(e));
    }
    ExprPtr binary(Expr::Kind kind, size_t offset, ExprPtr a, ExprPtr b) {
        auto e = make(kind, offset);
        e->items.push_back(std::move(a));
        e->items.push_back(std::move(b));
        return finish(std::move(e));
    }

    // ---- statements

    Body subparse(std::initializer_list<std::string_view> end_tags, size_t opened_at, std::string_view block) {
        Nest nest(*this, opened_at);
        Body body;
        while (true) {
            const Token& t = cur();
            if (t.type == Type::Data) {
                auto s = std::make_unique<Stmt>();
                s->offset = t.offset;
                s->node = TextStmt{t.text};
                body.push_back(std::move(s));
                next();
            } else if (t.type == Type::VariableBegin) {
                auto s = std::make_unique<Stmt>();
                s->offset = t.offset;
                next();
                auto e = parse_tuple(true, false);
                if (cur().type != Type::VariableEnd)
                    fail(cur().offset, "expected end of print statement, got " + describe(cur()));
                next();
                s->node = OutputStmt{std::move(e)};
                body.push_back(std::move(s));
            } else if (t.type == Type::BlockBegin) {
                next();
                if (cur().type == Type::Name &&
                    std::find(end_tags.begin(), end_tags.end(), cur().text) != end_tags.end())
                    return body;
                body.push_back(parse_statement(t.offset));
            } else if (t.type == Type::End) {
                if (end_tags.size() == 0) return body;
                std::string wanted;
                for (auto tag : end_tags) wanted += (wanted.empty() ? "'" : " or '") + std::string(tag) + "'";
                fail(opened_at, "unexpected end of template: the '" + std::string(block) +
                                    "' block opened here was never closed (expected " + wanted + ")");
            } else {
                unexpected();
            }
        }
    }

    StmtPtr parse_statement(size_t offset) {
        if (cur().type != Type::Name) fail(cur().offset, "expected a statement name, got " + describe(cur()));
        const std::string tag = cur().text;
        auto s = std::make_unique<Stmt>();
        s->offset = offset;
        next();
        if (tag == "if")
            s->node = parse_if(offset);
        else if (tag == "for")
            s->node = parse_for(offset);
        else if (tag == "set")
            parse_set(*s, offset);
        else if (tag == "macro")
            s->node = parse_macro(offset);
        else if (tag == "filter")
            s->node = parse_filter_block(offset);
        else if (tag == "generation") {
            // transformers' {% generation %} marks assistant text for masks; rendering just keeps the body.
            expect_block_end();
            FilterBlockStmt block;
            block.body = subparse({"endgeneration"}, offset, "generation");
            close_block();
            s->node = std::move(block);
        } else if (tag == "break" || tag == "continue") {
            if (loop_depth_ == 0) fail(offset, "'" + tag + "' outside of a loop");
            expect_block_end();
            if (tag == "break")
                s->node = BreakStmt{};
            else
                s->node = ContinueStmt{};
        } else if (tag.starts_with("end") || tag == "else" || tag == "elif") {
            fail(offset, "unexpected '" + tag + "' tag");
        } else {
            fail(offset, "unknown tag '" + tag + "'");
        }
        return s;
    }

    // Consumes the end tag's name that subparse stopped at, and the closing %}.
    void close_block() {
        next();
        expect_block_end();
    }

    IfStmt parse_if(size_t offset) {
        IfStmt stmt;
        auto cond = parse_tuple(false, false);
        expect_block_end();
        stmt.branches.emplace_back(std::move(cond), subparse({"elif", "else", "endif"}, offset, "if"));
        while (true) {
            const std::string tag = cur().text;
            const size_t at = cur().offset;
            next();
            if (tag == "elif") {
                auto c = parse_tuple(false, false);
                expect_block_end();
                stmt.branches.emplace_back(std::move(c), subparse({"elif", "else", "endif"}, at, "elif"));
            } else if (tag == "else") {
                expect_block_end();
                stmt.otherwise = subparse({"endif"}, at, "else");
                close_block();
                return stmt;
            } else {
                expect_block_end();
                return stmt;
            }
        }
    }

    std::vector<std::string> parse_targets() {
        std::vector<std::string> names;
        const bool parens = is_op("(");
        if (parens) next();
        names.push_back(expect_name());
        while (is_op(",")) {
            next();
            if (cur().type != Type::Name) break;
            names.push_back(expect_name());
        }
        if (parens) expect_op(")");
        return names;
    }

    ForStmt parse_for(size_t offset) {
        ForStmt stmt;
        stmt.targets = parse_targets();
        if (!is_name("in")) fail(cur().offset, "expected 'in', got " + describe(cur()));
        next();
        stmt.iterable = parse_tuple(false, false);
        if (is_name("if")) {
            next();
            stmt.condition = parse_expression(true);
        }
        if (is_name("recursive")) fail(cur().offset, "recursive loops are not supported");
        expect_block_end();
        ++loop_depth_;
        stmt.body = subparse({"endfor", "else"}, offset, "for");
        --loop_depth_;
        if (is_name("else")) {
            const size_t at = cur().offset;
            next();
            expect_block_end();
            stmt.otherwise = subparse({"endfor"}, at, "else");
        }
        close_block();
        return stmt;
    }

    void parse_set(Stmt& s, size_t offset) {
        const size_t at = cur().offset;
        std::string first = expect_name();
        if (is_op(".")) {
            next();
            SetStmt stmt;
            stmt.targets = {std::move(first)};
            stmt.attribute = expect_name();
            expect_op("=");
            stmt.value = parse_tuple(true, false);
            expect_block_end();
            s.node = std::move(stmt);
            return;
        }
        std::vector<std::string> names{std::move(first)};
        while (is_op(",")) {
            next();
            names.push_back(expect_name());
        }
        if (is_op("=")) {
            next();
            SetStmt stmt;
            stmt.targets = std::move(names);
            stmt.value = parse_tuple(true, false);
            expect_block_end();
            s.node = std::move(stmt);
            return;
        }
        if (names.size() != 1) fail(at, "a block assignment takes a single name");
        SetBlockStmt stmt;
        stmt.target = names[0];
        while (is_op("|")) {
            next();
            stmt.filters.push_back(parse_filter_call());
        }
        expect_block_end();
        stmt.body = subparse({"endset"}, offset, "set");
        close_block();
        s.node = std::move(stmt);
    }

    MacroStmt parse_macro(size_t offset) {
        MacroStmt stmt;
        stmt.name = expect_name();
        expect_op("(");
        while (!is_op(")")) {
            if (!stmt.params.empty()) expect_op(",");
            if (is_op(")")) break;
            std::string param = expect_name();
            ExprPtr dflt;
            if (is_op("=")) {
                next();
                dflt = parse_expression(true);
            }
            stmt.params.emplace_back(std::move(param), std::move(dflt));
        }
        next();
        expect_block_end();
        const int saved_loop_depth = loop_depth_;
        loop_depth_ = 0;
        stmt.body = std::make_shared<Body>(subparse({"endmacro"}, offset, "macro"));
        loop_depth_ = saved_loop_depth;
        close_block();
        return stmt;
    }

    FilterBlockStmt parse_filter_block(size_t offset) {
        FilterBlockStmt stmt;
        stmt.filters.push_back(parse_filter_call());
        while (is_op("|")) {
            next();
            stmt.filters.push_back(parse_filter_call());
        }
        expect_block_end();
        stmt.body = subparse({"endfilter"}, offset, "filter");
        close_block();
        return stmt;
    }

    // ---- expressions

    FilterCall parse_filter_call() {
        FilterCall call;
        call.offset = cur().offset;
        call.name = dotted_name();
        if (!builtins::has_filter(call.name))
            throw UnknownFilterError(map_.at(call.offset), "no filter named '" + call.name + "'");
        if (is_op("(")) parse_call_args(call.args, call.keywords);
        return call;
    }

    std::string dotted_name() {
        std::string name = expect_name();
        while (is_op(".") && peek().type == Type::Name) {
            next();
            name += '.';
            name += expect_name();
        }
        return name;
    }

    bool is_tuple_end(bool explicit_parens) const {
        return cur().type == Type::VariableEnd || cur().type == Type::BlockEnd || cur().type == Type::End ||
               (explicit_parens && is_op(")"));
    }

    ExprPtr parse_tuple(bool with_condexpr, bool explicit_parens) {
        const size_t offset = cur().offset;
        std::vector<ExprPtr> items;
        bool is_tuple = false;
        while (true) {
            if (!items.empty()) expect_op(",");
            if (is_tuple_end(explicit_parens)) break;
            items.push_back(parse_expression(with_condexpr));
            if (is_op(","))
                is_tuple = true;
            else
                break;
        }
        if (!is_tuple) {
            if (!items.empty()) return std::move(items[0]);
            if (!explicit_parens) fail(cur().offset, "expected an expression, got " + describe(cur()));
        }
        auto e = make(Expr::Kind::Tuple, offset);
        e->items = std::move(items);
        return finish(std::move(e));
    }

    ExprPtr parse_expression(bool with_condexpr) {
        Nest nest(*this, cur().offset);
        return with_condexpr ? parse_condexpr() : parse_or();
    }

    ExprPtr parse_condexpr() {
        auto expr = parse_or();
        while (is_name("if")) {
            const size_t offset = cur().offset;
            next();
            auto test = parse_or();
            ExprPtr otherwise;
            if (is_name("else")) {
                next();
                Nest nest(*this, cur().offset);
                otherwise = parse_condexpr();
            }
            auto e = make(Expr::Kind::Conditional, offset);
            e->items.push_back(std::move(test));
            e->items.push_back(std::move(expr));
            e->items.push_back(std::move(otherwise));
            expr = finish(std::move(e));
        }
        return expr;
    }

    ExprPtr parse_or() {
        auto left = parse_and();
        while (is_name("or")) {
            const size_t offset = cur().offset;
            next();
            left = binary(Expr::Kind::Or, offset, std::move(left), parse_and());
        }
        return left;
    }

    ExprPtr parse_and() {
        auto left = parse_not();
        while (is_name("and")) {
            const size_t offset = cur().offset;
            next();
            left = binary(Expr::Kind::And, offset, std::move(left), parse_not());
        }
        return left;
    }

    ExprPtr parse_not() {
        if (is_name("not")) {
            const size_t offset = cur().offset;
            next();
            Nest nest(*this, offset);
            return unary(Expr::Kind::Not, offset, parse_not());
        }
        return parse_compare();
    }

    ExprPtr parse_compare() {
        const size_t offset = cur().offset;
        auto first = parse_math1();
        auto e = make(Expr::Kind::Compare, offset);
        e->items.push_back(std::move(first));
        while (true) {
            CompareOp op;
            if (is_op("=="))
                op = CompareOp::Eq;
            else if (is_op("!="))
                op = CompareOp::Ne;
            else if (is_op("<"))
                op = CompareOp::Lt;
            else if (is_op("<="))
                op = CompareOp::Le;
            else if (is_op(">"))
                op = CompareOp::Gt;
            else if (is_op(">="))
                op = CompareOp::Ge;
            else if (is_name("in"))
                op = CompareOp::In;
            else if (is_name("not") && peek().type == Type::Name && peek().text == "in") {
                next();
                op = CompareOp::NotIn;
            } else {
                break;
            }
            next();
            e->compare_ops.push_back(op);
            e->items.push_back(parse_math1());
        }
        if (e->compare_ops.empty()) return std::move(e->items[0]);
        return finish(std::move(e));
    }

    ExprPtr parse_math1() {
        auto left = parse_concat();
        while (is_op("+") || is_op("-")) {
            const size_t offset = cur().offset;
            const BinaryOp op = is_op("+") ? BinaryOp::Add : BinaryOp::Sub;
            next();
            left = binary(Expr::Kind::Binary, offset, std::move(left), parse_concat());
            left->binary_op = op;
        }
        return left;
    }

    ExprPtr parse_concat() {
        auto left = parse_math2();
        while (is_op("~")) {
            const size_t offset = cur().offset;
            next();
            left = binary(Expr::Kind::Binary, offset, std::move(left), parse_math2());
            left->binary_op = BinaryOp::Concat;
        }
        return left;
    }

    ExprPtr parse_math2() {
        auto left = parse_pow();
        while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
            const size_t offset = cur().offset;
            const BinaryOp op = is_op("*")    ? BinaryOp::Mul
                                : is_op("/")  ? BinaryOp::Div
                                : is_op("//") ? BinaryOp::FloorDiv
                                              : BinaryOp::Mod;
            next();
            left = binary(Expr::Kind::Binary, offset, std::move(left), parse_pow());
            left->binary_op = op;
        }
        return left;
    }

    ExprPtr parse_pow() {
        auto left = parse_unary(true);
        while (is_op("**")) {
            const size_t offset = cur().offset;
            next();
            left = binary(Expr::Kind::Binary, offset, std::move(left), parse_unary(true));
            left->binary_op = BinaryOp::Pow;
        }
        return left;
    }

    ExprPtr parse_unary(bool with_filter) {
        const size_t offset = cur().offset;
        Nest nest(*this, offset);
        ExprPtr node;
        if (is_op("-")) {
            next();
            node = unary(Expr::Kind::Negate, offset, parse_unary(false));
        } else if (is_op("+")) {
            next();
            node = unary(Expr::Kind::Plus, offset, parse_unary(false));
        } else {
            node = parse_primary();
        }
        node = parse_postfix(std::move(node));
        if (with_filter) node = parse_filter_expr(std::move(node));
        return node;
    }

    ExprPtr literal(size_t offset, Value v) {
        auto e = make(Expr::Kind::Literal, offset);
        e->value = std::move(v);
        return e;
    }

    ExprPtr parse_primary() {
        const Token& t = cur();
        const size_t offset = t.offset;
        switch (t.type) {
            case Type::Name: {
                const std::string name = t.text;
                next();
                if (name == "true" || name == "True") return literal(offset, Value::boolean(true));
                if (name == "false" || name == "False") return literal(offset, Value::boolean(false));
                if (name == "none" || name == "None") return literal(offset, Value::none());
                auto e = make(Expr::Kind::Name, offset);
                e->name = name;
                return e;
            }
            case Type::String: {
                std::string s;
                while (cur().type == Type::String) {
                    s += cur().text;
                    next();
                }
                return literal(offset, Value::string(std::move(s)));
            }
            case Type::Integer: {
                const std::string spelled = t.text;
                next();
                errno = 0;
                int base = 10;
                size_t skip = 0;
                if (spelled.size() > 2 && spelled[0] == '0' &&
                    (spelled[1] == 'x' || spelled[1] == 'o' || spelled[1] == 'b')) {
                    base = spelled[1] == 'x' ? 16 : spelled[1] == 'o' ? 8 : 2;
                    skip = 2;
                }
                char* end = nullptr;
                const long long v = std::strtoll(spelled.c_str() + skip, &end, base);
                if (errno == ERANGE || *end != '\0') fail(offset, "integer literal out of range: " + spelled);
                return literal(offset, Value::integer(v));
            }
            case Type::Float: {
                const std::string spelled = t.text;
                next();
                return literal(offset, Value::number(std::strtod(spelled.c_str(), nullptr)));
            }
            case Type::Operator:
                if (t.text == "(") {
                    next();
                    auto e = parse_tuple(true, true);
                    expect_op(")");
                    return e;
                }
                if (t.text == "[") return parse_list();
                if (t.text == "{") return parse_dict();
                [[fallthrough]];
            default: unexpected();
        }
    }

    ExprPtr parse_list() {
        auto e = make(Expr::Kind::List, cur().offset);
        next();
        while (!is_op("]")) {
            if (!e->items.empty()) expect_op(",");
            if (is_op("]")) break;
            e->items.push_back(parse_expression(true));
        }
        next();
        return finish(std::move(e));
    }

    ExprPtr parse_dict() {
        auto e = make(Expr::Kind::Dict, cur().offset);
        next();
        while (!is_op("}")) {
            if (!e->items.empty()) expect_op(",");
            if (is_op("}")) break;
            e->items.push_back(parse_expression(true));
            expect_op(":");
            e->items.push_back(parse_expression(true));
        }
        next();
        return finish(std::move(e));
    }

    ExprPtr parse_postfix(ExprPtr node) {
        while (true) {
            if (is_op(".") || is_op("["))
                node = parse_subscript(std::move(node));
            else if (is_op("("))
                node = parse_call(std::move(node));
            else
                return node;
        }
    }

    ExprPtr parse_subscript(ExprPtr node) {
        const size_t offset = cur().offset;
        if (is_op(".")) {
            next();
            if (cur().type == Type::Name) {
                auto e = make(Expr::Kind::Attribute, offset);
                e->name = cur().text;
                next();
                e->items.push_back(std::move(node));
                return finish(std::move(e));
            }
            if (cur().type == Type::Integer) {
                auto index = literal(cur().offset, Value::integer(std::strtoll(cur().text.c_str(), nullptr, 10)));
                next();
                return binary(Expr::Kind::Subscript, offset, std::move(node), std::move(index));
            }
            fail(cur().offset, "expected a name or number after '.', got " + describe(cur()));
        }
        next();  // '['
        auto e = parse_subscribed(offset, std::move(node));
        if (is_op(",")) fail(cur().offset, "tuple subscripts are not supported");
        expect_op("]");
        return e;
    }

    ExprPtr parse_subscribed(size_t offset, ExprPtr node) {
        ExprPtr parts[3];
        if (is_op(":")) {
            next();
        } else {
            auto index = parse_expression(true);
            if (!is_op(":")) return binary(Expr::Kind::Subscript, offset, std::move(node), std::move(index));
            next();
            parts[0] = std::move(index);
        }
        if (!is_op(":") && !is_op("]") && !is_op(",")) parts[1] = parse_expression(true);
        if (is_op(":")) {
            next();
            if (!is_op("]") && !is_op(",")) parts[2] = parse_expression(true);
        }
        auto e = make(Expr::Kind::Slice, offset);
        e->items.push_back(std::move(node));
        for (int i = 0; i < 3; ++i) e->slice_parts[i] = std::move(parts[i]);
        return finish(std::move(e));
    }

    void parse_call_args(std::vector<ExprPtr>& args, std::vector<std::pair<std::string, ExprPtr>>& keywords) {
        expect_op("(");
        while (!is_op(")")) {
            if (!args.empty() || !keywords.empty()) expect_op(",");
            if (is_op(")")) break;
            if (is_op("*") || is_op("**")) fail(cur().offset, "*args and **kwargs are not supported");
            if (cur().type == Type::Name && peek().type == Type::Operator && peek().text == "=") {
                std::string key = cur().text;
                next();
                next();
                keywords.emplace_back(std::move(key), parse_expression(true));
            } else {
                if (!keywords.empty()) fail(cur().offset, "positional argument follows keyword argument");
                args.push_back(parse_expression(true));
            }
        }
        next();
    }

    ExprPtr parse_call(ExprPtr node) {
        auto e = make(Expr::Kind::Call, node->offset);  // errors point at the callee
        e->items.push_back(std::move(node));
        std::vector<ExprPtr> args;
        parse_call_args(args, e->keywords);
        for (auto& a : args) e->items.push_back(std::move(a));
        return finish(std::move(e));
    }

    ExprPtr parse_filter_expr(ExprPtr node) {
        while (true) {
            if (is_op("|")) {
                const size_t offset = cur().offset;
                next();
                FilterCall call = parse_filter_call();
                auto e = make(Expr::Kind::Filter, offset);
                e->name = std::move(call.name);
                e->items.push_back(std::move(node));
                for (auto& a : call.args) e->items.push_back(std::move(a));
                e->keywords = std::move(call.keywords);
                node = finish(std::move(e));
            } else if (is_name("is")) {
                node = parse_test(std::move(node));
            } else if (is_op("(")) {
                node = parse_call(std::move(node));
            } else {
                return node;
            }
        }
    }

    ExprPtr parse_test(ExprPtr node) {
        const size_t offset = cur().offset;
        next();  // 'is'
        auto e = make(Expr::Kind::Test, offset);
        if (is_name("not")) {
            next();
            e->negated = true;
        }
        const size_t name_at = cur().offset;
        e->name = dotted_name();
        if (!builtins::has_test(e->name)) throw UnknownFilterError(map_.at(name_at), "no test named '" + e->name + "'");
        e->items.push_back(std::move(node));
        if (is_op("(")) {
            std::vector<ExprPtr> args;
            parse_call_args(args, e->keywords);
            for (auto& a : args) e->items.push_back(std::move(a));
        } else if ((cur().type == Type::Name || cur().type == Type::String || cur().type == Type::Integer ||
                    cur().type == Type::Float || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
            if (is_name("is")) fail(cur().offset, "you cannot chain multiple tests with 'is'");
            e->items.push_back(parse_postfix(parse_primary()));
        }
        return finish(std::move(e));
    }

    const LocationMap& map_;
    std::vector<Token> tokens_;
    size_t pos_ = 0;
    int nesting_ = 0;
    int loop_depth_ = 0;
};

}  // namespace

std::unique_ptr<Program> parse(std::string_view source, const Options& options) {
    auto program = std::make_unique<Program>(Program{LocationMap(normalize_source(source)), {}});
    Parser parser(program->source, tokenize(program->source, options));
    program->body = parser.parse_template();
    return program;
}

}  // namespace loom::tokenizer::jinja
