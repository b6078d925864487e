// Jinja value operations with Python semantics: len/iteration/comparison/membership, arithmetic, the loop
// object, attribute/item/slice access and dict methods (see jinja_builtins.h).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "text/jinja_builtins.h"
#include "vlq/text/utf8.h"

namespace vlq::text::jinja::detail {


[[noreturn]] void undefined_error(const Value& v) {
  fail(v.undefined_hint().empty() ? std::string("value is undefined") : v.undefined_hint());
}

std::string undefined_name_hint(const std::string& name) { return "'" + name + "' is undefined"; }


// A run of decimal digits as an index; fails (instead of throwing std::out_of_range) when too large.
std::int64_t parse_index(const std::string& digits) {
  std::int64_t v = 0;
  for (char c : digits) {
    if (v > (INT64_MAX - 9) / 10) fail("index '" + digits + "' is too large");
    v = v * 10 + (c - '0');
  }
  return v;
}

std::int64_t py_len(const Value& v) {
  switch (v.type()) {
    case Value::Type::kString: return static_cast<std::int64_t>(utf8::length(v.as_string()));
    case Value::Type::kList: return static_cast<std::int64_t>(v.as_list().items.size());
    case Value::Type::kDict: return static_cast<std::int64_t>(v.as_dict().items.size());
    case Value::Type::kUndefined: return 0;
    default: fail("object of type '" + v.type_name() + "' has no len()");
  }
}

// Items of an iterable (Python iter()): list items, dict keys, string characters; undefined -> nothing.
std::vector<Value> iterate(const Value& v) {
  switch (v.type()) {
    case Value::Type::kList: return v.as_list().items;
    case Value::Type::kDict: {
      if (v.as_dict().is_namespace) fail("'Namespace' object is not iterable");
      std::vector<Value> keys;
      for (const auto& kv : v.as_dict().items) keys.emplace_back(kv.first);
      return keys;
    }
    case Value::Type::kString: {
      std::vector<Value> chars;
      std::size_t i = 0;
      const std::string& s = v.as_string();
      while (i < s.size()) {
        const std::size_t b = i;
        utf8::next(s, i);
        chars.emplace_back(s.substr(b, i - b));
      }
      return chars;
    }
    case Value::Type::kUndefined: return {};
    default: fail("'" + v.type_name() + "' object is not iterable");
  }
}

// Python ordering; throws TypeError-like failures for unorderable pairs.
int compare_values(const Value& a, const Value& b, const char* op) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      const double x = a.as_double(), y = b.as_double();
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    return a.as_int() < b.as_int() ? -1 : (a.as_int() > b.as_int() ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.as_string().compare(b.as_string());  // UTF-8 byte order == code point order
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.as_list().tuple == b.as_list().tuple) {
    const auto& x = a.as_list().items;
    const auto& y = b.as_list().items;
    for (std::size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (x[i].equals(y[i])) continue;
      return compare_values(x[i], y[i], op);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  fail(std::string("'") + op + "' not supported between instances of '" + a.type_name() + "' and '" + b.type_name() +
       "'");
}

bool contains(const Value& container, const Value& item) {
  switch (container.type()) {
    case Value::Type::kString:
      if (!item.is_string())
        fail("'in <string>' requires string as left operand, not " + item.type_name());
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Type::kList:
      for (const Value& v : container.as_list().items)
        if (v.equals(item)) return true;
      return false;
    case Value::Type::kDict:
      if (container.as_dict().is_namespace) fail("argument of type 'Namespace' is not iterable");
      return item.is_string() && container.as_dict().find(item.as_string()) != nullptr;
    case Value::Type::kUndefined: return false;
    default: fail("argument of type '" + container.type_name() + "' is not iterable");
  }
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

Value arith(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  if (op == "%" && a.is_string()) return Value(percent_format(a.as_string(), b));
  auto type_error = [&]() -> Value {
    fail("unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" + b.type_name() + "'");
  };
  if (op == "+") {
    if (a.is_string() && b.is_string()) return Value(a.as_string() + b.as_string());
    if (a.is_list() && b.is_list() && a.as_list().tuple == b.as_list().tuple) {
      std::vector<Value> items = a.as_list().items;
      items.insert(items.end(), b.as_list().items.begin(), b.as_list().items.end());
      return Value::list(std::move(items), a.as_list().tuple);
    }
    if (a.is_string() || b.is_string()) {
      if (a.is_string()) fail("can only concatenate str (not \"" + b.type_name() + "\") to str");
      return type_error();
    }
  }
  if (op == "*") {
    const Value* seq = a.is_string() || a.is_list() ? &a : (b.is_string() || b.is_list() ? &b : nullptr);
    const Value* cnt = seq == &a ? &b : &a;
    if (seq && (cnt->is_int() || cnt->is_bool())) {
      const std::int64_t n = std::max<std::int64_t>(0, cnt->as_int());
      if (seq->is_string()) {
        if (static_cast<double>(n) * static_cast<double>(seq->as_string().size()) > kMaxOutputBytes) fail("string too long");
        std::string out;
        for (std::int64_t i = 0; i < n; ++i) out += seq->as_string();
        return Value(std::move(out));
      }
      if (static_cast<double>(n) * static_cast<double>(seq->as_list().items.size()) > kMaxListItems) fail("list too long");
      std::vector<Value> items;
      for (std::int64_t i = 0; i < n; ++i)
        items.insert(items.end(), seq->as_list().items.begin(), seq->as_list().items.end());
      return Value::list(std::move(items), seq->as_list().tuple);
    }
  }
  if (!a.is_number() || !b.is_number()) return type_error();
  const bool use_float = a.is_float() || b.is_float();
  // Python integers are unbounded; vlq's are 64-bit and overflow is an error rather than a wrong value.
  if (op == "+" || op == "-" || op == "*") {
    if (use_float) {
      const double x = a.as_double(), y = b.as_double();
      return Value(op == "+" ? x + y : op == "-" ? x - y : x * y);
    }
    std::int64_t r = 0;
    const bool overflow = op == "+"   ? __builtin_add_overflow(a.as_int(), b.as_int(), &r)
                          : op == "-" ? __builtin_sub_overflow(a.as_int(), b.as_int(), &r)
                                      : __builtin_mul_overflow(a.as_int(), b.as_int(), &r);
    if (overflow) fail("integer overflow (template integers are 64-bit)");
    return Value(r);
  }
  if (!use_float && (op == "//" || op == "%") && a.as_int() == INT64_MIN && b.as_int() == -1)
    fail("integer overflow (template integers are 64-bit)");
  if (op == "/") {
    if (b.as_double() == 0) fail("division by zero");
    return Value(a.as_double() / b.as_double());
  }
  if (op == "//") {
    if (b.as_double() == 0) fail("integer division or modulo by zero");
    if (use_float) return Value(std::floor(a.as_double() / b.as_double()));
    return Value(floor_div(a.as_int(), b.as_int()));
  }
  if (op == "%") {
    if (b.as_double() == 0) fail("integer division or modulo by zero");
    if (use_float) {
      const double r = std::fmod(a.as_double(), b.as_double());
      if (r == 0) return Value(std::copysign(0.0, b.as_double()));  // Python: zero takes the divisor's sign
      return Value((r < 0) != (b.as_double() < 0) ? r + b.as_double() : r);
    }
    return Value(a.as_int() - floor_div(a.as_int(), b.as_int()) * b.as_int());
  }
  if (op == "**") {
    if (!use_float && b.as_int() >= 0) {
      const std::int64_t base = a.as_int(), e = b.as_int();
      if (base == 0) return Value(std::int64_t{e == 0 ? 1 : 0});
      if (base == 1) return Value(1);
      if (base == -1) return Value(std::int64_t{e % 2 ? -1 : 1});
      std::int64_t p = 1;  // |base| >= 2: overflows within 63 steps
      for (std::int64_t k = 0; k < e; ++k)
        if (__builtin_mul_overflow(p, base, &p)) fail("integer overflow (template integers are 64-bit)");
      return Value(p);
    }
    return Value(std::pow(a.as_double(), b.as_double()));
  }
  return type_error();
}

// The `loop` object of a for statement: one mutable dict updated in place each iteration (as Jinja's
// LoopContext is one object), so `{% set outer = loop %}` sees the current state.
Value make_loop() {
  Value loop = Value::dict();
  Dict& d = loop.as_dict();
  for (const char* k : {"index", "index0", "revindex", "revindex0", "first", "last", "length", "depth", "depth0",
                        "previtem", "nextitem"})
    d.items.emplace_back(k, Value());
  std::weak_ptr<Dict> weak = loop.dict_ptr();
  d.items.emplace_back("cycle", Value::function("cycle", [weak](CallArgs& a) -> Value {
                         if (a.args.empty()) fail("no items for cycling given");
                         const auto self = weak.lock();
                         const std::int64_t i = self ? self->items[1].second.as_int() : 0;
                         return a.args[static_cast<std::size_t>(i) % a.args.size()];
                       }));
  return loop;
}

void update_loop(Dict& d, std::size_t i, const std::vector<Value>& items) {
  const auto n = static_cast<std::int64_t>(items.size());
  const auto idx = static_cast<std::int64_t>(i);
  d.items[0].second = Value(idx + 1);
  d.items[1].second = Value(idx);
  d.items[2].second = Value(n - idx);
  d.items[3].second = Value(n - idx - 1);
  d.items[4].second = Value(i == 0);
  d.items[5].second = Value(idx == n - 1);
  d.items[6].second = Value(n);
  d.items[7].second = Value(1);
  d.items[8].second = Value(0);
  d.items[9].second = i > 0 ? items[i - 1] : Value::undefined("there is no previous item");
  d.items[10].second = i + 1 < items.size() ? items[i + 1] : Value::undefined("there is no next item");
}

Value dict_method(const Value& obj, const std::string& name) {
  auto d = obj.dict_ptr();
  if (name == "items")
    return Value::function(name, [d](CallArgs&) {
      std::vector<Value> out;
      for (const auto& kv : d->items) out.push_back(Value::list({Value(kv.first), kv.second}, true));
      return Value::list(std::move(out));
    });
  if (name == "keys")
    return Value::function(name, [d](CallArgs&) {
      std::vector<Value> out;
      for (const auto& kv : d->items) out.emplace_back(kv.first);
      return Value::list(std::move(out));
    });
  if (name == "values")
    return Value::function(name, [d](CallArgs&) {
      std::vector<Value> out;
      for (const auto& kv : d->items) out.push_back(kv.second);
      return Value::list(std::move(out));
    });
  if (name == "get")
    return Value::function(name, [d](CallArgs& a) -> Value {
      const Value key = a.get(0, "key");
      if (key.is_string())
        if (const Value* v = d->find(key.as_string())) return *v;
      return a.get(1, "default", Value::none());
    });
  return Value::undefined();
}

Value get_attr(const Value& obj, const std::string& name) {
  switch (obj.type()) {
    case Value::Type::kUndefined: undefined_error(obj);
    case Value::Type::kDict: {
      if (obj.as_dict().is_namespace) {
        if (const Value* v = obj.as_dict().find(name)) return *v;
        return Value::undefined("'Namespace object' has no attribute '" + name + "'");
      }
      Value m = dict_method(obj, name);
      if (!m.is_undefined()) return m;
      if (const Value* v = obj.as_dict().find(name)) return *v;
      return Value::undefined("'dict object' has no attribute '" + name + "'");
    }
    case Value::Type::kString: return string_method(obj.as_string(), name);
    case Value::Type::kList: {
      auto l = obj.list_ptr();
      if (name == "index" || name == "count")
        return Value::function(name, [l, name](CallArgs& a) -> Value {
          const Value x = a.get(0, "value");
          std::int64_t n = 0;
          for (std::size_t i = 0; i < l->items.size(); ++i) {
            if (!l->items[i].equals(x)) continue;
            if (name == "index") return Value(static_cast<std::int64_t>(i));
            ++n;
          }
          if (name == "index") fail(x.repr() + " is not in list");
          return Value(n);
        });
      return Value::undefined("'" + obj.type_name() + " object' has no attribute '" + name + "'");
    }
    default: return Value::undefined("'" + obj.repr() + "' has no attribute '" + name + "'");
  }
}

Value get_item(const Value& obj, const Value& key) {
  switch (obj.type()) {
    case Value::Type::kUndefined: undefined_error(obj);
    case Value::Type::kDict:
      if (key.is_string()) {
        if (!obj.as_dict().is_namespace)
          if (const Value* v = obj.as_dict().find(key.as_string())) return *v;
        return get_attr(obj, key.as_string());
      }
      return Value::undefined("'dict object' has no attribute " + key.repr());
    case Value::Type::kList:
      if (key.is_int() || key.is_bool()) {
        const auto& items = obj.as_list().items;
        std::int64_t i = key.as_int();
        if (i < 0) i += static_cast<std::int64_t>(items.size());
        if (i < 0 || i >= static_cast<std::int64_t>(items.size()))
          return Value::undefined("'" + obj.type_name() + " object' has no attribute " + key.repr());
        return items[static_cast<std::size_t>(i)];
      }
      if (key.is_string()) return get_attr(obj, key.as_string());
      return Value::undefined("'" + obj.type_name() + " object' has no attribute " + key.repr());
    case Value::Type::kString:
      if (key.is_int() || key.is_bool()) {
        const auto cps = to_cps(obj.as_string());
        std::int64_t i = key.as_int();
        if (i < 0) i += static_cast<std::int64_t>(cps.size());
        if (i < 0 || i >= static_cast<std::int64_t>(cps.size()))
          return Value::undefined("'str object' has no attribute " + key.repr());
        return Value(from_cps(cps, static_cast<std::size_t>(i), static_cast<std::size_t>(i) + 1));
      }
      if (key.is_string()) return get_attr(obj, key.as_string());
      return Value::undefined("'str object' has no attribute " + key.repr());
    default:
      if (key.is_string()) return get_attr(obj, key.as_string());
      return Value::undefined("'" + obj.repr() + "' has no attribute " + key.repr());
  }
}

// Python slice indices for a sequence of length n.
std::vector<std::size_t> slice_indices(std::int64_t n, const Value& start, const Value& stop, const Value& step) {
  auto opt = [](const Value& v) { return v.is_undefined() || v.is_none(); };
  for (const Value* v : {&start, &stop, &step})
    if (!opt(*v) && !v->is_int() && !v->is_bool())
      fail("slice indices must be integers or None");
  const std::int64_t st = opt(step) ? 1 : step.as_int();
  if (st == 0) fail("slice step cannot be zero");
  auto clamp = [&](const Value& v, std::int64_t dflt) {
    if (opt(v)) return dflt;
    std::int64_t i = v.as_int();
    if (i < 0) i += n;
    if (st > 0) return std::clamp<std::int64_t>(i, 0, n);
    return std::clamp<std::int64_t>(i, -1, n - 1);
  };
  const std::int64_t b = clamp(start, st > 0 ? 0 : n - 1);
  const std::int64_t e = clamp(stop, st > 0 ? n : -1);
  std::vector<std::size_t> idx;
  if (st > 0)
    for (std::int64_t i = b; i < e; i += st) idx.push_back(static_cast<std::size_t>(i));
  else
    for (std::int64_t i = b; i > e; i += st) idx.push_back(static_cast<std::size_t>(i));
  return idx;
}

Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.is_undefined()) undefined_error(obj);
  if (obj.is_string()) {
    const auto cps = to_cps(obj.as_string());
    std::string out;
    for (std::size_t i : slice_indices(static_cast<std::int64_t>(cps.size()), start, stop, step)) utf8::append(out, cps[i]);
    return Value(out);
  }
  if (obj.is_list()) {
    const auto& items = obj.as_list().items;
    std::vector<Value> out;
    for (std::size_t i : slice_indices(static_cast<std::int64_t>(items.size()), start, stop, step)) out.push_back(items[i]);
    return Value::list(std::move(out), obj.as_list().tuple);
  }
  fail("'" + obj.type_name() + "' object is not subscriptable");
}
}  // namespace vlq::text::jinja::detail
