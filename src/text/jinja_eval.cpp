// Jinja evaluator (see jinja.h): statements, expressions with Python semantics, the filters / tests /
// globals / str and dict methods that chat templates use, and error reporting with line/column.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <cstring>
#include <functional>
#include <unordered_map>

#include "text/jinja_ast.h"
#include "vlq/text/utf8.h"
#include "vlq/text/chat_template.h"

namespace vlq::text::jinja {

namespace {

// A runtime failure with the location of the innermost expression or statement that raised it.
struct LocatedFailure {
  std::string message;
  int line;
  int col;
};

[[noreturn]] void fail(std::string msg) { throw RuntimeFailure{std::move(msg)}; }

constexpr std::size_t kMaxOutputBytes = std::size_t{64} << 20;
constexpr int kMaxCallDepth = 100;
constexpr std::int64_t kMaxRange = 1'000'000;
constexpr std::int64_t kMaxLoopIterations = 1'000'000;  // over a whole rendering
constexpr std::size_t kMaxListItems = 10'000'000;

[[noreturn]] void undefined_error(const Value& v) {
  fail(v.undefined_hint().empty() ? std::string("value is undefined") : v.undefined_hint());
}

std::string undefined_name_hint(const std::string& name) { return "'" + name + "' is undefined"; }

Value get_attr(const Value& obj, const std::string& name);
Value get_item(const Value& obj, const Value& key);

// A run of decimal digits as an index; fails (instead of throwing std::out_of_range) when too large.
std::int64_t parse_index(const std::string& digits) {
  std::int64_t v = 0;
  for (char c : digits) {
    if (v > (INT64_MAX - 9) / 10) fail("index '" + digits + "' is too large");
    v = v * 10 + (c - '0');
  }
  return v;
}

// ---- string helpers (code-point aware, Python semantics) ----

std::vector<char32_t> to_cps(const std::string& s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) out.push_back(utf8::next(s, i));
  return out;
}

std::string from_cps(const std::vector<char32_t>& cps, std::size_t b, std::size_t e) {
  std::string out;
  for (std::size_t i = b; i < e; ++i) utf8::append(out, cps[i]);
  return out;
}

std::string py_strip(const std::string& s, const Value& chars, bool left, bool right) {
  std::vector<char32_t> set;
  const bool ws = chars.is_undefined() || chars.is_none();
  if (!ws) {
    if (!chars.is_string()) fail("strip arg must be None or str");
    set = to_cps(chars.as_string());
  }
  auto strip_it = [&](char32_t c) {
    return ws ? utf8::is_py_space(c) : std::find(set.begin(), set.end(), c) != set.end();
  };
  const auto cps = to_cps(s);
  std::size_t b = 0, e = cps.size();
  if (left)
    while (b < e && strip_it(cps[b])) ++b;
  if (right)
    while (e > b && strip_it(cps[e - 1])) --e;
  return from_cps(cps, b, e);
}

std::vector<Value> py_split(const std::string& s, const Value& sep, std::int64_t maxsplit) {
  std::vector<Value> out;
  if (sep.is_undefined() || sep.is_none()) {
    const auto cps = to_cps(s);
    std::size_t i = 0;
    while (true) {
      while (i < cps.size() && utf8::is_py_space(cps[i])) ++i;
      if (i >= cps.size()) break;
      if (maxsplit >= 0 && static_cast<std::int64_t>(out.size()) == maxsplit) {
        std::size_t e = cps.size();
        while (e > i && utf8::is_py_space(cps[e - 1])) --e;
        out.emplace_back(from_cps(cps, i, e));
        break;
      }
      std::size_t j = i;
      while (j < cps.size() && !utf8::is_py_space(cps[j])) ++j;
      out.emplace_back(from_cps(cps, i, j));
      i = j;
    }
    return out;
  }
  if (!sep.is_string()) fail("must be str or None, not " + sep.type_name());
  const std::string& d = sep.as_string();
  if (d.empty()) fail("empty separator");
  std::size_t start = 0;
  while (true) {
    if (maxsplit >= 0 && static_cast<std::int64_t>(out.size()) == maxsplit) break;
    const std::size_t p = s.find(d, start);
    if (p == std::string::npos) break;
    out.emplace_back(s.substr(start, p - start));
    start = p + d.size();
  }
  out.emplace_back(s.substr(start));
  return out;
}

std::string py_replace(const std::string& s, const std::string& old, const std::string& repl, std::int64_t count) {
  if (old.empty()) {
    // Python inserts `repl` between every character (and at both ends).
    const auto cps = to_cps(s);
    std::string out;
    std::int64_t n = 0;
    for (std::size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || n < count) {
        out += repl;
        ++n;
      }
      if (i < cps.size()) utf8::append(out, cps[i]);
    }
    return out;
  }
  std::string out;
  std::size_t start = 0;
  std::int64_t n = 0;
  while (count < 0 || n < count) {
    const std::size_t p = s.find(old, start);
    if (p == std::string::npos) break;
    out.append(s, start, p - start);
    out += repl;
    start = p + old.size();
    ++n;
  }
  out.append(s, start, std::string::npos);
  return out;
}

std::string map_case(const std::string& s, bool upper) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    const char32_t c = utf8::next(s, i);
    utf8::append(out, upper ? utf8::to_upper(c) : utf8::to_lower(c));
  }
  return out;
}

bool is_cased_letter(char32_t c) { return utf8::to_upper(c) != c || utf8::to_lower(c) != c; }

std::string py_capitalize(const std::string& s) {
  std::string out;
  std::size_t i = 0;
  bool first = true;
  while (i < s.size()) {
    const char32_t c = utf8::next(s, i);
    utf8::append(out, first ? utf8::to_upper(c) : utf8::to_lower(c));
    first = false;
  }
  return out;
}

