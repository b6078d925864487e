// Exclusion/target pattern matching exactly as producers and runtimes evaluate their lists: exact
// names, shell wildcards (Python fnmatch), `re:` regular expressions, and vLLM 0.10's substring test.
// Spec: ../shared/docs/fp8-checkpoint-formats.md §2.2 (VL-0.10 substring `is_layer_excluded`), §2.8
// (fnmatch + exact fused-aware matching, `name*` split), §3.1/§3.5 (compressed-tensors `re:` entries,
// anchored at the start: Python `re.match`).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace vlq::formats {

// How one written entry of an exclude / ignore / targets list is compared with a module name.
enum class MatchMode {
  kExact,           // entry == name
  kSubstring,       // entry occurs anywhere in name (`entry in name`, vLLM 0.10 ModelOpt)
  kFnmatch,         // Python fnmatch.fnmatchcase: `*`, `?`, `[seq]`, `[!seq]`; whole name
  kRegexMatch,      // Python re.match(body, name): anchored at the start, may stop before the end
  kRegexFullmatch,  // Python re.fullmatch(body, name)
  kRegexSearch,     // Python re.search(body, name)
};

// The text of `m`, e.g. "fnmatch".
std::string_view match_mode_name(MatchMode m) noexcept;

// True when `entry` is a regular-expression entry (`re:` prefix, the compressed-tensors convention).
bool is_regex_entry(std::string_view entry) noexcept;
// The regular expression of a `re:` entry (the text after `re:`); the entry itself otherwise.
std::string_view regex_body(std::string_view entry) noexcept;
// True when a plain entry contains a shell-wildcard character (`*`, `?` or `[`).
bool has_wildcard(std::string_view entry) noexcept;

// Python fnmatch.fnmatchcase(name, pattern): `*` matches any run (including dots), `?` one character,
// `[abc]` / `[a-z]` / `[!abc]` one character of (not of) the set; an unterminated `[` is literal.
bool fnmatch_case(std::string_view pattern, std::string_view name);

// Regular-expression test with std::regex (ECMAScript grammar). Python's `re` and ECMAScript agree on
// the constructs used in real ignore lists (`.`, `*`, `+`, `?`, `|`, groups, classes, `$`, lookahead);
// Python-only syntax (inline flags `(?i)`, named groups `(?P<..>)`) is not supported.
// `mode` must be one of the three regex modes. Throws vlq::ConfigError naming the entry when the
// expression does not compile. Compiled expressions are cached per thread.
bool regex_test(std::string_view regex, std::string_view name, MatchMode mode);

// Checks that a `re:` entry compiles; returns an empty string when it does, else the reason.
std::string regex_error(std::string_view regex);

// One entry against one name under one mode. For the regex modes the entry's `re:` prefix (if any)
// is stripped first. Throws vlq::ConfigError for a regex that does not compile.
bool entry_matches(std::string_view entry, std::string_view name, MatchMode mode);

// How a runtime or producer evaluates a whole list.
//   regex_entries: mode for `re:` entries (a regex mode), or kExact to take them literally (ModelOpt
//                  has no `re:` convention: such an entry is then compared as written).
//   plain_entries: modes tried in order for every other entry; any hit matches.
//   strip_language_model: also test the name with a leading "language_model." removed (vLLM's
//                  ModelOpt substring test does this).
struct MatchPolicy {
  MatchMode regex_entries = MatchMode::kRegexMatch;
  std::vector<MatchMode> plain_entries{MatchMode::kExact};
  bool strip_language_model = false;
};

// Index of the first entry of `entries` that matches `name` under `policy`, or -1.
// Entries whose regex does not compile never match (the checker reports them separately).
int first_match(const std::vector<std::string>& entries, std::string_view name, const MatchPolicy& policy);

// Levenshtein edit distance (bytes); used to suggest the closest module for an entry that matches nothing.
std::size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace vlq::formats
