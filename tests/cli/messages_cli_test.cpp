// End-to-end tests of the messages a new user met: an unknown command, hints that name the real flags (--for,
// --vision-kv-scales), --pad (a usage error, with help that points nowhere else), and convert's exclusion line
// (each entry once, the target-only entry explained). Each checks the message and the exit code.
#include <algorithm>
#include <regex>

#include "cli/cli_test_util.h"

namespace {

using namespace vlq::clitest;

const fs::path kRefExports = kRoot / "tests/data/ref_exports";
const std::string kFast = " --samples 4 --seq-len 64 -q";

TEST(MessagesCli, UnknownCommandIsNamedAndTheCommandsListed) {
  auto r = run_vlq("plan");
  EXPECT_EQ(r.rc, 64) << r.err;
  EXPECT_TRUE(has(r.err, "unknown command `plan`")) << r.err;
  EXPECT_FALSE(has(r.err, "subcommand is required")) << r.err;
  for (const char* c : {"check", "convert", "eval", "generate", "inspect", "quantize"})
    EXPECT_TRUE(has(r.err, c)) << c << " not listed: " << r.err;
  auto none = run_vlq("");
  EXPECT_EQ(none.rc, 64) << none.err;
  EXPECT_TRUE(has(none.err, "a command is required")) << none.err;
  EXPECT_TRUE(has(none.err, "quantize")) << none.err;
  auto known = run_vlq("quantize");  // a known command keeps its own message
  EXPECT_EQ(known.rc, 64) << known.err;
  EXPECT_TRUE(has(known.err, "vlq quantize --help")) << known.err;
}

TEST(MessagesCli, PadIsAUsageErrorAndItsHelpPointsNowhereElse) {
  Scratch s("msg");
  auto r = run_vlq("quantize " + q(kModel) + " " + q(s / "out") + " --calib-text " + q(kCalib / "text.jsonl") + " --pad" + kFast);
  EXPECT_EQ(r.rc, 64) << r.err;
  EXPECT_TRUE(has(r.err, "--pad is not supported")) << r.err;
  EXPECT_FALSE(fs::exists(s / "out"));
  auto help = run_vlq("quantize --help");
  EXPECT_EQ(help.rc, 0);
  EXPECT_TRUE(has(help.out, "--pad")) << help.out;
  EXPECT_FALSE(has(help.out, "help of plan")) << help.out;
}

TEST(MessagesCli, FailingTargetHintNamesForAndVisionKvScales) {
  Scratch s("msg");
  // A whole-VLM ModelOpt export cannot load on current vLLM; with --layout exact the exporter's own check
  // refuses it before writing.
  auto r = run_vlq("quantize " + q(kModel) + " " + q(s / "out") + " --scope vlm --calib-images " + q(kCalib / "images") +
                   " --layout exact --for vllm-latest" + kFast);
  EXPECT_EQ(r.rc, 3) << r.err;
  EXPECT_TRUE(has(r.err, "drop --for vllm-latest")) << r.err;
  EXPECT_TRUE(has(r.err, "--vision-kv-scales")) << r.err;
  EXPECT_FALSE(has(r.err, "--check")) << r.err;
  EXPECT_FALSE(has(r.err, "--vision-kv/")) << r.err;
  EXPECT_FALSE(fs::exists(s / "out"));
}

TEST(MessagesCli, VisionKvScalesHintNamesTheRealFlag) {
  Scratch s("msg");
  auto r = run_vlq("quantize " + q(kModel) + " " + q(s / "out") + " --calib-text " + q(kCalib / "text.jsonl") +
                   " --vision-kv-scales modelopt" + kFast);  // needs --scope vlm
  EXPECT_EQ(r.rc, 64) << r.err;
  EXPECT_TRUE(has(r.err, "leave --vision-kv-scales at none")) << r.err;
}

TEST(MessagesCli, ConvertListsEachExclusionOnceAndExplainsTheTargetOnlyEntry) {
  Scratch s("msg");
  auto r = run_vlq("convert " + q(kRefExports / "modelopt-vlm-fp8-kv") + " " + q(s / "out") + " --for vllm-0.10");
  ASSERT_EQ(r.rc, 0) << r.err;
  std::smatch m;
  const std::regex line(R"(exclusions set to \[([^\]]*)\](.*))");
  ASSERT_TRUE(std::regex_search(r.out, m, line)) << r.out;
  std::vector<std::string> entries;
  const std::string list = m[1];
  for (std::size_t b = 0; b <= list.size();) {
    const std::size_t e = std::min(list.find(", ", b), list.size());
    entries.push_back(list.substr(b, e - b));
    b = e + 2;
  }
  std::vector<std::string> sorted = entries;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << list;
  EXPECT_NE(std::find(entries.begin(), entries.end(), "visual*"), entries.end()) << list;
  EXPECT_NE(std::find(entries.begin(), entries.end(), "visual"), entries.end()) << list;
  // 'visual' next to 'visual*' is explained: vLLM 0.10 does not expand the wildcard.
  const std::string why = m[2];
  EXPECT_TRUE(has(why, "'visual' is for vllm-0.10")) << why;
  EXPECT_TRUE(has(why, "does not expand the wildcard")) << why;
  // For a wildcard-matching target no such entry is added.
  auto latest = run_vlq("convert " + q(kRefExports / "modelopt-vlm-fp8-kv") + " " + q(s / "latest") + " --for vllm-latest");
  ASSERT_EQ(latest.rc, 0) << latest.err;
  EXPECT_TRUE(has(latest.out, "exclusions set to [lm_head, visual*]\n")) << latest.out;
}

// KV scales all exactly 1.0 from ModelOpt 0.35 (which clamps them to >= 1.0): a warning, so `vlq check` exits 1,
// and the message says why 1.0 cannot be told from uncalibrated and how to recalibrate.
TEST(MessagesCli, ClampedKvScalesAreAWarningWithExitCode1) {
  auto r = run_vlq("check " + q(kRefExports / "modelopt-lm-fp8-kv") + " --target vlq");
  EXPECT_EQ(r.rc, 1) << r.out << r.err;
  EXPECT_TRUE(has(r.out, "[warning] kv_scales_uncalibrated")) << r.out;
  EXPECT_TRUE(has(r.out, "ModelOpt 0.35.0 clamps")) << r.out;
  EXPECT_TRUE(has(r.out, "indistinguishable from uncalibrated")) << r.out;
  EXPECT_TRUE(has(r.out, "fix: recalibrate the KV cache (vlq quantize --kv-cache fp8)")) << r.out;
  EXPECT_FALSE(has(r.out, "kv_scales_clamped")) << r.out;
  // vlq inspect notes the same.
  auto i = run_vlq("inspect " + q(kRefExports / "modelopt-lm-fp8-kv"));
  EXPECT_EQ(i.rc, 0) << i.err;
  EXPECT_TRUE(has(i.out, "kv_scales_all_one")) << i.out;
}

// The vLLM 0.10 KeyError on the ViT K/V scales: the fix says what the default convert does (dequantizes the 12
// FP8 vision Linears, drops the vision K/V scales), offers --vision keep, and writes a sibling folder.
TEST(MessagesCli, VisionKvKeyErrorHintSaysWhatConvertDoes) {
  Scratch s("msg");
  const fs::path in = kRefExports / "modelopt-vlm-fp8-kv";
  auto r = run_vlq("check " + q(in) + " --target vllm-0.10");
  EXPECT_EQ(r.rc, 2) << r.out << r.err;
  const std::string sibling = in.string() + "-vllm-0.10";
  EXPECT_TRUE(has(r.out, "fix: vlq convert " + in.string() + " " + sibling + " --for vllm-0.10 (dequantizes the 12 "
                         "FP8 vision Linears to BF16 and drops the vision K/V scales; --vision keep keeps them FP8 "
                         "and only drops the vision K/V scales)"))
      << r.out;
  // A .safetensors file names its folder: the output is still a sibling of the folder.
  auto f = run_vlq("check " + q(in / "model.safetensors") + " --target vllm-0.10");
  EXPECT_TRUE(has(f.out, "fix: vlq convert " + in.string() + " " + sibling + " --for vllm-0.10")) << f.out;
  // --vision keep as the hint says: the FP8 vision Linears stay, the output loads on vLLM 0.10.
  auto k = run_vlq("convert " + q(in) + " " + q(s / "keep") + " --for vllm-0.10 --vision keep");
  ASSERT_EQ(k.rc, 0) << k.err;
  EXPECT_FALSE(has(k.out, "dequantized")) << k.out;
  EXPECT_TRUE(has(k.out, "dropped visual.blocks.0.attn.k_proj.k_scale")) << k.out;
  auto c = run_vlq("check " + q(s / "keep") + " --target vllm-0.10 --json");
  EXPECT_NE(c.rc, 2) << c.out;
  EXPECT_TRUE(has(c.out, "\"vision_fp8_linears\": 12")) << c.out;
}

}  // namespace

