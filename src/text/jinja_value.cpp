// Python-like values for the Jinja interpreter (see jinja.h): str()/repr(), ==, float repr, json.dumps.
#include <utf8proc.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "text/jinja.h"
#include "vlq/text/utf8.h"

namespace vlq::text::jinja {

namespace {
struct Recorded {
  std::vector<std::weak_ptr<List>> lists;
  std::vector<std::weak_ptr<Dict>> dicts;
  std::vector<std::weak_ptr<Callable>> calls;
};
thread_local Recorded* t_collector = nullptr;
}  // namespace

CycleCollector::CycleCollector() {
  if (!t_collector) {
    t_collector = new Recorded;
    outer_ = true;
  }
}

CycleCollector::~CycleCollector() {
  if (!outer_) return;
  Recorded* r = t_collector;
  t_collector = nullptr;  // nothing below records
  // Empty what is still alive: with its owners gone, only a cycle keeps it. Moved out first, so that the
  // destructors run after the container is already empty.
  for (auto& w : r->lists)
    if (auto l = w.lock()) std::vector<Value>().swap(l->items);
  for (auto& w : r->dicts)
    if (auto d = w.lock()) std::vector<std::pair<std::string, Value>>().swap(d->items);
  for (auto& w : r->calls)
    if (auto c = w.lock()) Function().swap(c->fn);
  delete r;
}

void CycleCollector::record(const std::shared_ptr<List>& l) {
  if (t_collector) t_collector->lists.push_back(l);
}
void CycleCollector::record(const std::shared_ptr<Dict>& d) {
  if (t_collector) t_collector->dicts.push_back(d);
}
void CycleCollector::record(const std::shared_ptr<Callable>& c) {
  if (t_collector) t_collector->calls.push_back(c);
}

Value Value::list(std::vector<Value> items, bool tuple) {
  auto l = std::make_shared<List>();
  l->items = std::move(items);
  l->tuple = tuple;
  CycleCollector::record(l);
  return Value(std::move(l));
}

Value Value::dict() {
  auto d = std::make_shared<Dict>();
  CycleCollector::record(d);
  return Value(std::move(d));
}

Value Value::function(std::string name, Function fn) {
  auto c = std::make_shared<Callable>();
  c->name = std::move(name);
  c->fn = std::move(fn);
  CycleCollector::record(c);
  return Value(std::move(c));
}

Value Value::from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return none();
    case nlohmann::ordered_json::value_t::boolean: return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value(j.get<std::int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const std::uint64_t u = j.get<std::uint64_t>();  // beyond int64: a float (integers are 64-bit here)
      return u > static_cast<std::uint64_t>(INT64_MAX) ? Value(static_cast<double>(u)) : Value(static_cast<std::int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json(e));
      return list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Value d = dict();
      for (auto it = j.begin(); it != j.end(); ++it) d.as_dict().items.emplace_back(it.key(), from_json(it.value()));
      return d;
    }
    default: return Value::undefined();
  }
}

bool Value::truthy() const {
  switch (type_) {
    case Type::kUndefined:
    case Type::kNone: return false;
    case Type::kBool: return b_;
    case Type::kInt: return i_ != 0;
    case Type::kFloat: return d_ != 0.0;
    case Type::kString: return !str_.empty();
    case Type::kList: return !list_->items.empty();
    case Type::kDict: return dict_->is_namespace || !dict_->items.empty();
    case Type::kCallable: return true;
  }
  return false;
}

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // e.g. "-1.2345e+17", shortest round trip
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const std::size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exp = std::stoi(sci.substr(e + 1));
  const int decpt = exp + 1;  // position of the decimal point relative to the digit string
  std::string out;
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out = "0." + std::string(static_cast<std::size_t>(-decpt), '0') + digits;
    } else if (static_cast<std::size_t>(decpt) >= digits.size()) {
      out = digits + std::string(static_cast<std::size_t>(decpt) - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, static_cast<std::size_t>(decpt)) + "." + digits.substr(static_cast<std::size_t>(decpt));
    }
  } else {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    out += eb;
  }
  return sign + out;
}

namespace {

// Deepest list/dict nesting printed or serialised; deeper (or circular, via namespaces) values fail.
constexpr int kMaxNesting = 200;
thread_local int repr_depth = 0;

bool py_printable(char32_t cp) {
  if (cp == ' ') return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS: return false;
    default: return true;
  }
}

std::string string_repr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  std::size_t i = 0;
  while (i < s.size()) {
    const char32_t cp = utf8::next(s, i);
    char buf[16];
    if (cp == '\\') {
      out += "\\\\";
    } else if (cp == static_cast<char32_t>(quote)) {
      out += '\\';
      out += quote;
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && !py_printable(cp))) {
      if (cp < 0x100)
        std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(cp));
      else if (cp < 0x10000)
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
      else
        std::snprintf(buf, sizeof buf, "\\U%08x", static_cast<unsigned>(cp));
      out += buf;
    } else {
      utf8::append(out, cp);
    }
  }
  out += quote;
  return out;
}