// Python str.title(): a cased letter after an uncased character starts a word.
std::string py_title(const std::string& s) {
  std::string out;
  std::size_t i = 0;
  bool prev_cased = false;
  while (i < s.size()) {
    const char32_t c = utf8::next(s, i);
    const bool cased = is_cased_letter(c);
    utf8::append(out, cased ? (prev_cased ? utf8::to_lower(c) : utf8::to_upper(c)) : c);
    prev_cased = cased;
  }
  return out;
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

// Python printf-style formatting: str % value / str % tuple (%s %r %d %i %f %e %g %x %X %o %c %%, with
// flags/width/precision).
std::string percent_format(const std::string& fmt, const Value& arg) {
  std::vector<Value> args = arg.is_list() && arg.as_list().tuple ? arg.as_list().items : std::vector<Value>{arg};
  const Value* mapping = arg.is_dict() ? &arg : nullptr;
  std::size_t next = 0;
  std::string out;
  for (std::size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size()) fail("incomplete format");
    if (fmt[i] == '%') {
      out += '%';
      continue;
    }
    const Value* val = nullptr;
    Value keyed;
    if (fmt[i] == '(') {
      const std::size_t close = fmt.find(')', i);
      if (close == std::string::npos || !mapping) fail("format requires a mapping");
      const Value* v = mapping->as_dict().find(fmt.substr(i + 1, close - i - 1));
      if (!v) fail("KeyError: '" + fmt.substr(i + 1, close - i - 1) + "'");
      keyed = *v;
      val = &keyed;
      i = close + 1;
    }
    std::string spec = "%";
    while (i < fmt.size() && std::strchr("-+ #0123456789.", fmt[i])) spec += fmt[i++];
    if (spec.size() > 8) fail("format specification too long: " + spec);
    if (i >= fmt.size()) fail("incomplete format");
    const char conv = fmt[i];
    if (!val) {
      if (next >= args.size()) fail("not enough arguments for format string");
      val = &args[next++];
    }
    char buf[512];
    switch (conv) {
      case 's':
      case 'r': {
        std::string str = conv == 's' ? val->str() : val->repr();
        const bool left = spec.find('-') != std::string::npos;
        std::size_t p = 1;
        while (p < spec.size() && std::strchr("-+ #0", spec[p])) ++p;
        std::size_t width = 0;
        while (p < spec.size() && std::isdigit(static_cast<unsigned char>(spec[p]))) width = width * 10 + static_cast<std::size_t>(spec[p++] - '0');
        if (p < spec.size() && spec[p] == '.') {
          std::size_t prec = 0;
          ++p;
          while (p < spec.size() && std::isdigit(static_cast<unsigned char>(spec[p]))) prec = prec * 10 + static_cast<std::size_t>(spec[p++] - '0');
          const auto cps = to_cps(str);
          if (cps.size() > prec) str = from_cps(cps, 0, prec);
        }
        if (width > 1'000'000) fail("format width too large");
        const std::size_t len = utf8::length(str);
        const std::string pad = len < width ? std::string(width - len, ' ') : std::string();
        out += left ? str + pad : pad + str;
        break;
      }
      case 'd':
      case 'i':
      case 'x':
      case 'X':
      case 'o':
        if (!val->is_number()) fail("%" + std::string(1, conv) + " format: a real number is required, not " + val->type_name());
        std::snprintf(buf, sizeof buf, (spec + "ll" + (conv == 'i' ? 'd' : conv)).c_str(),
                      static_cast<long long>(val->is_float() ? static_cast<std::int64_t>(val->as_double()) : val->as_int()));
        out += buf;
        break;
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G':
        if (!val->is_number()) fail("must be real number, not " + val->type_name());
        std::snprintf(buf, sizeof buf, (spec + conv).c_str(), val->as_double());
        out += buf;
        break;
      case 'c':
        if (val->is_string()) {
          out += val->as_string();
        } else {
          utf8::append(out, static_cast<char32_t>(val->as_int()));
        }
        break;
      default: fail(std::string("unsupported format character '") + conv + "'");
    }
  }
  if (!mapping && next < args.size()) fail("not all arguments converted during string formatting");
  return out;
}

