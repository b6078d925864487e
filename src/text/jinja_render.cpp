// Jinja renderer (see jinja.h): statements, expression evaluation, globals (range, namespace, dict,
// raise_exception, strftime_now), macros, and error reporting with line/column. Values, strings,
// filters and tests live in jinja_ops.cpp, jinja_format.cpp, jinja_filters.cpp, jinja_tests.cpp.
#include <ctime>
#include <functional>

#include "text/jinja_ast.h"
#include "text/jinja_builtins.h"
#include "vlq/text/chat_template.h"

namespace vlq::text::jinja {

using namespace detail;

// ---- renderer -------------------------------------------------------------------------------------

struct Template::Impl {
  std::string name;
  Body body;
};

namespace {

// dict(...) / namespace(...): mappings given positionally, then keyword arguments, merged in order.
Value merged_dict(const CallArgs& a, const char* what, bool is_namespace) {
  Value d = Value::dict();
  d.as_dict().is_namespace = is_namespace;
  for (const Value& p : a.args) {
    if (!p.is_dict()) fail(std::string(what) + "() positional arguments must be mappings");
    for (const auto& kv : p.as_dict().items) d.as_dict().set(kv.first, kv.second);
  }
  for (const auto& kv : a.kwargs) d.as_dict().set(kv.first, kv.second);
  return d;
}

// The globals every template sees: raise_exception, namespace, dict, range, strftime_now.
void add_globals(std::map<std::string, Value>& g) {
  g["raise_exception"] = Value::function("raise_exception", [](CallArgs& a) -> Value {
    fail("template raised an exception: " + a.get(0, "message").str());
  });
  g["namespace"] = Value::function("namespace", [](CallArgs& a) { return merged_dict(a, "namespace", true); });
  g["dict"] = Value::function("dict", [](CallArgs& a) { return merged_dict(a, "dict", false); });
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
}

class Renderer {
 public:
  Renderer(const Template::Impl& t, const std::map<std::string, Value>& vars) : tmpl_(t) {
    frames_.emplace_back();
    auto& g = frames_.back();
    add_globals(g);
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
    bind_into(frame, s, std::move(v));
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

  void bind_target(const Stmt& s, const Value& item) { bind_into(frames_.back(), s, item); }

  // Binds `v` to the statement's target: one name, or a tuple of names unpacked Python-style.
  static void bind_into(std::map<std::string, Value>& frame, const Stmt& s, Value v) {
    if (!s.tuple_target) {
      frame[s.targets[0]] = std::move(v);
      return;
    }
    const auto parts = iterate(v);
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

  // Unary - / + on a number (Python semantics; -INT64_MIN fails).
  Value eval_unary(const Expr& e) {
    const Value v = eval(*e.children[0]);
    if (v.is_undefined()) undefined_error(v);
    if (!v.is_number()) fail("bad operand type for unary " + std::string(e.kind == Expr::kNeg ? "-" : "+") + ": '" + v.type_name() + "'");
    if (e.kind == Expr::kPos) return v.is_float() ? v : Value(v.as_int());
    if (!v.is_float() && v.as_int() == INT64_MIN) fail("integer overflow (template integers are 64-bit)");
    return v.is_float() ? Value(-v.as_double()) : Value(-v.as_int());
  }

  // A chained comparison a < b <= c ..., short-circuiting like Python.
  Value eval_compare(const Expr& e) {
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
      case Expr::kPos: return eval_unary(e);
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
      case Expr::kCompare: return eval_compare(e);
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
                         "vlq's Jinja subset lacks this filter; see src/text/jinja_filters.cpp"},
                        e->line, e->col);
  if (e->kind == Expr::kTest && !tests().count(e->name))
    throw TemplateError({name + ":" + std::to_string(e->line) + ":" + std::to_string(e->col),
                         "template syntax error: no test named '" + e->name + "'", "", "",
                         "vlq's Jinja subset lacks this test; see src/text/jinja_tests.cpp"},
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
