// A small Jinja2 interpreter for Hugging Face chat templates (internal to vlq_lib; the public entry point is
// include/vlq/model/chat_template.h). Semantics follow Jinja 3.1 as transformers configures it:
// ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols,
// AssistantTracker]) with the default Undefined, keep_trailing_newline=False, and transformers' globals
// raise_exception / strftime_now / namespace and its json.dumps-based `tojson` filter. Values behave like
// the Python objects Jinja would see (str, int, float, bool, None, list, dict in insertion order).
//
// Supported: {{ }}, {% %}, {# #}, whitespace control (-, +), raw blocks; statements for (targets, tuple
// unpacking, inline `if` filter, else, loop.*, break/continue), if/elif/else, set (name, tuple, ns.attr,
// block set), macro (positional/keyword parameters with defaults), generation (rendered as its body);
// expressions: literals, list/tuple/dict literals, . and [] access, slices, calls with keyword arguments,
// filters, tests, not/and/or, in/not in, comparisons, + - * / // % ** ~, conditional expressions.
// Filters: jinja_filters.cpp; tests: jinja_tests.cpp; globals and the renderer: jinja_render.cpp; str methods
// and formatting: jinja_format.cpp; value operations and dict methods: jinja_ops.cpp (shared: jinja_builtins.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlq/core/error.h"

namespace vlq::text::jinja {

class Value;
struct List {
  std::vector<Value> items;
  bool tuple = false;
};
struct Dict;
struct CallArgs;
using Function = std::function<Value(CallArgs&)>;
struct Callable {
  std::string name;
  Function fn;
};

// A Jinja/Python value. Lists, dicts and callables are shared (reference semantics, like Python objects).
class Value {
 public:
  enum class Type { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kCallable };

  Value() = default;  // undefined
  static Value undefined(std::string hint = {}) {
    Value v;
    v.str_ = std::move(hint);
    return v;
  }
  static Value none() { return Value(Type::kNone); }
  Value(bool b) : type_(Type::kBool), b_(b) {}
  Value(int i) : type_(Type::kInt), i_(i) {}
  Value(std::int64_t i) : type_(Type::kInt), i_(i) {}
  Value(double d) : type_(Type::kFloat), d_(d) {}
  Value(std::string s) : type_(Type::kString), str_(std::move(s)) {}
  Value(const char* s) : type_(Type::kString), str_(s) {}
  Value(std::shared_ptr<List> l) : type_(Type::kList), list_(std::move(l)) {}
  Value(std::shared_ptr<Dict> d) : type_(Type::kDict), dict_(std::move(d)) {}
  Value(std::shared_ptr<Callable> c) : type_(Type::kCallable), fn_(std::move(c)) {}
  static Value list(std::vector<Value> items = {}, bool tuple = false);
  static Value dict();
  static Value function(std::string name, Function fn);
  static Value from_json(const nlohmann::ordered_json& j);

  Type type() const { return type_; }
  bool is_undefined() const { return type_ == Type::kUndefined; }
  bool is_none() const { return type_ == Type::kNone; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_int() const { return type_ == Type::kInt; }  // bool is not int here; see is_number
  bool is_float() const { return type_ == Type::kFloat; }
  bool is_number() const { return type_ == Type::kInt || type_ == Type::kFloat || type_ == Type::kBool; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_list() const { return type_ == Type::kList; }
  bool is_dict() const { return type_ == Type::kDict; }
  bool is_callable() const { return type_ == Type::kCallable; }

  bool as_bool() const { return b_; }
  std::int64_t as_int() const { return type_ == Type::kBool ? (b_ ? 1 : 0) : i_; }
  double as_double() const { return type_ == Type::kFloat ? d_ : static_cast<double>(as_int()); }
  const std::string& as_string() const { return str_; }
  const std::string& undefined_hint() const { return str_; }
  List& as_list() const { return *list_; }
  Dict& as_dict() const { return *dict_; }
  const Callable& as_callable() const { return *fn_; }
  const std::shared_ptr<List>& list_ptr() const { return list_; }
  const std::shared_ptr<Dict>& dict_ptr() const { return dict_; }

  // Python truthiness (undefined and None are false; empty str/list/dict are false).
  bool truthy() const;
  // Python str() (undefined -> "", None -> "None", True -> "True", 1.0 -> "1.0", lists/dicts as repr).
  std::string str() const;
  // Python repr().
  std::string repr() const;
  // Python type name for error messages: "str", "int", "list", "dict", "NoneType", "Undefined", ...
  std::string type_name() const;
  // Python ==.
  bool equals(const Value& o) const;
  // json.dumps(value, ensure_ascii=False, indent, separators, sort_keys) as transformers' tojson.
  std::string to_json(int indent = -1, bool sort_keys = false, std::string item_sep = "",
                      std::string key_sep = "") const;

 private:
  explicit Value(Type t) : type_(t) {}
  Type type_ = Type::kUndefined;
  bool b_ = false;
  std::int64_t i_ = 0;
  double d_ = 0;
  std::string str_;  // string value, or the undefined hint (name of the missing variable / attribute)
  std::shared_ptr<List> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<Callable> fn_;
};

// Insertion-ordered string-keyed mapping (Python dict with str keys), or a Jinja namespace().
struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;
  const Value* find(std::string_view key) const {
    for (const auto& kv : items)
      if (kv.first == key) return &kv.second;
    return nullptr;
  }
  void set(const std::string& key, Value v) {
    for (auto& kv : items)
      if (kv.first == key) {
        kv.second = std::move(v);
        return;
      }
    items.emplace_back(key, std::move(v));
  }
};

// Arguments of a call: positional then keyword.
struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
  // Positional `i`, else keyword `name`, else `dflt`.
  Value get(std::size_t i, std::string_view name, Value dflt = Value()) const;
};

// Python float repr (shortest round trip; "1.0", "1e-05", "1e+16", "inf", "nan").
std::string float_repr(double d);

// Raised inside the interpreter; converted to TemplateError (with line/column) by the renderer.
struct RuntimeFailure {
  std::string message;
};

// Breaks the reference cycles a template can build between shared containers ({% set ns.me = ns %}, a list
// appended to itself, a macro stored in a dict it can reach): while one is alive on a thread, every List, Dict and
// Callable that Value creates on that thread is recorded (weakly); when it ends, those still alive — the ones kept
// only by a cycle, once their owners are gone — are emptied, which frees them. ChatTemplate::render holds one around
// building its variables and rendering (found by the ASan run of ChatTemplate.HostileTemplatesFailCleanly,
// 2026-12-08). Nested collectors: the outermost one collects.
class CycleCollector {
 public:
  CycleCollector();
  ~CycleCollector();
  CycleCollector(const CycleCollector&) = delete;
  CycleCollector& operator=(const CycleCollector&) = delete;
  static void record(const std::shared_ptr<List>& l);
  static void record(const std::shared_ptr<Dict>& d);
  static void record(const std::shared_ptr<Callable>& c);

 private:
  bool outer_ = false;
};

// A parsed template.
class Template {
 public:
  // Parses `source`; throws vlq::text::TemplateError (see chat_template.h) naming `name`, line and column.
  Template(std::string_view source, std::string name);
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;
  // Renders with the given top-level variables. Throws TemplateError on runtime errors.
  std::string render(const std::map<std::string, Value>& vars) const;
  const std::string& name() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace vlq::text::jinja