// str.format with {} / {0} / {name} / {name.attr} / {0[key]} fields and {{ }} escapes; format specs other
// than empty are not supported.
std::string brace_format(const std::string& fmt, const CallArgs& a) {
  std::string out;
  std::size_t auto_index = 0;
  for (std::size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if (c == '{' && i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    if (c == '}' && i + 1 < fmt.size() && fmt[i + 1] == '}') {
      out += '}';
      ++i;
      continue;
    }
    if (c == '}') fail("Single '}' encountered in format string");
    if (c != '{') {
      out += c;
      continue;
    }
    const std::size_t close = fmt.find('}', i);
    if (close == std::string::npos) fail("Single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, close - i - 1);
    i = close;
    std::string conv;
    if (const std::size_t bang = field.find('!'); bang != std::string::npos) {
      conv = field.substr(bang + 1);
      field.resize(bang);
    }
    if (const std::size_t colon = field.find(':'); colon != std::string::npos) {
      if (colon + 1 != field.size()) fail("format specs are not supported in str.format: '" + field + "'");
      field.resize(colon);
    }
    std::size_t j = 0;
    while (j < field.size() && field[j] != '.' && field[j] != '[') ++j;
    const std::string head = field.substr(0, j);
    Value v;
    if (head.empty()) {
      v = a.get(auto_index++, "\x01");
    } else if (std::all_of(head.begin(), head.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
      v = a.get(static_cast<std::size_t>(parse_index(head)), "\x01");
    } else {
      v = a.get(static_cast<std::size_t>(-1), head);
    }
    if (v.is_undefined()) fail("format field '" + field + "' has no argument");
    while (j < field.size()) {
      if (field[j] == '.') {
        std::size_t k = j + 1;
        while (k < field.size() && field[k] != '.' && field[k] != '[') ++k;
        v = get_attr(v, field.substr(j + 1, k - j - 1));
        j = k;
      } else {
        const std::size_t k = field.find(']', j);
        if (k == std::string::npos) fail("Missing ']' in format string");
        const std::string key = field.substr(j + 1, k - j - 1);
        const bool numeric = !key.empty() && std::all_of(key.begin(), key.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
        v = get_item(v, numeric ? Value(parse_index(key)) : Value(key));
        j = k + 1;
      }
    }
    out += conv == "r" ? v.repr() : v.str();
  }
  return out;
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

// Attribute of a value (Jinja environment.getattr): namespace attributes, str/dict/list methods, then items.
Value get_attr(const Value& obj, const std::string& name);
Value get_item(const Value& obj, const Value& key);

Value string_method(const std::string& s, const std::string& name) {
  auto m = [&](Function fn) { return Value::function(name, std::move(fn)); };
  if (name == "startswith" || name == "endswith") {
    const bool starts = name == "startswith";
    return m([s, starts](CallArgs& a) -> Value {
      const Value arg = a.get(0, "prefix");
      std::vector<Value> cands = arg.is_list() ? arg.as_list().items : std::vector<Value>{arg};
      for (const Value& c : cands) {
        if (!c.is_string()) fail(std::string(starts ? "startswith" : "endswith") + " first arg must be str or a tuple of str");
        const std::string& p = c.as_string();
        if (p.size() <= s.size() && (starts ? s.compare(0, p.size(), p) == 0 : s.compare(s.size() - p.size(), p.size(), p) == 0))
          return Value(true);
      }
      return Value(false);
    });
  }
  if (name == "strip") return m([s](CallArgs& a) { return Value(py_strip(s, a.get(0, "chars"), true, true)); });
  if (name == "lstrip") return m([s](CallArgs& a) { return Value(py_strip(s, a.get(0, "chars"), true, false)); });
  if (name == "rstrip") return m([s](CallArgs& a) { return Value(py_strip(s, a.get(0, "chars"), false, true)); });
  if (name == "split")
    return m([s](CallArgs& a) { return Value::list(py_split(s, a.get(0, "sep"), a.get(1, "maxsplit", Value(-1)).as_int())); });
  if (name == "rsplit")
    return m([s](CallArgs& a) -> Value {
      const std::int64_t maxsplit = a.get(1, "maxsplit", Value(-1)).as_int();
      if (maxsplit < 0) return Value::list(py_split(s, a.get(0, "sep"), -1));
      const Value sep = a.get(0, "sep");
      if (!sep.is_string()) fail("rsplit with maxsplit needs a separator");
      std::vector<Value> parts;
      std::string rest = s;
      for (std::int64_t i = 0; i < maxsplit; ++i) {
        const std::size_t p = rest.rfind(sep.as_string());
        if (p == std::string::npos) break;
        parts.insert(parts.begin(), Value(rest.substr(p + sep.as_string().size())));
        rest.resize(p);
      }
      parts.insert(parts.begin(), Value(rest));
      return Value::list(std::move(parts));
    });
  if (name == "splitlines")
    return m([s](CallArgs&) -> Value {
      std::vector<Value> lines;
      std::size_t start = 0;
      for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\n' || s[i] == '\r') {
          lines.emplace_back(s.substr(start, i - start));
          if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
          start = i + 1;
        }
      }
      if (start < s.size()) lines.emplace_back(s.substr(start));
      return Value::list(std::move(lines));
    });
  if (name == "replace")
    return m([s](CallArgs& a) -> Value {
      const Value o = a.get(0, "old"), n = a.get(1, "new");
      if (!o.is_string() || !n.is_string()) fail("replace() arguments must be str");
      return Value(py_replace(s, o.as_string(), n.as_string(), a.get(2, "count", Value(-1)).as_int()));
    });
  if (name == "format") return m([s](CallArgs& a) { return Value(brace_format(s, a)); });
  if (name == "upper") return m([s](CallArgs&) { return Value(map_case(s, true)); });
  if (name == "lower") return m([s](CallArgs&) { return Value(map_case(s, false)); });
  if (name == "title") return m([s](CallArgs&) { return Value(py_title(s)); });
  if (name == "capitalize") return m([s](CallArgs&) { return Value(py_capitalize(s)); });
  if (name == "find" || name == "rfind" || name == "index" || name == "count") {
    return m([s, name](CallArgs& a) -> Value {
      const Value sub = a.get(0, "sub");
      if (!sub.is_string()) fail("must be str, not " + sub.type_name());
      const std::string& t = sub.as_string();
      if (name == "count") {
        if (t.empty()) return Value(static_cast<std::int64_t>(utf8::length(s) + 1));
        std::int64_t n = 0;
        for (std::size_t p = s.find(t); p != std::string::npos; p = s.find(t, p + t.size())) ++n;
        return Value(n);
      }
      const std::size_t p = name == "rfind" ? s.rfind(t) : s.find(t);
      if (p == std::string::npos) {
        if (name == "index") fail("substring not found");
        return Value(-1);
      }
      return Value(static_cast<std::int64_t>(utf8::length(std::string_view(s).substr(0, p))));
    });
  }
  if (name == "join")
    return m([s](CallArgs& a) -> Value {
      std::string out;
      bool first = true;
      for (const Value& v : iterate(a.get(0, "iterable"))) {
        if (!v.is_string()) fail("sequence item: expected str instance, " + v.type_name() + " found");
        if (!first) out += s;
        out += v.as_string();
        first = false;
      }
      return Value(out);
    });
  if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" || name == "isupper" ||
      name == "islower") {
    return m([s, name](CallArgs&) -> Value {
      if (s.empty()) return Value(false);
      const auto cps = to_cps(s);
      bool any_cased = false;
      for (char32_t c : cps) {
        if (name == "isdigit" && !(c >= '0' && c <= '9') && !utf8::is_alnum(c)) return Value(false);
        if (name == "isdigit" && !(c >= '0' && c <= '9') && utf8::to_upper(c) != utf8::to_lower(c)) return Value(false);
        if (name == "isalpha" && (!utf8::is_alnum(c) || (c >= '0' && c <= '9'))) return Value(false);
        if (name == "isalnum" && !utf8::is_alnum(c)) return Value(false);
        if (name == "isspace" && !utf8::is_py_space(c)) return Value(false);
        if (name == "isupper" || name == "islower") {
          if (is_cased_letter(c)) {
            any_cased = true;
            if (name == "isupper" && utf8::to_upper(c) != c) return Value(false);
            if (name == "islower" && utf8::to_lower(c) != c) return Value(false);
          }
        }
      }
      if (name == "isupper" || name == "islower") return Value(any_cased);
      return Value(true);
    });
  }
  return Value::undefined("'str object' has no attribute '" + name + "'");
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

// ---- tests ----

using TestFn = std::function<bool(const Value&, CallArgs&)>;

const std::unordered_map<std::string, TestFn>& tests() {
  static const std::unordered_map<std::string, TestFn> t = [] {
    std::unordered_map<std::string, TestFn> m;
    m["defined"] = [](const Value& v, CallArgs&) { return !v.is_undefined(); };
    m["undefined"] = [](const Value& v, CallArgs&) { return v.is_undefined(); };
    m["none"] = [](const Value& v, CallArgs&) { return v.is_none(); };
    m["string"] = [](const Value& v, CallArgs&) { return v.is_string(); };
    m["number"] = [](const Value& v, CallArgs&) { return v.is_number(); };
    m["integer"] = [](const Value& v, CallArgs&) { return v.is_int(); };
    m["float"] = [](const Value& v, CallArgs&) { return v.is_float(); };
    m["boolean"] = [](const Value& v, CallArgs&) { return v.is_bool(); };
    m["true"] = [](const Value& v, CallArgs&) { return v.is_bool() && v.as_bool(); };
    m["false"] = [](const Value& v, CallArgs&) { return v.is_bool() && !v.as_bool(); };
    m["mapping"] = [](const Value& v, CallArgs&) { return v.is_dict() && !v.as_dict().is_namespace; };
    m["iterable"] = [](const Value& v, CallArgs&) {
      return v.is_string() || v.is_list() || v.is_undefined() || (v.is_dict() && !v.as_dict().is_namespace);
    };
    m["sequence"] = m["iterable"];
    m["callable"] = [](const Value& v, CallArgs&) { return v.is_callable(); };
    m["odd"] = [](const Value& v, CallArgs&) {
      if (!v.is_int()) fail("odd test needs an integer");
      return (v.as_int() % 2) != 0;
    };
    m["even"] = [](const Value& v, CallArgs&) {
      if (!v.is_int()) fail("even test needs an integer");
      return (v.as_int() % 2) == 0;
    };
    m["divisibleby"] = [](const Value& v, CallArgs& a) {
      const Value n = a.get(0, "num");
      if (!v.is_number() || !n.is_number() || n.as_int() == 0) fail("divisibleby needs non-zero integers");
      return v.as_int() % n.as_int() == 0;
    };
    m["eq"] = [](const Value& v, CallArgs& a) { return v.equals(a.get(0, "other")); };
    m["ne"] = [](const Value& v, CallArgs& a) { return !v.equals(a.get(0, "other")); };
    m["lt"] = [](const Value& v, CallArgs& a) { return compare_values(v, a.get(0, "other"), "<") < 0; };
    m["le"] = [](const Value& v, CallArgs& a) { return compare_values(v, a.get(0, "other"), "<=") <= 0; };
    m["gt"] = [](const Value& v, CallArgs& a) { return compare_values(v, a.get(0, "other"), ">") > 0; };
    m["ge"] = [](const Value& v, CallArgs& a) { return compare_values(v, a.get(0, "other"), ">=") >= 0; };
    m["equalto"] = m["eq"];
    m["=="] = m["eq"];
    m["!="] = m["ne"];
    m["<"] = m["lt"];
    m["<="] = m["le"];
    m[">"] = m["gt"];
    m[">="] = m["ge"];
    m["greaterthan"] = m["gt"];
    m["lessthan"] = m["lt"];
    m["in"] = [](const Value& v, CallArgs& a) { return contains(a.get(0, "seq"), v); };
    m["lower"] = [](const Value& v, CallArgs&) { return v.is_string() && map_case(v.as_string(), false) == v.as_string(); };
    m["upper"] = [](const Value& v, CallArgs&) { return v.is_string() && map_case(v.as_string(), true) == v.as_string(); };
    m["sameas"] = [](const Value& v, CallArgs& a) {
      const Value o = a.get(0, "other");
      if (v.type() != o.type()) return false;
      if (v.is_list()) return v.list_ptr() == o.list_ptr();
      if (v.is_dict()) return v.dict_ptr() == o.dict_ptr();
      return v.equals(o);
    };
    m["escaped"] = [](const Value&, CallArgs&) { return false; };
    return m;
  }();
  return t;
}

// ---- filters ----

using FilterFn = std::function<Value(const Value&, CallArgs&)>;
const std::unordered_map<std::string, FilterFn>& filters();

bool call_test(const std::string& name, const Value& v, CallArgs& args) {
  auto it = tests().find(name);
  if (it == tests().end()) fail("no test named '" + name + "'");
  return it->second(v, args);
}

Value attribute_path(const Value& v, const Value& attr) {
  if (attr.is_int()) return get_item(v, attr);
  if (!attr.is_string()) return v;
  Value cur = v;
  for (const Value& part : py_split(attr.as_string(), Value("."), -1)) {
    const std::string& p = part.as_string();
    const bool numeric = !p.empty() && std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; });
    cur = numeric ? get_item(cur, Value(parse_index(p))) : get_item(cur, Value(p));
  }
  return cur;
}

Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value(map_case(v.as_string(), false));
  return v;
}

