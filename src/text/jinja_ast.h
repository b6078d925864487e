// Syntax tree of a parsed Jinja template, shared by the parser (jinja_parse.cpp) and the evaluator
// (jinja_render.cpp). Internal to vlq_lib.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja.h"

namespace vlq::text::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum Kind {
    kLiteral,  // value
    kName,     // name
    kAttr,     // children[0].name
    kItem,     // children[0][children[1]]
    kSlice,    // children[0][children[1]:children[2]:children[3]] (null children = omitted)
    kCall,     // children[0](children[1..], kwargs)
    kFilter,   // children[0] | name(children[1..], kwargs)
    kTest,     // children[0] is [not] name(children[1..], kwargs)
    kNot,
    kNeg,
    kPos,
    kBinary,   // children[0] name children[1]: + - * / // % ** ~
    kAnd,
    kOr,
    kCompare,  // children[0] ops[0] children[1] ops[1] children[2] ... (== != < <= > >= in notin)
    kCond,     // children[1] if children[0] else children[2] (children[2] may be null)
    kList,
    kTuple,
    kDict,     // children = key0, value0, key1, value1, ...
  };
  Kind kind = kLiteral;
  int line = 0;
  int col = 0;
  Value value;
  std::string name;
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  bool negated = false;
};

struct Stmt;
using Body = std::vector<Stmt>;

struct Stmt {
  enum Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // branches (cond, body)...; else_body
    kFor,       // for targets in expr [if cond]: body else else_body
    kSet,       // set targets = expr   (attr_target: targets = {object name, attribute})
    kSetBlock,  // set targets[0] %}body{% endset
    kMacro,     // macro name(params = defaults) body
    kBreak,
    kContinue,
    kScope,     // body rendered in place (generation blocks)
  };
  Kind kind = kText;
  int line = 0;
  int col = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr cond;
  std::vector<std::string> targets;
  bool attr_target = false;
  bool tuple_target = false;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // one per param, null when the parameter has no default
};

// Parses `source` (already newline-normalised by the caller or not; the lexer normalises) into a body.
// Throws TemplateError naming `name` with line/column.
Body parse_template(std::string_view source, const std::string& name);

}  // namespace vlq::text::jinja