namespace {
// Found by a new-user attack run (2026-12-06): each was accepted with exit 0 or misreported.
TEST(MessagesCli, AttackRunFindingsGetUsageErrorsOrTheRightMessage) {
  Scratch s("attack");
  // convert of a missing input said "output folder is inside the input folder" (exit 64).
  auto c = run_vlq("convert " + q(s / "nope") + " " + q(s / "out") + " --for vllm-0.10");
  EXPECT_EQ(c.rc, 3) << c.err;
  EXPECT_TRUE(has(c.err, "input checkpoint not found")) << c.err;
  EXPECT_FALSE(fs::exists(s / "out"));
  // generate --max-new-tokens -1 / --temperature -1 ran with the defaults (-1 was the "not given" sentinel).
  for (const char* flag : {"--max-new-tokens", "--temperature"}) {
    auto g = run_vlq("generate --model " + q(kModel) + " --prompt hi --device cpu " + flag + " -1");
    EXPECT_EQ(g.rc, 64) << flag << ": " << g.err;
    EXPECT_TRUE(has(g.err, flag)) << g.err;
  }
  // eval --limit -1 evaluated everything.
  auto e = run_vlq("eval --reference " + q(kModel) + " --model " + q(kModel) + " --limit -1");
  EXPECT_EQ(e.rc, 64) << e.err;
  EXPECT_TRUE(has(e.err, "--limit")) << e.err;
  // serve --drain-timeout -3 started; --max-body-mb 0 did not say which flag or what was found.
  auto d = run_vlq("serve --model " + q(kModel) + " --device cpu --drain-timeout -3");
  EXPECT_EQ(d.rc, 64) << d.err;
  EXPECT_TRUE(has(d.err, "--drain-timeout")) << d.err;
  auto b = run_vlq("serve --model " + q(kModel) + " --device cpu --max-body-mb 0");
  EXPECT_EQ(b.rc, 64) << b.err;
  EXPECT_TRUE(has(b.err, "--max-body-mb")) << b.err;
  EXPECT_FALSE(has(b.err, "--max-image-mb")) << b.err;
}
}  // namespace