std::vector<Value> sorted_values(std::vector<Value> items, bool reverse, bool case_sensitive, const Value& attribute) {
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    const Value ka = sort_key(attribute.is_undefined() || attribute.is_none() ? a : attribute_path(a, attribute), case_sensitive);
    const Value kb = sort_key(attribute.is_undefined() || attribute.is_none() ? b : attribute_path(b, attribute), case_sensitive);
    return reverse ? compare_values(kb, ka, "<") < 0 : compare_values(ka, kb, "<") < 0;
  });
  return items;
}

std::string json_ascii_escape(const std::string& s) {
  // json.dumps(ensure_ascii=True): non-ASCII characters become \uXXXX (surrogate pairs above U+FFFF).
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      out += s[i++];
      continue;
    }
    const char32_t cp = utf8::next(s, i);
    char buf[16];
    if (cp >= 0x10000) {
      const char32_t v = cp - 0x10000;
      std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)),
                    static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
    } else {
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
    }
    out += buf;
  }
  return out;
}

Value to_int(const Value& v, const Value& dflt, int base) {
  if (v.is_int() || v.is_bool()) return Value(v.as_int());
  if (v.is_float()) return Value(static_cast<std::int64_t>(v.as_double()));
  if (v.is_string()) {
    const std::string s = py_strip(v.as_string(), Value(), true, true);
    try {
      std::size_t used = 0;
      const std::int64_t r = std::stoll(s, &used, base);
      if (used == s.size()) return Value(r);
    } catch (const std::exception&) {
    }
    try {
      std::size_t used = 0;
      const double d = std::stod(s, &used);
      if (used == s.size()) return Value(static_cast<std::int64_t>(d));
    } catch (const std::exception&) {
    }
  }
  return dflt;
}

