// Exclusion/target pattern matching (exact, substring, fnmatch, `re:`); see include/vlq/formats/patterns.h.
#include "vlq/formats/patterns.h"

#include <algorithm>
#include <map>
#include <memory>
#include <regex>

#include "vlq/core/error.h"

namespace vlq::formats {

std::string_view match_mode_name(MatchMode m) noexcept {
  switch (m) {
    case MatchMode::kExact: return "exact";
    case MatchMode::kSubstring: return "substring";
    case MatchMode::kFnmatch: return "fnmatch";
    case MatchMode::kRegexMatch: return "re.match";
    case MatchMode::kRegexFullmatch: return "re.fullmatch";
    case MatchMode::kRegexSearch: return "re.search";
  }
  return "?";
}

bool is_regex_entry(std::string_view entry) noexcept { return entry.substr(0, 3) == "re:"; }

std::string_view regex_body(std::string_view entry) noexcept {
  return is_regex_entry(entry) ? entry.substr(3) : entry;
}

bool has_wildcard(std::string_view entry) noexcept {
  return entry.find_first_of("*?[") != std::string_view::npos;
}

namespace {

// Matches one `[...]` set starting at pattern[i] == '['. Returns the index after the closing ']' and
// whether `c` is in the set; returns npos when the set is unterminated (then '[' is a literal).
std::size_t match_set(std::string_view p, std::size_t i, char c, bool& hit) {
  std::size_t j = i + 1;
  bool negate = false;
  if (j < p.size() && p[j] == '!') {
    negate = true;
    ++j;
  }
  std::size_t start = j;
  // A ']' right after '[' or '[!' is a literal member (Python fnmatch.translate).
  if (j < p.size() && p[j] == ']') ++j;
  while (j < p.size() && p[j] != ']') ++j;
  if (j >= p.size()) return std::string_view::npos;
  bool in = false;
  for (std::size_t k = start; k < j; ++k) {
    if (k + 2 < j && p[k + 1] == '-') {
      if (p[k] <= c && c <= p[k + 2]) in = true;
      k += 2;
    } else if (p[k] == c) {
      in = true;
    }
  }
  hit = negate ? !in : in;
  return j + 1;
}

}  // namespace

bool fnmatch_case(std::string_view p, std::string_view s) {
  // Iterative matcher with single-star backtracking (sufficient because `*` matches any run).
  std::size_t pi = 0, si = 0;
  std::size_t star_p = std::string_view::npos, star_s = 0;
  while (si < s.size()) {
    if (pi < p.size()) {
      char pc = p[pi];
      if (pc == '*') {
        star_p = pi++;
        star_s = si;
        continue;
      }
      if (pc == '?') {
        ++pi;
        ++si;
        continue;
      }
      if (pc == '[') {
        bool hit = false;
        std::size_t next = match_set(p, pi, s[si], hit);
        if (next == std::string_view::npos) {
          if (s[si] == '[') {
            ++pi;
            ++si;
            continue;
          }
        } else if (hit) {
          pi = next;
          ++si;
          continue;
        }
      } else if (pc == s[si]) {
        ++pi;
        ++si;
        continue;
      }
    }
    if (star_p == std::string_view::npos) return false;
    pi = star_p + 1;
    si = ++star_s;
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

namespace {

const std::regex& compiled(std::string_view body) {
  thread_local std::map<std::string, std::unique_ptr<std::regex>, std::less<>> cache;
  auto it = cache.find(body);
  if (it != cache.end()) return *it->second;
  std::unique_ptr<std::regex> re;
  try {
    re = std::make_unique<std::regex>(std::string(body), std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw ConfigError({"re:" + std::string(body), "regular expression does not compile", "",
                       e.what(), "use ECMAScript/Python-compatible syntax without inline flags"});
  }
  auto& ref = *re;
  cache.emplace(std::string(body), std::move(re));
  return ref;
}

}  // namespace

std::string regex_error(std::string_view regex) {
  try {
    compiled(regex);
    return {};
  } catch (const ConfigError& e) {
    return e.info().found;
  }
}

bool regex_test(std::string_view regex, std::string_view name, MatchMode mode) {
  const std::regex& re = compiled(regex);
  std::string s(name);
  switch (mode) {
    case MatchMode::kRegexFullmatch: return std::regex_match(s, re);
    case MatchMode::kRegexSearch: return std::regex_search(s, re);
    case MatchMode::kRegexMatch:
      return std::regex_search(s, re, std::regex_constants::match_continuous);
    default: break;
  }
  throw std::logic_error("regex_test: not a regex mode");
}

bool entry_matches(std::string_view entry, std::string_view name, MatchMode mode) {
  switch (mode) {
    case MatchMode::kExact: return entry == name;
    case MatchMode::kSubstring: return name.find(entry) != std::string_view::npos;
    case MatchMode::kFnmatch: return fnmatch_case(entry, name);
    case MatchMode::kRegexMatch:
    case MatchMode::kRegexFullmatch:
    case MatchMode::kRegexSearch: return regex_test(regex_body(entry), name, mode);
  }
  return false;
}

int first_match(const std::vector<std::string>& entries, std::string_view name, const MatchPolicy& policy) {
  constexpr std::string_view kLm = "language_model.";
  const bool strip = policy.strip_language_model && name.substr(0, kLm.size()) == kLm;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const std::string& e = entries[i];
    auto test = [&](std::string_view n) {
      if (is_regex_entry(e) && policy.regex_entries != MatchMode::kExact) {
        try {
          return entry_matches(e, n, policy.regex_entries);
        } catch (const ConfigError&) {
          return false;
        }
      }
      for (MatchMode m : policy.plain_entries)
        if (entry_matches(e, n, m)) return true;
      return false;
    };
    if (test(name) || (strip && test(name.substr(kLm.size())))) return static_cast<int>(i);
  }
  return -1;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace vlq::formats
