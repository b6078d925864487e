// Jinja tests (`is defined`, `is string`, ...) available to chat templates (see jinja_builtins.h).
#include <functional>
#include <unordered_map>

#include "text/jinja_builtins.h"

namespace vlq::text::jinja::detail {


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

bool call_test(const std::string& name, const Value& v, CallArgs& args) {
  auto it = tests().find(name);
  if (it == tests().end()) fail("no test named '" + name + "'");
  return it->second(v, args);
}
}  // namespace vlq::text::jinja::detail