const std::unordered_map<std::string, FilterFn>& filters() {
  static const std::unordered_map<std::string, FilterFn> f = [] {
    std::unordered_map<std::string, FilterFn> m;
    m["tojson"] = [](const Value& v, CallArgs& a) {
      const Value ensure_ascii = a.get(0, "ensure_ascii", Value(false));
      const Value indent = a.get(1, "indent", Value::none());
      const Value separators = a.get(2, "separators", Value::none());
      const Value sort_keys = a.get(3, "sort_keys", Value(false));
      std::string item_sep, key_sep;
      if (separators.is_list() && separators.as_list().items.size() == 2) {
        item_sep = separators.as_list().items[0].str();
        key_sep = separators.as_list().items[1].str();
      }
      int ind = -1;
      if (indent.is_int()) ind = static_cast<int>(indent.as_int());
      std::string out = v.to_json(ind, sort_keys.truthy(), item_sep, key_sep);
      if (ensure_ascii.truthy()) out = json_ascii_escape(out);
      return Value(out);
    };
    m["length"] = [](const Value& v, CallArgs&) { return Value(py_len(v)); };
    m["count"] = m["length"];
    m["string"] = [](const Value& v, CallArgs&) { return Value(v.str()); };
    m["trim"] = [](const Value& v, CallArgs& a) { return Value(py_strip(v.str(), a.get(0, "chars"), true, true)); };
    m["upper"] = [](const Value& v, CallArgs&) { return Value(map_case(v.str(), true)); };
    m["lower"] = [](const Value& v, CallArgs&) { return Value(map_case(v.str(), false)); };
    m["capitalize"] = [](const Value& v, CallArgs&) { return Value(py_capitalize(v.str())); };
    m["title"] = [](const Value& v, CallArgs&) {
      // Jinja: words split at runs of [-\s({[<]; each word: first char upper, rest lower.
      const auto cps = to_cps(v.str());
      std::string out;
      bool word_start = true;
      for (char32_t c : cps) {
        const bool sep = c == '-' || utf8::is_py_space(c) || c == '(' || c == '{' || c == '[' || c == '<';
        if (sep) {
          utf8::append(out, c);
          word_start = true;
        } else {
          utf8::append(out, word_start ? utf8::to_upper(c) : utf8::to_lower(c));
          word_start = false;
        }
      }
      return Value(out);
    };
    m["items"] = [](const Value& v, CallArgs&) -> Value {
      if (v.is_undefined()) return Value::list();
      if (!v.is_dict() || v.as_dict().is_namespace) fail("Can only get item pairs from a mapping.");
      std::vector<Value> out;
      for (const auto& kv : v.as_dict().items) out.push_back(Value::list({Value(kv.first), kv.second}, true));
      return Value::list(std::move(out));
    };
    m["first"] = [](const Value& v, CallArgs&) -> Value {
      auto items = iterate(v);
      return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
    };
    m["last"] = [](const Value& v, CallArgs&) -> Value {
      auto items = iterate(v);
      return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
    };
    m["join"] = [](const Value& v, CallArgs& a) {
      const Value sep = a.get(0, "d", Value(""));
      const Value attr = a.get(1, "attribute");
      std::string out;
      bool first = true;
      for (const Value& item : iterate(v)) {
        if (!first) out += sep.str();
        out += (attr.is_undefined() || attr.is_none() ? item : attribute_path(item, attr)).str();
        first = false;
      }
      return Value(out);
    };
    m["default"] = [](const Value& v, CallArgs& a) {
      const bool boolean = a.get(1, "boolean", Value(false)).truthy();
      if (v.is_undefined() || (boolean && !v.truthy())) return a.get(0, "default_value", Value(""));
      return v;
    };
    m["d"] = m["default"];
    m["list"] = [](const Value& v, CallArgs&) { return Value::list(iterate(v)); };
    m["reverse"] = [](const Value& v, CallArgs&) -> Value {
      if (v.is_string()) {
        auto cps = to_cps(v.as_string());
        std::reverse(cps.begin(), cps.end());
        return Value(from_cps(cps, 0, cps.size()));
      }
      auto items = iterate(v);
      std::reverse(items.begin(), items.end());
      return Value::list(std::move(items));
    };
    m["replace"] = [](const Value& v, CallArgs& a) -> Value {
      const Value o = a.get(0, "old"), n = a.get(1, "new"), c = a.get(2, "count", Value::none());
      return Value(py_replace(v.str(), o.str(), n.str(), c.is_none() ? -1 : c.as_int()));
    };
    m["int"] = [](const Value& v, CallArgs& a) {
      return to_int(v, a.get(0, "default", Value(0)), static_cast<int>(a.get(1, "base", Value(10)).as_int()));
    };
    m["float"] = [](const Value& v, CallArgs& a) -> Value {
      if (v.is_number()) return Value(v.as_double());
      if (v.is_string()) {
        try {
          std::size_t used = 0;
          const std::string s = py_strip(v.as_string(), Value(), true, true);
          const double d = std::stod(s, &used);
          if (used == s.size()) return Value(d);
        } catch (const std::exception&) {
        }
      }
      return a.get(0, "default", Value(0.0));
    };
    m["abs"] = [](const Value& v, CallArgs&) -> Value {
      if (v.is_float()) return Value(std::fabs(v.as_double()));
      if (v.is_number()) {
        if (v.as_int() == INT64_MIN) fail("integer overflow (template integers are 64-bit)");
        return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
      }
      fail("bad operand type for abs(): '" + v.type_name() + "'");
    };
    m["round"] = [](const Value& v, CallArgs& a) -> Value {
      if (!v.is_number()) fail("round needs a number");
      const std::int64_t precision = a.get(0, "precision", Value(0)).as_int();
      const std::string method = a.get(1, "method", Value("common")).str();
      const double x = v.as_double();
      if (method == "ceil" || method == "floor") {
        const double scale = std::pow(10.0, static_cast<double>(precision));
        return Value((method == "ceil" ? std::ceil(x * scale) : std::floor(x * scale)) / scale);
      }
      // Python round(): the exact binary value rounded half-to-even at `precision` decimals, which is
      // what glibc's correctly rounded %.*f does.
      if (precision < 0 || precision > 300 || !std::isfinite(x)) return Value(x);
      char buf[512];
      std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(precision), x);
      return Value(std::strtod(buf, nullptr));
    };
    m["sort"] = [](const Value& v, CallArgs& a) {
      return Value::list(sorted_values(iterate(v), a.get(0, "reverse", Value(false)).truthy(),
                                       a.get(1, "case_sensitive", Value(false)).truthy(), a.get(2, "attribute")));
    };
    m["dictsort"] = [](const Value& v, CallArgs& a) -> Value {
      if (!v.is_dict()) fail("dictsort needs a mapping");
      const bool cs = a.get(0, "case_sensitive", Value(false)).truthy();
      const bool by_value = a.get(1, "by", Value("key")).str() == "value";
      const bool reverse = a.get(2, "reverse", Value(false)).truthy();
      std::vector<Value> pairs;
      for (const auto& kv : v.as_dict().items) pairs.push_back(Value::list({Value(kv.first), kv.second}, true));
      return Value::list(sorted_values(pairs, reverse, cs, Value(static_cast<std::int64_t>(by_value ? 1 : 0))));
    };
    m["unique"] = [](const Value& v, CallArgs& a) {
      const bool cs = a.get(0, "case_sensitive", Value(false)).truthy();
      const Value attr = a.get(1, "attribute");
      std::vector<Value> out, seen;
      for (const Value& item : iterate(v)) {
        const Value key = sort_key(attr.is_undefined() || attr.is_none() ? item : attribute_path(item, attr), cs);
        if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return s.equals(key); })) continue;
        seen.push_back(key);
        out.push_back(item);
      }
      return Value::list(std::move(out));
    };
    m["min"] = [](const Value& v, CallArgs& a) -> Value {
      auto items = sorted_values(iterate(v), false, a.get(0, "case_sensitive", Value(false)).truthy(), a.get(1, "attribute"));
      return items.empty() ? Value::undefined("No aggregated item, sequence was empty.") : items.front();
    };
    m["max"] = [](const Value& v, CallArgs& a) -> Value {
      auto items = sorted_values(iterate(v), false, a.get(0, "case_sensitive", Value(false)).truthy(), a.get(1, "attribute"));
      return items.empty() ? Value::undefined("No aggregated item, sequence was empty.") : items.back();
    };
    m["sum"] = [](const Value& v, CallArgs& a) {
      const Value attr = a.get(0, "attribute");
      Value total = a.get(1, "start", Value(0));
      for (const Value& item : iterate(v))
        total = arith("+", total, attr.is_undefined() || attr.is_none() ? item : attribute_path(item, attr));
      return total;
    };
    m["indent"] = [](const Value& v, CallArgs& a) {
      const Value w = a.get(0, "width", Value(4));
      if (w.is_number() && w.as_int() > 10'000) fail("indent width too large");
      const std::string pad = w.is_string() ? w.as_string() : std::string(static_cast<std::size_t>(std::max<std::int64_t>(0, w.as_int())), ' ');
      const bool first = a.get(1, "first", Value(false)).truthy();
      const bool blank = a.get(2, "blank", Value(false)).truthy();
      const std::string s = v.str();
      std::string out;
      std::size_t start = 0;
      bool first_line = true;
      while (true) {
        const std::size_t nl = s.find('\n', start);
        const std::string line = s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
        if (!first_line) out += '\n';
        if ((first_line ? first : true) && (blank || !py_strip(line, Value(), true, true).empty())) out += pad;
        out += line;
        first_line = false;
        if (nl == std::string::npos) break;
        start = nl + 1;
      }
      return Value(out);
    };
    // map(attribute=...) / map('filter', args...), select/reject('test', args...), selectattr/rejectattr.
    m["map"] = [](const Value& v, CallArgs& a) {
      std::vector<Value> out;
      const Value attr = a.get(99, "attribute");
      if (!attr.is_undefined()) {
        const Value dflt = a.get(99, "default");
        for (const Value& item : iterate(v)) {
          Value x = attribute_path(item, attr);
          out.push_back(x.is_undefined() && !dflt.is_undefined() ? dflt : x);
        }
        return Value::list(std::move(out));
      }
      if (a.args.empty() || !a.args[0].is_string()) fail("map needs a filter name or attribute=");
      auto it = filters().find(a.args[0].as_string());
      if (it == filters().end()) fail("no filter named '" + a.args[0].as_string() + "'");
      CallArgs rest;
      rest.args.assign(a.args.begin() + 1, a.args.end());
      rest.kwargs = a.kwargs;
      for (const Value& item : iterate(v)) out.push_back(it->second(item, rest));
      return Value::list(std::move(out));
    };
    auto select_like = [](bool attr_mode, bool keep_if) {
      return [attr_mode, keep_if](const Value& v, CallArgs& a) {
        std::size_t k = 0;
        Value attr;
        if (attr_mode) {
          if (a.args.empty()) fail("selectattr/rejectattr need an attribute name");
          attr = a.args[k++];
        }
        std::string test;
        if (k < a.args.size()) test = a.args[k++].str();
        CallArgs rest;
        rest.args.assign(a.args.begin() + static_cast<std::ptrdiff_t>(std::min(k, a.args.size())), a.args.end());
        std::vector<Value> out;
        for (const Value& item : iterate(v)) {
          const Value x = attr_mode ? attribute_path(item, attr) : item;
          const bool r = test.empty() ? x.truthy() : call_test(test, x, rest);
          if (r == keep_if) out.push_back(item);
        }
        return Value::list(std::move(out));
      };
    };
    m["select"] = select_like(false, true);
    m["reject"] = select_like(false, false);
    m["selectattr"] = select_like(true, true);
    m["rejectattr"] = select_like(true, false);
    m["safe"] = [](const Value& v, CallArgs&) { return v; };
    m["escape"] = [](const Value& v, CallArgs&) { return Value(html_escape(v.str())); };
    m["e"] = m["escape"];
    m["wordcount"] = [](const Value& v, CallArgs&) {
      return Value(static_cast<std::int64_t>(py_split(v.str(), Value(), -1).size()));
    };
    return m;
  }();
  return f;
}

}  // namespace

