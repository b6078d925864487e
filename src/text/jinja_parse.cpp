// Jinja lexer and parser (see jinja.h / jinja_ast.h): Jinja 3.1 tokenisation with trim_blocks=True and
// lstrip_blocks=True, whitespace control, raw blocks, and a recursive-descent parser with Jinja's
// operator precedence (condexpr < or < and < not < compare < + - < ~ < * / // % < ** < unary < postfix,
// filters and tests binding to the unary expression).
#include <algorithm>
#include <cstring>

#include "text/jinja_ast.h"
#include "vlq/text/utf8.h"
#include "vlq/text/chat_template.h"

namespace vlq::text::jinja {

namespace {

struct Token {
  enum Type { kData, kVarBegin, kVarEnd, kBlockBegin, kBlockEnd, kName, kString, kInt, kFloat, kOp, kEof };
  Type type = kEof;
  std::string text;  // data, name, operator, or the decoded string literal
  int line = 0;
  int col = 0;
  std::int64_t ival = 0;
  double fval = 0;
};

[[noreturn]] void syntax_error(const std::string& name, int line, int col, const std::string& what,
                               const std::string& hint = "") {
  throw TemplateError({name + ":" + std::to_string(line) + ":" + std::to_string(col), "template syntax error: " + what,
                       "", "", hint.empty() ? "fix the chat template (Jinja syntax)" : hint},
                      line, col);
}

bool is_py_space_at(std::string_view s, std::size_t i, std::size_t* len) {
  std::size_t j = i;
  const char32_t cp = utf8::next(s, j);
  *len = j - i;
  return utf8::is_py_space(cp);
}

std::string rstrip_py(std::string_view s) {
  std::size_t end = s.size();
  while (end > 0) {
    std::size_t k = end - 1;
    while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
    std::size_t len;
    if (!is_py_space_at(s, k, &len)) break;
    end = k;
  }
  return std::string(s.substr(0, end));
}

class Lexer {
 public:
  Lexer(std::string_view source, std::string name) : name_(std::move(name)) {
    // Jinja: every newline sequence becomes "\n"; keep_trailing_newline=False drops one final newline.
    src_.reserve(source.size());
    for (std::size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_ += '\n';
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_ += source[i];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
    line_starts_.push_back(0);
    for (std::size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    std::size_t pos = 0;
    bool line_starting = true;
    const std::size_t n = src_.size();
    while (pos < n) {
      std::size_t k = pos;
      while (true) {
        k = src_.find('{', k);
        if (k == std::string::npos || k + 1 >= n) {
          k = std::string::npos;
          break;
        }
        const char c = src_[k + 1];
        if (c == '{' || c == '%' || c == '#') break;
        ++k;
      }
      if (k == std::string::npos) {
        push_data(src_.substr(pos), pos);
        break;
      }
      std::string text = src_.substr(pos, k - pos);
      const char kind = src_[k + 1];
      std::size_t after = k + 2;
      const bool strip_before = after < n && src_[after] == '-';
      const bool keep_before = after < n && src_[after] == '+';
      if (strip_before) {
        text = rstrip_py(text);
      } else if (!keep_before && kind != '{') {
        // lstrip_blocks: drop spaces/tabs between the start of the line and a block or comment tag.
        const std::size_t nl = text.rfind('\n');
        const std::size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        if ((l_pos > 0 || line_starting) &&
            text.find_first_not_of(" \t", l_pos) == std::string::npos)
          text.resize(l_pos);
      }
      push_data(text, pos);
      if (strip_before || keep_before) ++after;

      if (kind == '#') {
        const std::size_t end = src_.find("#}", after);
        if (end == std::string::npos) error_at(k, "missing end of comment tag '#}'");
        std::size_t p = end + 2;
        const char before = end > after ? src_[end - 1] : '\0';
        if (before == '-') {
          p = skip_py_space(p);
        } else if (before != '+' && p < n && src_[p] == '\n') {
          ++p;  // trim_blocks
        }
        line_starting = src_[p - 1] == '\n';
        pos = p;
        continue;
      }
      if (kind == '%' && try_raw(k, after, pos, line_starting)) continue;

      tokens_.push_back(make(kind == '{' ? Token::kVarBegin : Token::kBlockBegin, kind == '{' ? "{{" : "{%", k));
      std::size_t p = after;
      int depth = 0;
      const std::string closer = kind == '{' ? "}}" : "%}";
      while (true) {
        while (p < n && (src_[p] == ' ' || src_[p] == '\t' || src_[p] == '\n')) ++p;
        if (p >= n) error_at(k, std::string("unexpected end of template, missing '") + closer + "'");
        if (depth == 0) {
          if (src_[p] == '-' && src_.compare(p + 1, 2, closer) == 0) {
            tokens_.push_back(make(kind == '{' ? Token::kVarEnd : Token::kBlockEnd, closer, p));
            p = skip_py_space(p + 3);
            break;
          }
          if (kind == '%' && src_[p] == '+' && src_.compare(p + 1, 2, closer) == 0) {
            tokens_.push_back(make(Token::kBlockEnd, closer, p));
            p += 3;
            break;
          }
          if (src_.compare(p, 2, closer) == 0) {
            tokens_.push_back(make(kind == '{' ? Token::kVarEnd : Token::kBlockEnd, closer, p));
            p += 2;
            if (kind == '%' && p < n && src_[p] == '\n') ++p;  // trim_blocks
            break;
          }
        }
        p = lex_token(p, depth);
      }
      line_starting = src_[p - 1] == '\n';
      pos = p;
    }
    tokens_.push_back(make(Token::kEof, "", n));
    return std::move(tokens_);
  }

 private:
  void push_data(const std::string& text, std::size_t at) {
    if (text.empty()) return;
    Token t = make(Token::kData, text, at);
    tokens_.push_back(std::move(t));
  }

  Token make(Token::Type type, std::string text, std::size_t at) const {
    Token t;
    t.type = type;
    t.text = std::move(text);
    position(at, t.line, t.col);
    return t;
  }

  // 1-based line and column (in characters) of byte offset `at`. Positions are mostly requested in
  // increasing order, so the column is counted from the previous answer when it is on the same line.
  void position(std::size_t at, int& line, int& col) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), at);
    const std::size_t idx = static_cast<std::size_t>(it - line_starts_.begin()) - 1;
    line = static_cast<int>(idx) + 1;
    std::size_t from = line_starts_[idx];
    int base = 1;
    if (cache_line_ == idx && cache_at_ <= at) {
      from = cache_at_;
      base = cache_col_;
    }
    col = base + static_cast<int>(utf8::length(std::string_view(src_).substr(from, at - from)));
    cache_line_ = idx;
    cache_at_ = at;
    cache_col_ = col;
  }

