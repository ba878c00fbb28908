// Syntax tree of a parsed template: expressions and statements, each with its source offset.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace loom::tokenizer::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class BinaryOp { Add, Sub, Mul, Div, FloorDiv, Mod, Pow, Concat };
enum class CompareOp { Eq, Ne, Lt, Le, Gt, Ge, In, NotIn };

struct Expr {
    enum class Kind {
        Literal,     // value
        Name,        // name
        List,        // items
        Tuple,       // items
        Dict,        // items: key, value, key, value, ...
        Attribute,   // items[0].name
        Subscript,   // items[0][items[1]]
        Slice,       // items[0][slice_parts]; absent parts are null
        Call,        // items[0](items[1..], keywords)
        Filter,      // items[0] | name(items[1..], keywords)
        Test,        // items[0] is [not] name(items[1..], keywords)
        Negate,      // -items[0]
        Plus,        // +items[0]
        Not,         // not items[0]
        And,         // items[0] and items[1]
        Or,          // items[0] or items[1]
        Binary,      // items[0] binary_op items[1]
        Compare,     // items[0] compare_ops[0] items[1] compare_ops[1] items[2] ...
        Conditional  // items[1] if items[0] else items[2] (items[2] may be null)
    };
    Kind kind;
    size_t offset = 0;
    int depth = 1;  // height of this subtree; the parser bounds it so evaluation cannot overflow the stack
    Value value;
    std::string name;
    bool negated = false;
    BinaryOp binary_op = BinaryOp::Add;
    std::vector<CompareOp> compare_ops;
    std::vector<ExprPtr> items;
    std::vector<std::pair<std::string, ExprPtr>> keywords;
    ExprPtr slice_parts[3];
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct FilterCall {
    std::string name;
    size_t offset = 0;
    std::vector<ExprPtr> args;
    std::vector<std::pair<std::string, ExprPtr>> keywords;
};

struct TextStmt {
    std::string text;
};
struct OutputStmt {
    ExprPtr expr;
};
struct IfStmt {
    std::vector<std::pair<ExprPtr, Body>> branches;  // if, then each elif
    Body otherwise;
};
struct ForStmt {
    std::vector<std::string> targets;  // several: tuple unpacking
    ExprPtr iterable;
    ExprPtr condition;  // `for x in y if cond`, or null
    Body body;
    Body otherwise;  // runs when nothing was iterated
};
struct SetStmt {
    std::vector<std::string> targets;  // one name, or several for tuple unpacking
    std::string attribute;             // `set ns.attribute = ...` when not empty (targets[0] is ns)
    ExprPtr value;
};
struct SetBlockStmt {
    std::string target;
    std::vector<FilterCall> filters;
    Body body;
};
struct MacroStmt {
    std::string name;
    std::vector<std::pair<std::string, ExprPtr>> params;  // default value or null
    std::shared_ptr<Body> body;                           // shared with the macro values made at render time
};
struct FilterBlockStmt {
    std::vector<FilterCall> filters;
    Body body;
};
struct BreakStmt {};
struct ContinueStmt {};

struct Stmt {
    size_t offset = 0;
    std::variant<TextStmt, OutputStmt, IfStmt, ForStmt, SetStmt, SetBlockStmt, MacroStmt, FilterBlockStmt, BreakStmt,
                 ContinueStmt>
        node;
};

}  // namespace loom::tokenizer::jinja