namespace {
// Found by a new-user attack run (2026-12-06, second batch): CLI11's own text for a non-number and a repeated
// option, check --matrix of a missing folder exiting 0, inspect of a folder without config.json exiting 0
// while check says invalid, and an empty config.json reported as "parse error at byte 1".
TEST(MessagesCli, ParseErrorsNameTheFlagExpectedAndFound) {
  auto p = run_vlq("serve --model " + q(kModel) + " --port abc");
  EXPECT_EQ(p.rc, 64) << p.err;
  EXPECT_FALSE(has(p.err, "Could not convert")) << p.err;
  EXPECT_TRUE(has(p.err, "--port: not a valid value (expected a non-negative decimal integer, found `abc`)")) << p.err;
  EXPECT_TRUE(has(p.err, "vlq serve --help")) << p.err;
  auto f = run_vlq("quantize " + q(kModel) + " /nonexistent/out --max-kl x");
  EXPECT_EQ(f.rc, 64) << f.err;
  EXPECT_TRUE(has(f.err, "--max-kl: not a valid value (expected a finite decimal number, found `x`)")) << f.err;
  auto r = run_vlq("serve --model " + q(kModel) + " --port 1 --port 2");
  EXPECT_EQ(r.rc, 64) << r.err;
  EXPECT_FALSE(has(r.err, "At Most")) << r.err;
  EXPECT_TRUE(has(r.err, "--port: given more than once (expected once, found 2 times)")) << r.err;
}

// docs/robustness.md's open findings: an integer flag went through CLI11's strtoull/strtoll in base 0, so `-3`
// wrapped to 2^64 - 3 (`--samples -3` used every sample), `0x10` was 16 and `010` octal 8; a missing value and an
// unknown option kept CLI11's wording. Every integer flag of every command is declared by cli::add_count_option.
TEST(MessagesCli, CountFlagsTakeDecimalDigitsOnly) {
  const std::string quant = "quantize " + q(kModel) + " /nonexistent/out ";
  const std::string serve = "serve --model " + q(kModel) + " ";
  const std::string gen = "generate --model " + q(kModel) + " --prompt hi --device cpu ";
  const std::string eval = "eval --reference " + q(kModel) + " --model " + q(kModel) + " ";
  struct Case {
    std::string args, message, help;
  };
  const std::vector<Case> cases = {
      {quant + "--samples -3", "--samples: not a valid value (expected a non-negative decimal integer, found `-3` (a negative number))", "vlq quantize --help"},
      {quant + "--samples=-3", "--samples: not a valid value (expected a non-negative decimal integer, found `-3` (a negative number))", "vlq quantize --help"},
      {quant + "--seq-len 0x10", "--seq-len: not a valid value (expected a non-negative decimal integer, found `0x10` (hexadecimal))", "vlq quantize --help"},
      {quant + "--seed -1", "--seed: not a valid value (expected a non-negative decimal integer, found `-1` (a negative number))", "vlq quantize --help"},
      {quant + "--samples 99999999999999999999999", "--samples: value out of range (expected at most 18446744073709551615, found `99999999999999999999999`)", "vlq quantize --help"},
      {quant + "--auto-samples +4", "--auto-samples: not a valid value (expected a non-negative decimal integer, found `+4` (a sign))", "vlq quantize --help"},
      {serve + "--max-num-seqs -1", "--max-num-seqs: not a valid value (expected a non-negative decimal integer, found `-1` (a negative number))", "vlq serve --help"},
      {serve + "--port 0x1F90", "--port: not a valid value (expected a non-negative decimal integer, found `0x1F90` (hexadecimal))", "vlq serve --help"},
      {serve + "--port 99999999999", "--port: value out of range (expected at most 65535, found `99999999999`)", "vlq serve --help"},
      {serve + "--max-body-mb 1e3", "--max-body-mb: not a valid value (expected a non-negative decimal integer, found `1e3` (not a whole number))", "vlq serve --help"},
      {gen + "--max-new-tokens 0x10", "--max-new-tokens: not a valid value (expected a non-negative decimal integer, found `0x10` (hexadecimal))", "vlq generate --help"},
      {gen + "--seed -5", "--seed: not a valid value (expected a non-negative decimal integer, found `-5` (a negative number))", "vlq generate --help"},
      {gen + "--top-k ' 3'", "--top-k: not a valid value (expected a non-negative decimal integer, found ` 3`)", "vlq generate --help"},
      {eval + "--limit 0x10", "--limit: not a valid value (expected a non-negative decimal integer, found `0x10` (hexadecimal))", "vlq eval --help"},
      {eval + "--text-limit -2", "--text-limit: not a valid value (expected a non-negative decimal integer, found `-2` (a negative number))", "vlq eval --help"},
      {"inspect " + q(kModel) + " --max-examples 2000000", "--max-examples: value out of range (expected at most 1000000, found `2000000`)", "vlq inspect --help"},
      {"inspect " + q(kModel) + " --max-examples -3", "--max-examples: not a valid value (expected a non-negative decimal integer, found `-3` (a negative number))", "vlq inspect --help"},
  };
  for (const auto& c : cases) {
    auto r = run_vlq(c.args);
    EXPECT_EQ(r.rc, 64) << c.args << ": " << r.err;
    EXPECT_TRUE(has(r.err, c.message)) << c.args << ": " << r.err;
    EXPECT_TRUE(has(r.err, "Hint: give ")) << c.args << ": " << r.err;
    EXPECT_TRUE(has(r.err, c.help)) << c.args << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c.args << ": one line: " << r.err;
  }
  // Decimal digits are read as decimal: `010` is ten (CLI11 alone read octal 8), as Python's int() reads it.
  auto e = run_vlq(eval + "--tasks " + q(kHeldout / "heldout.jsonl") + " --limit 010 --no-generate --device cpu --json -q");
  ASSERT_EQ(e.rc, 0) << e.err;
  const json j = json::parse(e.out);
  EXPECT_EQ(j["task_items"], 10) << e.out.substr(0, 2000);
}

// Floating-point flags went through CLI11's strtold: `--temperature nan` / `inf` sampled garbage, `--top-p 0x1p-1`
// was 0.5, and `--shard-gb -1` wrapped to a huge shard size. Every one is declared by cli::add_number_option.
TEST(MessagesCli, NumberFlagsTakeFiniteDecimalsOnly) {
  const std::string gen = "generate --model " + q(kModel) + " --prompt hi --device cpu --max-new-tokens 1 -q ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {gen + "--temperature nan", "--temperature: not a valid value (expected a finite decimal number, found `nan`)"},
      {gen + "--temperature inf", "--temperature: not a valid value (expected a finite decimal number, found `inf`)"},
      {gen + "--top-p 0x1p-1", "--top-p: not a valid value (expected a finite decimal number, found `0x1p-1` (hexadecimal))"},
      {gen + "--repetition-penalty 1e999", "--repetition-penalty: value out of range (expected a finite decimal number, found `1e999` (overflows a double))"},
      {"quantize " + q(kModel) + " /nonexistent/out --auto-precision --max-kl -inf", "--max-kl: not a valid value (expected a finite decimal number, found `-inf`)"},
      {"serve --model " + q(kModel) + " --drain-timeout 1.5s", "--drain-timeout: not a valid value (expected a finite decimal number, found `1.5s`)"},
      {"convert " + q(kModel) + " /nonexistent/out --for vlq --shard-gb NaN", "--shard-gb: not a valid value (expected a finite decimal number, found `NaN`)"},
      {"convert " + q(kModel) + " /nonexistent/out --for vlq --shard-gb -1", "--shard-gb: value out of range (expected 0 <= GB <= 1e9 (0 = one file; default 5), found -1)"},
  };
  for (const auto& [args, message] : cases) {
    auto r = run_vlq(args);
    EXPECT_EQ(r.rc, 64) << args << ": " << r.err;
    EXPECT_TRUE(has(r.err, message)) << args << ": " << r.err;
    EXPECT_TRUE(has(r.err, "Hint: ")) << args << ": " << r.err;
  }
  // Decimal spellings without a leading or trailing digit are numbers.
  auto ok = run_vlq(gen + "--temperature .5 --top-p 1. --repetition-penalty 1e0 --seed 3");
  EXPECT_EQ(ok.rc, 0) << ok.err;
}

