// CLI11's parse errors rewritten in vlq's message form: where (the flag), what, expected, found, hint.
#include "cli/parse_errors.h"

#include <algorithm>
#include <vector>

#include "vlq/core/error.h"

namespace vlq::cli {

namespace {

// "INT" → "an integer", ... (CLI11's type names of the options vlq declares; every integer option is declared
// by add_count_option, so it is a non-negative decimal integer).
std::string expected_of(const std::string& type) {
  if (type == "INT" || type == "UINT") return "a non-negative decimal integer";
  if (type == "FLOAT") return "a number";
  if (type == "BOOLEAN") return "true or false";
  if (type == "TEXT") return "a value";
  return "a value of type " + type;
}


bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

// Levenshtein distance, for "did you mean".
std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The option of `sub` nearest to `arg` (its part before '='), when it is a likely typo: at most 2 edits, or
// one name a prefix of the other. Empty when none is close.
std::string nearest_option(const CLI::App& sub, const std::string& arg) {
  const std::string word = arg.substr(0, arg.find('='));
  std::string best;
  std::size_t best_d = 3;
  for (const CLI::Option* o : sub.get_options()) {
    if (!o->nonpositional()) continue;
    for (const std::string& n : o->get_lnames()) {
      const std::string name = "--" + n;
      std::size_t d = edit_distance(word, name);
      if (word.size() >= 4 && (starts_with(name, word) || starts_with(word, name))) d = std::min<std::size_t>(d, 1);
      if (d < best_d) best_d = d, best = name;
    }
  }
  return best;
}

std::string quoted_list(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "`" : ", `") + x + "`";
  return s;
}

// The positional arguments `sub` takes, e.g. "MODEL OUT".
std::string positionals_of(const CLI::App& sub) {
  std::string s;
  for (const CLI::Option* o : sub.get_options())
    if (o->get_positional()) s += (s.empty() ? "" : " ") + o->get_name(true);
  return s;
}

// ExtrasError: arguments no option or positional took (an unknown option, a stray word).
std::string extras_message(const CLI::App& top, const CLI::App& sub, const std::string& cmd, const std::string& help) {
  std::vector<std::string> args = top.remaining(true);
  std::vector<std::string> options, words;
  for (const auto& a : args) (a.size() > 1 && a[0] == '-' ? options : words).push_back(a);
  if (!options.empty()) {
    const std::string near = nearest_option(sub, options.front());
    return format_error_message({cmd, options.size() > 1 ? "unknown options" : "unknown option",
                                 "one of " + cmd + "'s options", quoted_list(options),
                                 (near.empty() ? "" : "did you mean " + near + "? ") + help});
  }
  const std::string pos = positionals_of(sub);
  return format_error_message({cmd, words.size() > 1 ? "unexpected arguments" : "unexpected argument",
                               pos.empty() ? "options only (no positional arguments)" : "positional arguments " + pos + " only",
                               quoted_list(words),
                               "a value with spaces needs quotes; " + help});
}

}  // namespace

std::string parse_error_message(const CLI::ParseError& e, const CLI::App& top, const CLI::App& sub, const std::string& cmd) {
  const std::string what = e.what(), help = "see `" + cmd + " --help`";
  static const std::string kConvert = "Could not convert: ";
  if (dynamic_cast<const CLI::ConversionError*>(&e) && starts_with(what, kConvert)) {
    const std::string rest = what.substr(kConvert.size());
    const auto eq = rest.find(" = ");
    if (eq != std::string::npos) {
      const std::string name = rest.substr(0, eq), value = rest.substr(eq + 3);
      const CLI::Option* o = sub.get_option_no_throw(name);
      const std::string expected = o ? expected_of(o->get_type_name()) : "a number";
      return format_error_message({name, "not a valid value", expected, "`" + value + "`",
                                   "give " + name + (expected == "a number" ? " e.g. 0.5" : " e.g. 8") + "; " + help});
    }
  }
  if (dynamic_cast<const CLI::ArgumentMismatch*>(&e)) {
    static const std::string kAtMost = ": At Most ", kReceived = " required but received ", kMissing = " missing";
    const auto p = what.find(kAtMost), r = what.find(kReceived);
    if (p != std::string::npos && r != std::string::npos) {
      const std::string name = what.substr(0, p), at_most = what.substr(p + kAtMost.size(), r - p - kAtMost.size());
      const std::string got = what.substr(r + kReceived.size());
      return format_error_message({name, "given more than once", at_most == "1" ? "once" : "at most " + at_most + " values",
                                   got + " times", "give " + name + " once (repeat only the options whose --help says "
                                   "repeatable); " + help});
    }
    // "--port: 1 required INT missing": the option ended the command line (or was given as --port=).
    const auto colon = what.find(": ");
    if (colon != std::string::npos && what.size() > kMissing.size() &&
        what.compare(what.size() - kMissing.size(), kMissing.size(), kMissing) == 0) {
      const std::string name = what.substr(0, colon);
      const CLI::Option* o = sub.get_option_no_throw(name);
      const std::string expected = o ? expected_of(o->get_type_name()) : "a value";
      const std::string example = expected == "a number" ? "0.5" : expected == "a non-negative decimal integer" ? "8" : "";
      return format_error_message({name, "value missing", expected, "nothing",
                                   "put the value after " + name + (example.empty() ? "" : " (e.g. " + name + " " + example + ")") +
                                       "; " + help});
    }
  }
  if (dynamic_cast<const CLI::ExtrasError*>(&e)) return extras_message(top, sub, cmd, help);
  // count_validator's text is already "<flag>: <what> (expected ..., found ...). Hint: ...".
  if (dynamic_cast<const CLI::ValidationError*>(&e) && what.find(". Hint: ") != std::string::npos) return what + "; " + help;
  return what + ". Hint: " + help;
}

}  // namespace vlq::cli
