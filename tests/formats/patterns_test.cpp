// Tests for exclusion-pattern matching: fnmatch, `re:` (re.match vs fullmatch), substring, policies.
#include <gtest/gtest.h>

#include "vlq/core/error.h"
#include "vlq/formats/patterns.h"

using namespace vlq::formats;

TEST(Patterns, FnmatchFollowsPythonFnmatchcase) {
  EXPECT_TRUE(fnmatch_case("model.visual*", "model.visual"));
  EXPECT_TRUE(fnmatch_case("model.visual*", "model.visual.blocks.0.attn.qkv"));
  EXPECT_TRUE(fnmatch_case("model.visual*", "model.visualizer"));  // no dot boundary in fnmatch
  EXPECT_FALSE(fnmatch_case("model.visual*", "visual.blocks.0.attn.qkv"));
  EXPECT_TRUE(fnmatch_case("*lm_head*", "language_model.lm_head"));
  EXPECT_TRUE(fnmatch_case("layers.?.mlp", "layers.7.mlp"));
  EXPECT_FALSE(fnmatch_case("layers.?.mlp", "layers.17.mlp"));
  EXPECT_TRUE(fnmatch_case("layers.[0-3].mlp", "layers.2.mlp"));
  EXPECT_FALSE(fnmatch_case("layers.[!0-3].mlp", "layers.2.mlp"));
  EXPECT_TRUE(fnmatch_case("a[b", "a[b"));  // unterminated set is a literal '['
  EXPECT_TRUE(fnmatch_case("*", ""));
  EXPECT_FALSE(fnmatch_case("a*b*c", "a.b.d"));
  EXPECT_TRUE(fnmatch_case("a*b*c", "axxbyyc"));
}

TEST(Patterns, RegexEntriesUsePythonReMatchAnchoring) {
  // re.match anchors at the start only: `re:visual.*` misses model.visual.* (F10/F11).
  EXPECT_TRUE(entry_matches("re:visual.*", "visual.merger.mlp.0", MatchMode::kRegexMatch));
  EXPECT_FALSE(entry_matches("re:visual.*", "model.visual.merger.mlp.0", MatchMode::kRegexMatch));
  EXPECT_TRUE(entry_matches("re:.*visual.*", "model.visual.merger.mlp.0", MatchMode::kRegexMatch));
  EXPECT_TRUE(entry_matches("re:.*lm_head", "lm_head", MatchMode::kRegexMatch));
  // re.match may stop early; fullmatch may not.
  EXPECT_TRUE(entry_matches("re:model", "model.layers.0", MatchMode::kRegexMatch));
  EXPECT_FALSE(entry_matches("re:model", "model.layers.0", MatchMode::kRegexFullmatch));
  EXPECT_TRUE(entry_matches("re:layers", "model.layers.0", MatchMode::kRegexSearch));
  EXPECT_THROW(entry_matches("re:(unclosed", "x", MatchMode::kRegexMatch), vlq::ConfigError);
  EXPECT_FALSE(regex_error("(unclosed").empty());
  EXPECT_TRUE(regex_error(".*visual.*").empty());
}

TEST(Patterns, SubstringPolicyTreatsWildcardLiterally) {
  // vLLM 0.10 ModelOpt: `pattern in prefix`; the literal `model.visual*` never matches (§2.2).
  MatchPolicy vllm010{MatchMode::kExact, {MatchMode::kSubstring}, true};
  std::vector<std::string> excl = {"model.visual*", "lm_head"};
  EXPECT_EQ(first_match(excl, "visual.blocks.0.attn.qkv", vllm010), -1);
  EXPECT_EQ(first_match(excl, "language_model.lm_head", vllm010), 1);
  std::vector<std::string> plain = {"visual"};
  EXPECT_EQ(first_match(plain, "visual.blocks.0.attn.qkv", vllm010), 0);
  // The language_model. strip: "model.layers.0" is found in "language_model.model.layers.0.mlp".
  std::vector<std::string> lm = {"model.layers.0.mlp"};
  EXPECT_EQ(first_match(lm, "language_model.model.layers.0.mlp.down_proj", vllm010), 0);
}

TEST(Patterns, CompressedTensorsPolicyExactOrReMatch) {
  MatchPolicy ct{MatchMode::kRegexMatch, {MatchMode::kExact}, false};
  std::vector<std::string> ignore = {"lm_head", "re:visual.*", "model.visual.merger.mlp.0"};
  EXPECT_EQ(first_match(ignore, "lm_head", ct), 0);
  EXPECT_EQ(first_match(ignore, "visual.blocks.0.attn.qkv", ct), 1);
  EXPECT_EQ(first_match(ignore, "model.visual.merger.mlp.0", ct), 2);
  EXPECT_EQ(first_match(ignore, "model.visual.merger.mlp.2", ct), -1);
  // A regex that does not compile never matches (reported separately by the checker).
  std::vector<std::string> bad = {"re:(x"};
  EXPECT_EQ(first_match(bad, "x", ct), -1);
}

TEST(Patterns, EditDistance) {
  EXPECT_EQ(edit_distance("attn.qkv_proj", "attn.qkv"), 5u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("same", "same"), 0u);
}
