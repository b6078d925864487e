// Internal: what the Jinja renderer (jinja_render.cpp) shares with the value operations (jinja_ops.cpp),
// string formatting (jinja_format.cpp), filters (jinja_filters.cpp) and tests (jinja_tests.cpp): Python
// semantics for the chat-template subset of Jinja. Runtime errors are RuntimeFailure (jinja.h), given a
// line/column by the renderer.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "text/jinja.h"

namespace vlq::text::jinja::detail {

// A runtime failure with the location of the innermost expression or statement that raised it.
struct LocatedFailure {
  std::string message;
  int line;
  int col;
};

[[noreturn]] inline void fail(std::string msg) { throw RuntimeFailure{std::move(msg)}; }

inline constexpr std::size_t kMaxOutputBytes = std::size_t{64} << 20;
inline constexpr int kMaxCallDepth = 100;
inline constexpr std::int64_t kMaxRange = 1'000'000;
inline constexpr std::int64_t kMaxLoopIterations = 1'000'000;  // over a whole rendering
inline constexpr std::size_t kMaxListItems = 10'000'000;

// Fails with the undefined value's hint ("'x' is undefined", ...).
[[noreturn]] void undefined_error(const Value& v);
std::string undefined_name_hint(const std::string& name);
// A run of decimal digits as an index; fails (instead of throwing std::out_of_range) when too large.
std::int64_t parse_index(const std::string& digits);

// ---- strings (jinja_format.cpp): code-point aware, Python semantics
std::vector<char32_t> to_cps(const std::string& s);
std::string from_cps(const std::vector<char32_t>& cps, std::size_t b, std::size_t e);
std::string py_strip(const std::string& s, const Value& chars, bool left, bool right);
std::vector<Value> py_split(const std::string& s, const Value& sep, std::int64_t maxsplit);
std::string py_replace(const std::string& s, const std::string& old, const std::string& repl, std::int64_t count);
std::string map_case(const std::string& s, bool upper);
std::string py_capitalize(const std::string& s);
std::string py_title(const std::string& s);
// str % value / str % tuple (%s %r %d %i %f %e %g %x %X %o %c %%, with flags/width/precision).
std::string percent_format(const std::string& fmt, const Value& arg);
// str.format with positional and keyword fields.
std::string brace_format(const std::string& fmt, const CallArgs& a);
std::string html_escape(const std::string& s);
// Bound str method `name` of `s` (startswith, split, format, ...), or undefined.
Value string_method(const std::string& s, const std::string& name);

// ---- values (jinja_ops.cpp)
std::int64_t py_len(const Value& v);
std::vector<Value> iterate(const Value& v);
// <0, 0, >0 like Python's comparison of two values; fails for unorderable types (op names the operator).
int compare_values(const Value& a, const Value& b, const char* op);
bool contains(const Value& container, const Value& item);
std::int64_t floor_div(std::int64_t a, std::int64_t b);
// Binary arithmetic + - * / // % ** with Python semantics.
Value arith(const std::string& op, const Value& a, const Value& b);
Value make_loop();
void update_loop(Dict& d, std::size_t i, const std::vector<Value>& items);
Value dict_method(const Value& obj, const std::string& name);
// Attribute of a value (Jinja environment.getattr): namespace attributes, str/dict/list methods, then items.
Value get_attr(const Value& obj, const std::string& name);
Value get_item(const Value& obj, const Value& key);
Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step);

// ---- tests (jinja_tests.cpp) and filters (jinja_filters.cpp)
using TestFn = std::function<bool(const Value&, CallArgs&)>;
using FilterFn = std::function<Value(const Value&, CallArgs&)>;
const std::unordered_map<std::string, TestFn>& tests();
// Runs test `name`; fails when there is none.
bool call_test(const std::string& name, const Value& v, CallArgs& args);
const std::unordered_map<std::string, FilterFn>& filters();

}  // namespace vlq::text::jinja::detail