  [[noreturn]] void error_at(std::size_t at, const std::string& what) const {
    int line, col;
    position(at, line, col);
    syntax_error(name_, line, col, what);
  }

  std::size_t skip_py_space(std::size_t p) const {
    while (p < src_.size()) {
      std::size_t len;
      if (!is_py_space_at(src_, p, &len)) break;
      p += len;
    }
    return p;
  }

  // {% raw %}...{% endraw %}: the content becomes data verbatim.
  bool try_raw(std::size_t k, std::size_t after, std::size_t& pos, bool& line_starting) {
    std::size_t p = after;
    while (p < src_.size() && (src_[p] == ' ' || src_[p] == '\t' || src_[p] == '\n')) ++p;
    if (src_.compare(p, 3, "raw") != 0) return false;
    p += 3;
    while (p < src_.size() && (src_[p] == ' ' || src_[p] == '\t' || src_[p] == '\n')) ++p;
    bool strip_after = false;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) strip_after = src_[p++] == '-';
    if (src_.compare(p, 2, "%}") != 0) return false;
    p += 2;
    if (strip_after) p = skip_py_space(p);
    // Find {%[-+]? endraw [-+]?%}
    std::size_t search = p;
    while (true) {
      const std::size_t e = src_.find("{%", search);
      if (e == std::string::npos) error_at(k, "missing '{% endraw %}'");
      std::size_t q = e + 2;
      const bool strip_before = q < src_.size() && src_[q] == '-';
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) ++q;
      while (q < src_.size() && (src_[q] == ' ' || src_[q] == '\t' || src_[q] == '\n')) ++q;
      if (src_.compare(q, 6, "endraw") != 0) {
        search = e + 2;
        continue;
      }
      q += 6;
      while (q < src_.size() && (src_[q] == ' ' || src_[q] == '\t' || src_[q] == '\n')) ++q;
      char mod = '\0';
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) mod = src_[q++];
      if (src_.compare(q, 2, "%}") != 0) {
        search = e + 2;
        continue;
      }
      q += 2;
      std::string content = src_.substr(p, e - p);
      if (strip_before) content = rstrip_py(content);
      push_data(content, p);
      if (mod == '-') {
        q = skip_py_space(q);
      } else if (mod != '+' && q < src_.size() && src_[q] == '\n') {
        ++q;
      }
      line_starting = src_[q - 1] == '\n';
      pos = q;
      return true;
    }
  }

  std::size_t lex_token(std::size_t p, int& depth) {
    const std::size_t n = src_.size();
    const char c = src_[p];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      std::size_t e = p;
      while (e < n && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
      tokens_.push_back(make(Token::kName, src_.substr(p, e - p), p));
      return e;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) return lex_number(p);
    if (c == '\'' || c == '"') return lex_string(p);
    static const char* const kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
                                       ">",  "=",  ".",  ",",  ":",  "|",  "(", ")", "[", "]", "{", "}"};
    for (const char* op : kOps) {
      const std::size_t len = std::strlen(op);
      if (src_.compare(p, len, op) == 0) {
        if (len == 1) {
          if (c == '(' || c == '[' || c == '{') ++depth;
          if (c == ')' || c == ']' || c == '}') {
            if (depth == 0) error_at(p, std::string("unexpected '") + c + "'");
            --depth;
          }
        }
        tokens_.push_back(make(Token::kOp, op, p));
        return p + len;
      }
    }
    error_at(p, std::string("unexpected char '") + c + "'");
  }

  std::size_t lex_number(std::size_t p) {
    const std::size_t n = src_.size();
    auto digits = [&](std::size_t q, auto pred) {
      while (q < n && (pred(src_[q]) || (src_[q] == '_' && q + 1 < n && pred(src_[q + 1])))) ++q;
      return q;
    };
    auto is_dec = [](char ch) { return ch >= '0' && ch <= '9'; };
    const bool after_dot = !tokens_.empty() && tokens_.back().type == Token::kOp && tokens_.back().text == ".";
    std::size_t q;
    std::string clean;
    if (src_[p] == '0' && p + 1 < n && std::strchr("xXoObB", src_[p + 1])) {
      const char base_ch = static_cast<char>(std::tolower(src_[p + 1]));
      const int base = base_ch == 'x' ? 16 : base_ch == 'o' ? 8 : 2;
      q = digits(p + 2, [&](char ch) { return std::isxdigit(static_cast<unsigned char>(ch)) != 0; });
      for (std::size_t i = p + 2; i < q; ++i)
        if (src_[i] != '_') clean += src_[i];
      Token t = make(Token::kInt, src_.substr(p, q - p), p);
      try {
        t.ival = std::stoll(clean, nullptr, base);
      } catch (const std::exception&) {
        error_at(p, "invalid integer literal '" + src_.substr(p, q - p) + "'");
      }
      tokens_.push_back(std::move(t));
      return q;
    }
    q = digits(p, is_dec);
    bool is_float = false;
    if (!after_dot && q + 1 < n && src_[q] == '.' && is_dec(src_[q + 1])) {
      q = digits(q + 1, is_dec);
      is_float = true;
    }
    if (!after_dot && q < n && (src_[q] == 'e' || src_[q] == 'E')) {
      std::size_t r = q + 1;
      if (r < n && (src_[r] == '+' || src_[r] == '-')) ++r;
      if (r < n && is_dec(src_[r])) {
        q = digits(r, is_dec);
        is_float = true;
      }
    }
    for (std::size_t i = p; i < q; ++i)
      if (src_[i] != '_') clean += src_[i];
    Token t = make(is_float ? Token::kFloat : Token::kInt, src_.substr(p, q - p), p);
    try {
      if (is_float)
        t.fval = std::stod(clean);
      else
        t.ival = std::stoll(clean);
    } catch (const std::exception&) {
      error_at(p, "number literal out of range: " + clean);
    }
    tokens_.push_back(std::move(t));
    return q;
  }

  // Python string literal with unicode-escape decoding (what Jinja does for string tokens).
  std::size_t lex_string(std::size_t p) {
    const char quote = src_[p];
    std::string out;
    std::size_t q = p + 1;
    const std::size_t n = src_.size();
    while (true) {
      if (q >= n) error_at(p, "unterminated string literal");
      const char c = src_[q];
      if (c == quote) break;
      if (c != '\\') {
        out += c;
        ++q;
        continue;
      }
      if (q + 1 >= n) error_at(p, "unterminated string literal");
      const char e = src_[q + 1];
      q += 2;
      auto hex = [&](int count) -> char32_t {
        if (q + count > n) error_at(q, "truncated \\x/\\u escape");
        char32_t v = 0;
        for (int i = 0; i < count; ++i) {
          const char h = src_[q + i];
          if (!std::isxdigit(static_cast<unsigned char>(h))) error_at(q, "invalid hex escape");
          v = v * 16 + static_cast<char32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : std::tolower(h) - 'a' + 10);
        }
        q += count;
        return v;
      };
      switch (e) {
        case '\n': break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x': utf8::append(out, hex(2)); break;
        case 'u': utf8::append(out, hex(4)); break;
        case 'U': {
          const char32_t v = hex(8);
          if (v > 0x10FFFF) error_at(q, "\\U escape out of range");
          utf8::append(out, v);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            char32_t v = static_cast<char32_t>(e - '0');
            for (int i = 0; i < 2 && q < n && src_[q] >= '0' && src_[q] <= '7'; ++i) v = v * 8 + static_cast<char32_t>(src_[q++] - '0');
            utf8::append(out, v);
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    Token t = make(Token::kString, out, p);
    tokens_.push_back(std::move(t));
    return q + 1;
  }

  std::string name_;
  std::string src_;
  std::vector<std::size_t> line_starts_;
  std::vector<Token> tokens_;
  mutable std::size_t cache_line_ = static_cast<std::size_t>(-1);
  mutable std::size_t cache_at_ = 0;
  mutable int cache_col_ = 1;
};

// ---- parser ---------------------------------------------------------------------------------------

class Parser {
 public:
  Parser(std::vector<Token> tokens, std::string name) : toks_(std::move(tokens)), name_(std::move(name)) {}

  Body parse_all() {
    Body body = subparse({});
    if (cur().type != Token::kEof) fail(cur(), "unexpected '" + cur().text + "'");
    return body;
  }

 private:
  const Token& cur() const { return toks_[pos_]; }
  const Token& look(std::size_t k = 1) const { return toks_[std::min(pos_ + k, toks_.size() - 1)]; }
  const Token& advance() { return toks_[pos_ < toks_.size() - 1 ? pos_++ : pos_]; }
  bool is_op(const char* op) const { return cur().type == Token::kOp && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == Token::kName && cur().text == n; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    advance();
    return true;
  }
  bool skip_name(const char* n) {
    if (!is_name(n)) return false;
    advance();
    return true;
  }

  static std::string describe(const Token& t) {
    switch (t.type) {
      case Token::kEof: return "end of template";
      case Token::kBlockEnd: return "end of statement block";
      case Token::kVarEnd: return "end of print statement";
      case Token::kData: return "template data";
      case Token::kString: return "string literal";
      default: return "'" + t.text + "'";
    }
  }

  [[noreturn]] void fail(const Token& t, const std::string& what) const { syntax_error(name_, t.line, t.col, what); }

  void expect_op(const char* op) {
    if (!skip_op(op)) fail(cur(), std::string("expected '") + op + "', got " + describe(cur()));
  }
  void expect_block_end() {
    if (cur().type != Token::kBlockEnd) fail(cur(), "expected end of statement block, got " + describe(cur()));
    advance();
  }
  std::string expect_name() {
    if (cur().type != Token::kName) fail(cur(), "expected a name, got " + describe(cur()));
    return advance().text;
  }

  ExprPtr node(Expr::Kind kind, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = at.line;
    e->col = at.col;
    return e;
  }

  // Parses statements until a block tag whose keyword is in `end` (left unconsumed: the cursor is on
  // its name) or the end of the template.
  Body subparse(const std::vector<std::string>& end) {
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.type == Token::kEof) {
        if (!end.empty()) {
          std::string want;
          for (const auto& e : end) want += (want.empty() ? "'" : " or '") + e + "'";
          fail(t, "unexpected end of template; Jinja was looking for " + want);
        }
        return body;
      }
      if (t.type == Token::kData) {
        Stmt s;
        s.kind = Stmt::kText;
        s.line = t.line;
        s.col = t.col;
        s.text = t.text;
        advance();
        body.push_back(std::move(s));
        continue;
      }
      if (t.type == Token::kVarBegin) {
        Stmt s;
        s.kind = Stmt::kOutput;
        s.line = t.line;
        s.col = t.col;
        advance();
        s.expr = parse_tuple(true, false);
        if (cur().type != Token::kVarEnd) fail(cur(), "expected end of print statement, got " + describe(cur()));
        advance();
        body.push_back(std::move(s));
        continue;
      }
      if (t.type == Token::kBlockBegin) {
        const Token& kw = look();
        if (kw.type != Token::kName) fail(kw, "expected a statement name, got " + describe(kw));
        if (std::find(end.begin(), end.end(), kw.text) != end.end()) {
          advance();  // onto the keyword
          return body;
        }
        advance();
        body.push_back(parse_statement(end));
        continue;
      }
      fail(t, "unexpected " + describe(t));
    }
  }

  Stmt parse_statement(const std::vector<std::string>& enclosing_end) {
    Nest nest(*this, cur());
    const Token kw = advance();
    Stmt s;
    s.line = kw.line;
    s.col = kw.col;
    const std::string& k = kw.text;
    if (k == "for") {
      s.kind = Stmt::kFor;
      parse_assign_targets(s, false);
      if (!skip_name("in")) fail(cur(), "expected 'in', got " + describe(cur()));
      s.expr = parse_tuple(false, false, {"recursive"});
      if (skip_name("if")) s.cond = parse_expression(true);
      if (is_name("recursive")) fail(cur(), "recursive loops are not supported");
      expect_block_end();
      s.body = subparse({"endfor", "else"});
      if (advance().text == "else") {
        expect_block_end();
        s.else_body = subparse({"endfor"});
        advance();
      }
      expect_block_end();
    } else if (k == "if") {
      s.kind = Stmt::kIf;
      ExprPtr cond = parse_tuple(false, false);
      expect_block_end();
      while (true) {
        Body b = subparse({"elif", "else", "endif"});
        s.branches.emplace_back(std::move(cond), std::move(b));
        const std::string which = advance().text;
        if (which == "elif") {
          cond = parse_tuple(false, false);
          expect_block_end();
          continue;
        }
        if (which == "else") {
          expect_block_end();
          s.else_body = subparse({"endif"});
          advance();
        }
        expect_block_end();
        break;
      }
    } else if (k == "set") {
      parse_assign_targets(s, true);
      if (skip_op("=")) {
        s.kind = Stmt::kSet;
        s.expr = parse_tuple(true, false);
        expect_block_end();
      } else {
        if (s.attr_target || s.targets.size() != 1) fail(cur(), "expected '=' in set statement");
        s.kind = Stmt::kSetBlock;
        expect_block_end();
        s.body = subparse({"endset"});
        advance();
        expect_block_end();
      }
    } else if (k == "macro") {
      s.kind = Stmt::kMacro;
      s.name = expect_name();
      expect_op("(");
      while (!is_op(")")) {
        if (!s.params.empty()) expect_op(",");
        if (is_op(")")) break;
        s.params.push_back(expect_name());
        s.defaults.push_back(skip_op("=") ? parse_expression(true) : nullptr);
      }
      expect_op(")");
      expect_block_end();
      s.body = subparse({"endmacro"});
      advance();
      if (cur().type == Token::kName) advance();  // {% endmacro name %}
      expect_block_end();
    } else if (k == "break" || k == "continue") {
      s.kind = k == "break" ? Stmt::kBreak : Stmt::kContinue;
      expect_block_end();
    } else if (k == "generation") {
      s.kind = Stmt::kScope;
      expect_block_end();
      s.body = subparse({"endgeneration"});
      advance();
      expect_block_end();
    } else {
      std::string msg = "encountered unknown tag '" + k + "'";
      if (!enclosing_end.empty()) {
        std::string want;
        for (const auto& e : enclosing_end) want += (want.empty() ? "'" : " or '") + e + "'";
        msg += "; Jinja was looking for " + want;
      }
      fail(kw, msg);
    }
    return s;
  }

  // for/set targets: name | name, name... | (name, name) | name.attr (set only).
  void parse_assign_targets(Stmt& s, bool allow_attr) {
    const bool paren = skip_op("(");
    s.targets.push_back(expect_name());
    if (allow_attr && !paren && is_op(".")) {
      advance();
      s.targets.push_back(expect_name());
      s.attr_target = true;
      return;
    }
    while (skip_op(",")) {
      s.tuple_target = true;
      if (cur().type != Token::kName) break;
      s.targets.push_back(expect_name());
    }
    if (paren) {
      s.tuple_target = true;
      expect_op(")");
    }
  }

  bool is_tuple_end(const std::vector<std::string>& extra) const {
    const Token& t = cur();
    if (t.type == Token::kVarEnd || t.type == Token::kBlockEnd || t.type == Token::kEof) return true;
    if (t.type == Token::kOp && t.text == ")") return true;
    if (t.type == Token::kName && std::find(extra.begin(), extra.end(), t.text) != extra.end()) return true;
    return false;
  }

  ExprPtr parse_tuple(bool with_condexpr, bool explicit_parens, const std::vector<std::string>& extra = {}) {
    const Token start = cur();
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end(extra)) break;
      items.push_back(parse_expression(with_condexpr));
      if (is_op(","))
        is_tuple = true;
      else
        break;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) fail(cur(), "expected an expression, got " + describe(cur()));
    }
    auto e = node(Expr::kTuple, start);
    e->children = std::move(items);
    return e;
  }

  ExprPtr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

  ExprPtr parse_condexpr() {
    ExprPtr expr1 = parse_or();
    while (is_name("if")) {
      const Token at = advance();
      auto e = node(Expr::kCond, at);
      ExprPtr cond = parse_or();
      ExprPtr other = skip_name("else") ? parse_condexpr() : nullptr;
      e->children.push_back(std::move(cond));
      e->children.push_back(std::move(expr1));
      e->children.push_back(std::move(other));
      expr1 = std::move(e);
    }
    return expr1;
  }

  // Left-associative chain `operand (keyword operand)*` of one boolean operator.
  ExprPtr parse_bool_chain(const char* keyword, Expr::Kind kind, ExprPtr (Parser::*operand)()) {
    ExprPtr left = (this->*operand)();
    while (is_name(keyword)) {
      auto e = node(kind, advance());
      e->children.push_back(std::move(left));
      e->children.push_back((this->*operand)());
      left = std::move(e);
    }
    return left;
  }

  ExprPtr parse_or() { return parse_bool_chain("or", Expr::kOr, &Parser::parse_and); }
  ExprPtr parse_and() { return parse_bool_chain("and", Expr::kAnd, &Parser::parse_not); }

  ExprPtr parse_not() {
    Nest nest(*this, cur());
    if (is_name("not")) {
      auto e = node(Expr::kNot, advance());
      e->children.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Token start = cur();
    ExprPtr expr = parse_math1();
    std::vector<std::string> ops;
    std::vector<ExprPtr> operands;
    while (true) {
      if (cur().type == Token::kOp &&
          (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == "<=" || cur().text == ">" ||
           cur().text == ">=")) {
        ops.push_back(advance().text);
      } else if (is_name("in")) {
        advance();
        ops.emplace_back("in");
      } else if (is_name("not") && look().type == Token::kName && look().text == "in") {
        advance();
        advance();
        ops.emplace_back("notin");
      } else {
        break;
      }
      operands.push_back(parse_math1());
    }
    if (ops.empty()) return expr;
    auto e = node(Expr::kCompare, start);
    e->children.push_back(std::move(expr));
    for (auto& o : operands) e->children.push_back(std::move(o));
    e->ops = std::move(ops);
    return e;
  }

  ExprPtr binary(ExprPtr left, const Token& op, ExprPtr right) {
    auto e = node(Expr::kBinary, op);
    e->name = op.text;
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    return e;
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token op = advance();
      left = binary(std::move(left), op, parse_concat());
    }
    return left;
  }

  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    while (is_op("~")) {
      const Token op = advance();
      left = binary(std::move(left), op, parse_math2());
    }
    return left;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token op = advance();
      left = binary(std::move(left), op, parse_pow());
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      const Token op = advance();
      left = binary(std::move(left), op, parse_unary(true));
    }
    return left;
  }

  // Bounds recursion on hostile input (((((... or deeply nested blocks).
  struct Nest {
    Parser& p;
    explicit Nest(Parser& parser, const Token& at) : p(parser) {
      if (++p.nesting_ > kMaxNesting) p.fail(at, "template nested too deeply");
    }
    ~Nest() { --p.nesting_; }
  };
  static constexpr int kMaxNesting = 150;

  ExprPtr parse_unary(bool with_filter) {
    Nest nest(*this, cur());
    ExprPtr n;
    if (is_op("-") || is_op("+")) {
      const Token op = advance();
      n = node(op.text == "-" ? Expr::kNeg : Expr::kPos, op);
      n->children.push_back(parse_unary(false));
    } else {
      n = parse_primary();
    }
    n = parse_postfix(std::move(n));
    if (with_filter) n = parse_filter_expr(std::move(n));
    return n;
  }

  ExprPtr parse_primary() {
    const Token t = cur();
    switch (t.type) {
      case Token::kName: {
        advance();
        auto e = node(Expr::kLiteral, t);
        if (t.text == "true" || t.text == "True") {
          e->value = Value(true);
        } else if (t.text == "false" || t.text == "False") {
          e->value = Value(false);
        } else if (t.text == "none" || t.text == "None") {
          e->value = Value::none();
        } else {
          e->kind = Expr::kName;
          e->name = t.text;
        }
        return e;
      }
      case Token::kString: {
        std::string s;
        while (cur().type == Token::kString) s += advance().text;
        auto e = node(Expr::kLiteral, t);
        e->value = Value(std::move(s));
        return e;
      }
      case Token::kInt: {
        advance();
        auto e = node(Expr::kLiteral, t);
        e->value = Value(t.ival);
        return e;
      }
      case Token::kFloat: {
        advance();
        auto e = node(Expr::kLiteral, t);
        e->value = Value(t.fval);
        return e;
      }
      case Token::kOp:
        if (t.text == "(") {
          advance();
          ExprPtr e = parse_tuple(true, true);
          expect_op(")");
          return e;
        }
        if (t.text == "[") {
          advance();
          auto e = node(Expr::kList, t);
          while (!is_op("]")) {
            if (!e->children.empty()) expect_op(",");
            if (is_op("]")) break;
            e->children.push_back(parse_expression(true));
          }
          expect_op("]");
          return e;
        }
        if (t.text == "{") {
          advance();
          auto e = node(Expr::kDict, t);
          while (!is_op("}")) {
            if (!e->children.empty()) expect_op(",");
            if (is_op("}")) break;
            e->children.push_back(parse_expression(true));
            expect_op(":");
            e->children.push_back(parse_expression(true));
          }
          expect_op("}");
          return e;
        }
        break;
      default: break;
    }
    fail(t, "unexpected " + describe(t));
  }

  ExprPtr parse_postfix(ExprPtr n) {
    while (true) {
      if (is_op(".") || is_op("[")) {
        n = parse_subscript(std::move(n));
      } else if (is_op("(")) {
        n = parse_call(std::move(n));
      } else {
        return n;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr n) {
    while (true) {
      if (is_op("|")) {
        n = parse_filter(std::move(n));
      } else if (is_name("is")) {
        n = parse_test(std::move(n));
      } else if (is_op("(")) {
        n = parse_call(std::move(n));
      } else {
        return n;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj) {
    const Token t = advance();
    if (t.text == ".") {
      const Token attr = advance();
      if (attr.type == Token::kName) {
        auto e = node(Expr::kAttr, t);
        e->name = attr.text;
        e->children.push_back(std::move(obj));
        return e;
      }
      if (attr.type == Token::kInt) {
        auto e = node(Expr::kItem, t);
        auto idx = node(Expr::kLiteral, attr);
        idx->value = Value(attr.ival);
        e->children.push_back(std::move(obj));
        e->children.push_back(std::move(idx));
        return e;
      }
      fail(attr, "expected name or number after '.', got " + describe(attr));
    }
    // '['
    std::vector<ExprPtr> parts;  // for a slice: start, stop, step
    bool is_slice = false;
    ExprPtr first;
    if (!is_op(":")) first = parse_expression(true);
    if (is_op(":")) {
      is_slice = true;
      advance();
      parts.push_back(std::move(first));
      parts.push_back(is_op("]") || is_op(":") ? nullptr : parse_expression(true));
      if (skip_op(":"))
        parts.push_back(is_op("]") ? nullptr : parse_expression(true));
      else
        parts.push_back(nullptr);
    }
    expect_op("]");
    auto e = node(is_slice ? Expr::kSlice : Expr::kItem, t);
    e->children.push_back(std::move(obj));
    if (is_slice) {
      for (auto& p : parts) e->children.push_back(std::move(p));
    } else {
      e->children.push_back(std::move(first));
    }
    return e;
  }

  void parse_call_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (is_op(")")) break;
      if (is_op("*") || is_op("**")) fail(cur(), "*args / **kwargs in calls are not supported");
      if (cur().type == Token::kName && look().type == Token::kOp && look().text == "=") {
        std::string key = advance().text;
        advance();
        e.kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!e.kwargs.empty()) fail(cur(), "positional argument after keyword argument");
        e.children.push_back(parse_expression(true));
      }
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = node(Expr::kCall, cur());
    e->children.push_back(std::move(callee));
    parse_call_args(*e);
    return e;
  }

  ExprPtr parse_filter(ExprPtr obj) {
    const Token bar = advance();
    auto e = node(Expr::kFilter, bar);
    e->name = expect_name();
    while (is_op(".")) {
      advance();
      e->name += "." + expect_name();
    }
    e->children.push_back(std::move(obj));
    if (is_op("(")) parse_call_args(*e);
    return e;
  }

  ExprPtr parse_test(ExprPtr obj) {
    const Token is = advance();
    auto e = node(Expr::kTest, is);
    e->negated = skip_name("not");
    e->name = expect_name();
    while (is_op(".")) {
      advance();
      e->name += "." + expect_name();
    }
    e->children.push_back(std::move(obj));
    const Token& t = cur();
    if (is_op("(")) {
      parse_call_args(*e);
    } else if ((t.type == Token::kName && t.text != "else" && t.text != "or" && t.text != "and" && t.text != "is" &&
                t.text != "if" && t.text != "in" && t.text != "not") ||
               t.type == Token::kString || t.type == Token::kInt || t.type == Token::kFloat ||
               (t.type == Token::kOp && (t.text == "[" || t.text == "{"))) {
      ExprPtr arg = parse_postfix(parse_primary());
      e->children.push_back(std::move(arg));
    }
    return e;
  }

  std::vector<Token> toks_;
  std::size_t pos_ = 0;
  std::string name_;
  int nesting_ = 0;
};

}  // namespace

Body parse_template(std::string_view source, const std::string& name) {
  Lexer lexer(source, name);
  Parser parser(lexer.run(), name);
  return parser.parse_all();
}

}  // namespace vlq::text::jinja