// ---- renderer -------------------------------------------------------------------------------------

struct Template::Impl {
  std::string name;
  Body body;
};

namespace {

class Renderer {
 public:
  Renderer(const Template::Impl& t, const std::map<std::string, Value>& vars) : tmpl_(t) {
    frames_.emplace_back();
    auto& g = frames_.back();
    g["raise_exception"] = Value::function("raise_exception", [](CallArgs& a) -> Value {
      fail("template raised an exception: " + a.get(0, "message").str());
    });
    g["namespace"] = Value::function("namespace", [](CallArgs& a) {
      Value ns = Value::dict();
      ns.as_dict().is_namespace = true;
      for (const Value& p : a.args) {
        if (!p.is_dict()) fail("namespace() positional arguments must be mappings");
        for (const auto& kv : p.as_dict().items) ns.as_dict().set(kv.first, kv.second);
      }
      for (const auto& kv : a.kwargs) ns.as_dict().set(kv.first, kv.second);
      return ns;
    });
    g["dict"] = Value::function("dict", [](CallArgs& a) {
      Value d = Value::dict();
      for (const Value& p : a.args) {
        if (!p.is_dict()) fail("dict() positional arguments must be mappings");
        for (const auto& kv : p.as_dict().items) d.as_dict().set(kv.first, kv.second);
      }
      for (const auto& kv : a.kwargs) d.as_dict().set(kv.first, kv.second);
      return d;
    });
    g["range"] = Value::function("range", [](CallArgs& a) -> Value {
      std::int64_t start = 0, stop = 0, step = 1;
      for (const Value& v : a.args)
        if (!v.is_int() && !v.is_bool()) fail("'" + v.type_name() + "' object cannot be interpreted as an integer");
      if (a.args.size() == 1) {
        stop = a.args[0].as_int();
      } else if (a.args.size() >= 2) {
        start = a.args[0].as_int();
        stop = a.args[1].as_int();
        if (a.args.size() >= 3) step = a.args[2].as_int();
      } else {
        fail("range expected at least 1 argument, got 0");
      }
      if (step == 0) fail("range() arg 3 must not be zero");
      std::vector<Value> out;
      for (std::int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        if (static_cast<std::int64_t>(out.size()) >= kMaxRange) fail("range too big");
        out.emplace_back(i);
      }
      return Value::list(std::move(out));
    });
    g["strftime_now"] = Value::function("strftime_now", [](CallArgs& a) {
      const std::time_t now = std::time(nullptr);
      std::tm tm{};
      localtime_r(&now, &tm);
      char buf[256];
      const std::size_t n = std::strftime(buf, sizeof buf, a.get(0, "format").str().c_str(), &tm);
      return Value(std::string(buf, n));
    });
    for (const auto& [k, v] : vars) g[k] = v;
  }

  std::string run() {
    std::string out;
    exec(tmpl_.body, out);
    return out;
  }

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  Value lookup(const std::string& name) const {
    for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return Value::undefined(undefined_name_hint(name));
  }

  [[noreturn]] static void relocate(const RuntimeFailure& f, int line, int col) { throw LocatedFailure{f.message, line, col}; }

  void emit(std::string& out, const std::string& s) {
    if (out.size() + s.size() > kMaxOutputBytes) fail("rendered output exceeds 64 MiB");
    out += s;
  }

