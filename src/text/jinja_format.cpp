// Jinja string support with Python semantics: code-point helpers (strip/split/replace/case), printf-style
// `%` and str.format formatting, HTML escaping, and the str methods templates call (see jinja_builtins.h).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "text/jinja_builtins.h"
#include "vlq/text/utf8.h"

namespace vlq::text::jinja::detail {

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

namespace {

// str methods startswith/endswith, strip/lstrip/rstrip, split/rsplit/splitlines, replace, format,
// upper/lower/title/capitalize; undefined when `name` is not one of them.
Value str_edit_method(const std::string& s, const std::string& name) {
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
  return Value();
}

// str methods find/rfind/index/count and join; undefined when `name` is not one of them.
Value str_search_method(const std::string& s, const std::string& name) {
  auto m = [&](Function fn) { return Value::function(name, std::move(fn)); };
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
  return Value();
}

// str methods isdigit/isalpha/isalnum/isspace/isupper/islower; undefined when `name` is not one of them.
Value str_predicate_method(const std::string& s, const std::string& name) {
  auto m = [&](Function fn) { return Value::function(name, std::move(fn)); };
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
  return Value();
}

}  // namespace

Value string_method(const std::string& s, const std::string& name) {
  for (auto* method : {&str_edit_method, &str_search_method, &str_predicate_method})
    if (Value v = method(s, name); !v.is_undefined()) return v;
  return Value::undefined("'str object' has no attribute '" + name + "'");
}
}  // namespace vlq::text::jinja::detail