// The rest of CLI11's wording a new user meets: a flag without its value, an unknown (mistyped) option, and a
// stray word (an unquoted prompt).
TEST(MessagesCli, MissingValueAndUnknownOptionNameTheFlag) {
  auto m = run_vlq("serve --model " + q(kModel) + " --port");
  EXPECT_EQ(m.rc, 64) << m.err;
  EXPECT_FALSE(has(m.err, "required INT missing")) << m.err;
  EXPECT_TRUE(has(m.err, "--port: value missing (expected a non-negative decimal integer, found nothing). Hint: put the "
                         "value after --port (e.g. --port 8); see `vlq serve --help`")) << m.err;
  auto t = run_vlq("eval --reference " + q(kModel) + " --model");
  EXPECT_EQ(t.rc, 64) << t.err;
  EXPECT_TRUE(has(t.err, "--model: value missing (expected a value, found nothing)")) << t.err;
  auto u = run_vlq("quantize " + q(kModel) + " /nonexistent/out --sample 4");
  EXPECT_EQ(u.rc, 64) << u.err;
  EXPECT_FALSE(has(u.err, "was not expected")) << u.err;
  EXPECT_TRUE(has(u.err, "vlq quantize: unknown option (expected one of vlq quantize's options, found `--sample`). "
                         "Hint: did you mean --samples? see `vlq quantize --help`")) << u.err;
  auto n = run_vlq("serve --model " + q(kModel) + " --max-num-seq=4 --bogus-thing");
  EXPECT_EQ(n.rc, 64) << n.err;
  EXPECT_TRUE(has(n.err, "unknown options (expected one of vlq serve's options, found `--max-num-seq=4`, `--bogus-thing`)"))
      << n.err;
  EXPECT_TRUE(has(n.err, "did you mean --max-num-seqs?")) << n.err;
  auto w = run_vlq("generate --model " + q(kModel) + " --prompt What color is it");
  EXPECT_EQ(w.rc, 64) << w.err;
  EXPECT_TRUE(has(w.err, "vlq generate: unexpected arguments (expected options only (no positional arguments), found "
                         "`color`, `is`, `it`)")) << w.err;
  EXPECT_TRUE(has(w.err, "needs quotes")) << w.err;
  auto x = run_vlq("convert a b c --for vlq");
  EXPECT_EQ(x.rc, 64) << x.err;
  EXPECT_TRUE(has(x.err, "expected positional arguments input output only, found `c`")) << x.err;
}