  Flow exec(const Body& body, std::string& out) {
    for (const Stmt& s : body) {
      try {
        const Flow f = exec_one(s, out);
        if (f != Flow::kNormal) return f;
      } catch (const RuntimeFailure& f) {
        relocate(f, s.line, s.col);
      }
    }
    return Flow::kNormal;
  }

  void assign(const Stmt& s, Value v) {
    auto& frame = frames_.back();
    if (s.attr_target) {
      const Value ns = lookup(s.targets[0]);
      if (!ns.is_dict() || !ns.as_dict().is_namespace)
        fail("cannot assign attribute on non-namespace object '" + s.targets[0] + "'");
      ns.as_dict().set(s.targets[1], std::move(v));
      return;
    }
    if (!s.tuple_target) {
      frame[s.targets[0]] = std::move(v);
      return;
    }
    const auto items = iterate(v);
    if (items.size() != s.targets.size())
      fail(items.size() > s.targets.size() ? "too many values to unpack (expected " + std::to_string(s.targets.size()) + ")"
                                           : "not enough values to unpack (expected " + std::to_string(s.targets.size()) +
                                                 ", got " + std::to_string(items.size()) + ")");
    for (std::size_t i = 0; i < items.size(); ++i) frame[s.targets[i]] = items[i];
  }

  Flow exec_one(const Stmt& s, std::string& out) {
    switch (s.kind) {
      case Stmt::kText: emit(out, s.text); return Flow::kNormal;
      case Stmt::kOutput: emit(out, eval(*s.expr).str()); return Flow::kNormal;
      case Stmt::kIf:
        for (const auto& [cond, body] : s.branches)
          if (eval(*cond).truthy()) return exec(body, out);
        return exec(s.else_body, out);
      case Stmt::kSet: assign(s, eval(*s.expr)); return Flow::kNormal;
      case Stmt::kSetBlock: {
        std::string captured;
        exec(s.body, captured);
        assign(s, Value(std::move(captured)));
        return Flow::kNormal;
      }
      case Stmt::kFor: return exec_for(s, out);
      case Stmt::kMacro: define_macro(s); return Flow::kNormal;
      case Stmt::kBreak: return Flow::kBreak;
      case Stmt::kContinue: return Flow::kContinue;
      case Stmt::kScope: return exec(s.body, out);
    }
    return Flow::kNormal;
  }

  void bind_target(const Stmt& s, const Value& item) {
    auto& frame = frames_.back();
    if (!s.tuple_target) {
      frame[s.targets[0]] = item;
      return;
    }
    const auto parts = iterate(item);
    if (parts.size() != s.targets.size())
      fail(parts.size() > s.targets.size() ? "too many values to unpack (expected " + std::to_string(s.targets.size()) + ")"
                                           : "not enough values to unpack (expected " + std::to_string(s.targets.size()) +
                                                 ", got " + std::to_string(parts.size()) + ")");
    for (std::size_t i = 0; i < parts.size(); ++i) frame[s.targets[i]] = parts[i];
  }

  Flow exec_for(const Stmt& s, std::string& out) {
    const Value seq = eval(*s.expr);
    if (seq.is_none() || seq.is_number() || seq.is_callable()) fail("'" + seq.type_name() + "' object is not iterable");
    std::vector<Value> items = iterate(seq);
    frames_.emplace_back();
    struct Pop {
      std::vector<std::map<std::string, Value>>& f;
      ~Pop() { f.pop_back(); }
    } pop{frames_};
    if (s.cond) {
      std::vector<Value> kept;
      for (const Value& item : items) {
        bind_target(s, item);
        if (eval(*s.cond).truthy()) kept.push_back(item);
      }
      items = std::move(kept);
    }
    frames_.back().clear();
    const Value loop = make_loop();
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (++iterations_ > kMaxLoopIterations) fail("template loops exceed 1 million iterations");
      // Jinja: names set in the body do not carry over to the next iteration.
      frames_.back().clear();
      bind_target(s, items[i]);
      update_loop(loop.as_dict(), i, items);
      frames_.back()["loop"] = loop;
      const Flow f = exec(s.body, out);
      if (f == Flow::kBreak) break;
    }
    if (items.empty()) exec(s.else_body, out);
    return Flow::kNormal;
  }

  void define_macro(const Stmt& s) {
    const Stmt* macro = &s;
    Renderer* self = this;
    // Closure: the enclosing (non-top-level) scopes as they are now; top-level names are read at call time.
    auto closure = std::make_shared<std::vector<std::map<std::string, Value>>>(frames_.begin() + 1, frames_.end());
    frames_.back()[s.name] = Value::function(s.name, [macro, self, closure](CallArgs& a) -> Value {
      if (self->depth_ >= kMaxCallDepth) fail("maximum macro recursion depth exceeded");
      std::map<std::string, Value> locals;
      if (a.args.size() > macro->params.size())
        fail("macro '" + macro->name + "' takes not more than " + std::to_string(macro->params.size()) + " argument(s)");
      for (std::size_t i = 0; i < macro->params.size(); ++i) {
        const std::string& p = macro->params[i];
        if (i < a.args.size()) {
          locals[p] = a.args[i];
          continue;
        }
        bool found = false;
        for (const auto& kv : a.kwargs) {
          if (kv.first == p) {
            locals[p] = kv.second;
            found = true;
          }
        }
        if (!found)
          locals[p] = macro->defaults[i] ? self->eval(*macro->defaults[i])
                                         : Value::undefined("parameter '" + p + "' was not provided");
      }
      for (const auto& kv : a.kwargs)
        if (std::find(macro->params.begin(), macro->params.end(), kv.first) == macro->params.end())
          fail("macro '" + macro->name + "' takes no keyword argument '" + kv.first + "'");
      // Macros see the template's top-level names and their own arguments.
      std::vector<std::map<std::string, Value>> saved;
      saved.swap(self->frames_);
      self->frames_.push_back(saved.front());
      for (const auto& f : *closure) self->frames_.push_back(f);
      self->frames_.push_back(std::move(locals));
      ++self->depth_;
      std::string out;
      try {
        self->exec(macro->body, out);
      } catch (...) {
        --self->depth_;
        self->frames_.swap(saved);
        throw;
      }
      --self->depth_;
      // Top-level names defined inside the macro do not leak; restore the caller's frames.
      self->frames_.swap(saved);
      return Value(out);
    });
  }

  CallArgs eval_args(const Expr& e, std::size_t first_child) {
    CallArgs a;
    for (std::size_t i = first_child; i < e.children.size(); ++i) a.args.push_back(eval(*e.children[i]));
    for (const auto& kv : e.kwargs) a.kwargs.emplace_back(kv.first, eval(*kv.second));
    return a;
  }

  Value eval(const Expr& e) {
    try {
      return eval_inner(e);
    } catch (const RuntimeFailure& f) {
      relocate(f, e.line, e.col);
    }
  }

