// Jinja filters available to chat templates (`tojson`, `join`, `map`, `selectattr`, `trim`, ...), with
// Python / Jinja semantics (see jinja_builtins.h).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <unordered_map>

#include "text/jinja_builtins.h"
#include "vlq/text/utf8.h"

namespace vlq::text::jinja::detail {

namespace {

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

// String filters: tojson, string, trim, upper/lower/capitalize/title, replace, indent, safe/escape, wordcount.
void add_text_filters(std::unordered_map<std::string, FilterFn>& m) {
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
  m["replace"] = [](const Value& v, CallArgs& a) -> Value {
    const Value o = a.get(0, "old"), n = a.get(1, "new"), c = a.get(2, "count", Value::none());
    return Value(py_replace(v.str(), o.str(), n.str(), c.is_none() ? -1 : c.as_int()));
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
  m["safe"] = [](const Value& v, CallArgs&) { return v; };
  m["escape"] = [](const Value& v, CallArgs&) { return Value(html_escape(v.str())); };
  m["e"] = m["escape"];
  m["wordcount"] = [](const Value& v, CallArgs&) {
    return Value(static_cast<std::int64_t>(py_split(v.str(), Value(), -1).size()));
  };
}

// Number filters: int, float, abs, round.
void add_number_filters(std::unordered_map<std::string, FilterFn>& m) {
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
}

// Sequence / mapping filters: length, items, first/last, join, default, list, reverse, sort, dictsort,
// unique.
void add_sequence_filters(std::unordered_map<std::string, FilterFn>& m) {
  m["length"] = [](const Value& v, CallArgs&) { return Value(py_len(v)); };
  m["count"] = m["length"];
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
}

// Reducing and higher-order filters: min/max/sum, map, select/reject(attr).
void add_functional_filters(std::unordered_map<std::string, FilterFn>& m) {
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
}

}  // namespace

const std::unordered_map<std::string, FilterFn>& filters() {
  static const std::unordered_map<std::string, FilterFn> f = [] {
    std::unordered_map<std::string, FilterFn> m;
    add_text_filters(m);
    add_number_filters(m);
    add_sequence_filters(m);
    add_functional_filters(m);
    return m;
  }();
  return f;
}

}  // namespace vlq::text::jinja::detail