TEST(MessagesCli, MissingFolderOrConfigIsInvalidForMatrixAndInspect) {
  Scratch s("attack2");
  auto m = run_vlq("check --matrix --targets vlq " + q(s / "nope") + " " + q(kModel));
  EXPECT_EQ(m.rc, 3) << m.err;
  EXPECT_TRUE(has(m.out, "qwen2_5_vl-tiny-trained")) << m.out;  // the table is still printed
  EXPECT_TRUE(has(m.err, (s / "nope").string())) << m.err;
  auto ok = run_vlq("check --matrix --targets vlq " + q(kModel));
  EXPECT_EQ(ok.rc, 0) << ok.err;

  const fs::path d = s / "noconfig";
  fs::create_directories(d);
  fs::copy_file(kModel / "model.safetensors", d / "model.safetensors");
  auto c = run_vlq("check " + q(d) + " --target vlq");
  EXPECT_EQ(c.rc, 3) << c.out;
  auto i = run_vlq("inspect " + q(d));
  EXPECT_EQ(i.rc, 3) << i.err;
  EXPECT_TRUE(has(i.out, "no_config")) << i.out;  // the summary is still printed
  EXPECT_TRUE(has(i.err, "config.json")) << i.err;

  std::ofstream(d / "config.json") << "";
  auto e = run_vlq("inspect " + q(d));
  EXPECT_EQ(e.rc, 3) << e.err;
  EXPECT_TRUE(has(e.err, "the file is empty")) << e.err;
  EXPECT_FALSE(has(e.err, "parse error")) << e.err;
}
}  // namespace