  Value eval_inner(const Expr& e) {
    switch (e.kind) {
      case Expr::kLiteral: return e.value;
      case Expr::kName: return lookup(e.name);
      case Expr::kAttr: return get_attr(eval(*e.children[0]), e.name);
      case Expr::kItem: return get_item(eval(*e.children[0]), eval(*e.children[1]));
      case Expr::kSlice: {
        const Value obj = eval(*e.children[0]);
        auto opt = [&](std::size_t i) { return e.children[i] ? eval(*e.children[i]) : Value::none(); };
        return slice(obj, opt(1), opt(2), opt(3));
      }
      case Expr::kCall: {
        const Value callee = eval(*e.children[0]);
        CallArgs a = eval_args(e, 1);
        if (callee.is_undefined()) undefined_error(callee);
        if (!callee.is_callable()) fail("'" + callee.type_name() + "' object is not callable");
        return callee.as_callable().fn(a);
      }
      case Expr::kFilter: {
        const Value v = eval(*e.children[0]);
        CallArgs a = eval_args(e, 1);
        auto it = filters().find(e.name);
        if (it == filters().end()) fail("no filter named '" + e.name + "'");
        return it->second(v, a);
      }
      case Expr::kTest: {
        const Value v = eval(*e.children[0]);
        CallArgs a = eval_args(e, 1);
        const bool r = call_test(e.name, v, a);
        return Value(e.negated ? !r : r);
      }
      case Expr::kNot: return Value(!eval(*e.children[0]).truthy());
      case Expr::kNeg:
      case Expr::kPos: {
        const Value v = eval(*e.children[0]);
        if (v.is_undefined()) undefined_error(v);
        if (!v.is_number()) fail("bad operand type for unary " + std::string(e.kind == Expr::kNeg ? "-" : "+") + ": '" + v.type_name() + "'");
        if (e.kind == Expr::kPos) return v.is_float() ? v : Value(v.as_int());
        if (!v.is_float() && v.as_int() == INT64_MIN) fail("integer overflow (template integers are 64-bit)");
        return v.is_float() ? Value(-v.as_double()) : Value(-v.as_int());
      }
      case Expr::kAnd: {
        Value l = eval(*e.children[0]);
        return l.truthy() ? eval(*e.children[1]) : l;
      }
      case Expr::kOr: {
        Value l = eval(*e.children[0]);
        return l.truthy() ? l : eval(*e.children[1]);
      }
      case Expr::kBinary: {
        const Value l = eval(*e.children[0]);
        const Value r = eval(*e.children[1]);
        if (e.name == "~") return Value(l.str() + r.str());
        return arith(e.name, l, r);
      }
      case Expr::kCompare: {
        Value left = eval(*e.children[0]);
        for (std::size_t i = 0; i < e.ops.size(); ++i) {
          Value right = eval(*e.children[i + 1]);
          const std::string& op = e.ops[i];
          bool r;
          if (op == "==")
            r = left.equals(right);
          else if (op == "!=")
            r = !left.equals(right);
          else if (op == "in")
            r = contains(right, left);
          else if (op == "notin")
            r = !contains(right, left);
          else {
            const int c = compare_values(left, right, op.c_str());
            r = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
          }
          if (!r) return Value(false);
          left = std::move(right);
        }
        return Value(true);
      }
      case Expr::kCond: {
        if (eval(*e.children[0]).truthy()) return eval(*e.children[1]);
        if (e.children[2]) return eval(*e.children[2]);
        return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                                " evaluated to false and no else section was defined.");
      }
      case Expr::kList:
      case Expr::kTuple: {
        std::vector<Value> items;
        for (const auto& c : e.children) items.push_back(eval(*c));
        return Value::list(std::move(items), e.kind == Expr::kTuple);
      }
      case Expr::kDict: {
        Value d = Value::dict();
        for (std::size_t i = 0; i + 1 < e.children.size(); i += 2) {
          const Value k = eval(*e.children[i]);
          if (!k.is_string()) fail("only string keys are supported in dict literals, got " + k.type_name());
          d.as_dict().set(k.as_string(), eval(*e.children[i + 1]));
        }
        return d;
      }
    }
    return Value();
  }

  const Template::Impl& tmpl_;
  std::vector<std::map<std::string, Value>> frames_;
  int depth_ = 0;
  std::int64_t iterations_ = 0;
};

// Rejects unknown filters and tests at parse time, as Jinja's compiler does.
void check_names(const Expr* e, const std::string& name) {
  if (!e) return;
  if (e->kind == Expr::kFilter && !filters().count(e->name))
    throw TemplateError({name + ":" + std::to_string(e->line) + ":" + std::to_string(e->col),
                         "template syntax error: no filter named '" + e->name + "'", "", "",
                         "vlq's Jinja subset lacks this filter; see src/model/jinja_eval.cpp"},
                        e->line, e->col);
  if (e->kind == Expr::kTest && !tests().count(e->name))
    throw TemplateError({name + ":" + std::to_string(e->line) + ":" + std::to_string(e->col),
                         "template syntax error: no test named '" + e->name + "'", "", "",
                         "vlq's Jinja subset lacks this test; see src/model/jinja_eval.cpp"},
                        e->line, e->col);
  for (const auto& c : e->children) check_names(c.get(), name);
  for (const auto& kv : e->kwargs) check_names(kv.second.get(), name);
}

void check_names(const Body& body, const std::string& name) {
  for (const Stmt& s : body) {
    check_names(s.expr.get(), name);
    check_names(s.cond.get(), name);
    for (const auto& [c, b] : s.branches) {
      check_names(c.get(), name);
      check_names(b, name);
    }
    for (const auto& d : s.defaults) check_names(d.get(), name);
    check_names(s.body, name);
    check_names(s.else_body, name);
  }
}

}  // namespace

Template::Template(std::string_view source, std::string name) : impl_(std::make_unique<Impl>()) {
  impl_->name = std::move(name);
  impl_->body = parse_template(source, impl_->name);
  check_names(impl_->body, impl_->name);
}

Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

const std::string& Template::name() const { return impl_->name; }

std::string Template::render(const std::map<std::string, Value>& vars) const {
  try {
    Renderer r(*impl_, vars);
    return r.run();
  } catch (const LocatedFailure& f) {
    throw TemplateError({impl_->name + ":" + std::to_string(f.line) + ":" + std::to_string(f.col),
                         "chat template error: " + f.message, "", "",
                         "check the messages passed to the template, or the template itself"},
                        f.line, f.col);
  } catch (const RuntimeFailure& f) {
    throw TemplateError({impl_->name, "chat template error: " + f.message, "", "", ""}, 0, 0);
  } catch (const std::logic_error& e) {  // e.g. std::out_of_range from a library call: report, don't crash
    throw TemplateError({impl_->name, std::string("chat template error: ") + e.what(), "", "", ""}, 0, 0);
  }
}

}  // namespace vlq::text::jinja
