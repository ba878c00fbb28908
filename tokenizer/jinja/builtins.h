// Built-in filters, tests, globals and the methods of str, dict and list values, as Jinja's
// ImmutableSandboxedEnvironment (the one Hugging Face uses) provides them.
#pragma once

#include <string>
#include <string_view>

#include "tokenizer/jinja/jinja.h"
#include "tokenizer/jinja/value.h"

namespace loom::tokenizer::jinja::builtins {

bool has_filter(std::string_view name);
bool has_test(std::string_view name);

// Both throw OperationError.
Value apply_filter(const std::string& name, const Value& input, CallArgs& args);
bool apply_test(const std::string& name, const Value& input, CallArgs& args);

// `object.name`: bound methods of str/dict/list, dict items, namespace and loop attributes;
// Undefined when absent (Jinja's default Undefined). Throws OperationError on Undefined objects.
Value get_attribute(const Value& object, const std::string& name);
// `object[key]`: list/str indexing, dict lookup, falling back to attributes; Undefined when absent.
Value get_item(const Value& object, const Value& key);

// range(), namespace(), dict().
const Variables& globals();

// Python's len() (str in code points); throws OperationError for values without a length.
int64_t length(const Value& v);
// The items a `for` loop visits: list items, dict keys, string characters; Undefined gives none.
std::vector<Value> iterate(const Value& v);

}  // namespace loom::tokenizer::jinja::builtins
