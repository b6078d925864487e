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
  EXPECT_TRUE(has(p.err, "--port: not a valid value (expected an integer, found `abc`)")) << p.err;
  EXPECT_TRUE(has(p.err, "vlq serve --help")) << p.err;
  auto f = run_vlq("quantize " + q(kModel) + " /nonexistent/out --max-kl x");
  EXPECT_EQ(f.rc, 64) << f.err;
  EXPECT_TRUE(has(f.err, "--max-kl: not a valid value (expected a number, found `x`)")) << f.err;
  auto r = run_vlq("serve --model " + q(kModel) + " --port 1 --port 2");
  EXPECT_EQ(r.rc, 64) << r.err;
  EXPECT_FALSE(has(r.err, "At Most")) << r.err;
  EXPECT_TRUE(has(r.err, "--port: given more than once (expected once, found 2 times)")) << r.err;
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