void json_string(const std::string& s, std::string& out) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void to_json_impl(const Value& v, int indent, int level, bool sort_keys, const std::string& item_sep,
                  const std::string& key_sep, std::string& out) {
  if (level > kMaxNesting) throw RuntimeFailure{"value nested too deeply for tojson (circular reference?)"};
  auto newline = [&](int lvl) {
    out += '\n';
    out.append(static_cast<std::size_t>(indent * lvl), ' ');
  };
  switch (v.type()) {
    case Value::Type::kNone: out += "null"; return;
    case Value::Type::kBool: out += v.as_bool() ? "true" : "false"; return;
    case Value::Type::kInt: out += std::to_string(v.as_int()); return;
    case Value::Type::kFloat: {
      const double d = v.as_double();
      if (std::isnan(d)) out += "NaN";
      else if (std::isinf(d)) out += d > 0 ? "Infinity" : "-Infinity";
      else out += float_repr(d);
      return;
    }
    case Value::Type::kString: json_string(v.as_string(), out); return;
    case Value::Type::kList: {
      const auto& items = v.as_list().items;
      if (items.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) out += item_sep;
        if (indent >= 0) newline(level + 1);
        to_json_impl(items[i], indent, level + 1, sort_keys, item_sep, key_sep, out);
      }
      if (indent >= 0) newline(level);
      out += ']';
      return;
    }
    case Value::Type::kDict: {
      if (v.as_dict().is_namespace) throw RuntimeFailure{"Object of type Namespace is not JSON serializable"};
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& kv : v.as_dict().items) items.push_back(&kv);
      if (sort_keys) std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
      if (items.empty()) {
        out += "{}";
        return;
      }
      out += '{';
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) out += item_sep;
        if (indent >= 0) newline(level + 1);
        json_string(items[i]->first, out);
        out += key_sep;
        to_json_impl(items[i]->second, indent, level + 1, sort_keys, item_sep, key_sep, out);
      }
      if (indent >= 0) newline(level);
      out += '}';
      return;
    }
    case Value::Type::kUndefined: throw RuntimeFailure{"Object of type Undefined is not JSON serializable"};
    case Value::Type::kCallable: throw RuntimeFailure{"Object of type function is not JSON serializable"};
  }
}

}  // namespace

std::string Value::str() const {
  switch (type_) {
    case Type::kUndefined: return "";
    case Type::kString: return str_;
    default: return repr();
  }
}

std::string Value::repr() const {
  struct DepthGuard {
    DepthGuard() {
      if (++repr_depth > kMaxNesting) {
        --repr_depth;
        throw RuntimeFailure{"value nested too deeply to print (circular reference?)"};
      }
    }
    ~DepthGuard() { --repr_depth; }
  } guard;
  switch (type_) {
    case Type::kUndefined: return "";
    case Type::kNone: return "None";
    case Type::kBool: return b_ ? "True" : "False";
    case Type::kInt: return std::to_string(i_);
    case Type::kFloat: return float_repr(d_);
    case Type::kString: return string_repr(str_);
    case Type::kList: {
      std::string out = list_->tuple ? "(" : "[";
      for (std::size_t i = 0; i < list_->items.size(); ++i) {
        if (i) out += ", ";
        out += list_->items[i].repr();
      }
      if (list_->tuple && list_->items.size() == 1) out += ",";
      out += list_->tuple ? ")" : "]";
      return out;
    }
    case Type::kDict: {
      std::string out = dict_->is_namespace ? "<Namespace {" : "{";
      for (std::size_t i = 0; i < dict_->items.size(); ++i) {
        if (i) out += ", ";
        out += string_repr(dict_->items[i].first) + ": " + dict_->items[i].second.repr();
      }
      out += dict_->is_namespace ? "}>" : "}";
      return out;
    }
    case Type::kCallable: return "<function " + fn_->name + ">";
  }
  return "";
}

std::string Value::type_name() const {
  switch (type_) {
    case Type::kUndefined: return "Undefined";
    case Type::kNone: return "NoneType";
    case Type::kBool: return "bool";
    case Type::kInt: return "int";
    case Type::kFloat: return "float";
    case Type::kString: return "str";
    case Type::kList: return list_->tuple ? "tuple" : "list";
    case Type::kDict: return dict_->is_namespace ? "Namespace" : "dict";
    case Type::kCallable: return "function";
  }
  return "?";
}

bool Value::equals(const Value& o) const {
  if (is_number() && o.is_number()) {
    if (is_float() || o.is_float()) return as_double() == o.as_double();
    return as_int() == o.as_int();
  }
  if (type_ != o.type_) return false;
  switch (type_) {
    case Type::kUndefined:
    case Type::kNone: return true;
    case Type::kString: return str_ == o.str_;
    case Type::kList: {
      if (list_->tuple != o.list_->tuple || list_->items.size() != o.list_->items.size()) return false;
      for (std::size_t i = 0; i < list_->items.size(); ++i)
        if (!list_->items[i].equals(o.list_->items[i])) return false;
      return true;
    }
    case Type::kDict: {
      if (dict_->is_namespace || o.dict_->is_namespace) return dict_ == o.dict_;
      if (dict_->items.size() != o.dict_->items.size()) return false;
      for (const auto& kv : dict_->items) {
        const Value* other = o.dict_->find(kv.first);
        if (!other || !kv.second.equals(*other)) return false;
      }
      return true;
    }
    case Type::kCallable: return fn_ == o.fn_;
    default: return false;
  }
}

std::string Value::to_json(int indent, bool sort_keys, std::string item_sep, std::string key_sep) const {
  if (item_sep.empty()) item_sep = indent >= 0 ? "," : ", ";
  if (key_sep.empty()) key_sep = ": ";
  std::string out;
  to_json_impl(*this, indent, 0, sort_keys, item_sep, key_sep, out);
  return out;
}

Value CallArgs::get(std::size_t i, std::string_view name, Value dflt) const {
  if (i < args.size()) return args[i];
  for (const auto& kv : kwargs)
    if (kv.first == name) return kv.second;
  return dflt;
}

}  // namespace vlq::text::jinja
