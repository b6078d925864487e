// End-to-end tests of `vlq eval`: a small run (BF16 reference vs an FP8 export made by `vlq quantize`,
// JSON schema), missing task/text files, a reference with another vocabulary, --per-layer with two
// models, --data text without --text, and an unwritable --json-out.
#include "cli/cli_test_util.h"

namespace {

using namespace vlq::clitest;

// One FP8 export shared by the suite (LM-only, 4 text samples: about a second).
class EvalCli : public ::testing::Test {
 protected:
  static fs::path dir_, fp8_;
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("vlq_cli_eval_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fp8_ = dir_ / "fp8";
    auto r = run_vlq("quantize " + q(kModel) + " " + q(fp8_) + " --calib-text " + q(kCalib / "text.jsonl") +
                 " --samples 4 --seq-len 64 -q");
    ASSERT_EQ(r.rc, 0) << r.err;
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  static std::string base() { return "eval --reference " + q(kModel) + " --model " + q(fp8_) + " "; }
};
fs::path EvalCli::dir_, EvalCli::fp8_;

TEST_F(EvalCli, SmallRunPrintsJson) {
  auto r = run_vlq(base() + "--tasks " + q(kHeldout / "heldout.jsonl") + " --limit 2 --max-new-tokens 8 --text " +
               q(kCalib / "text.jsonl") + " --text-limit 2 --json -q");
  ASSERT_EQ(r.rc, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["schema"], "vlq.eval/1");
  EXPECT_EQ(j["task_items"], 2);
  EXPECT_EQ(j["text_samples"], 2);
  ASSERT_EQ(j["models"].size(), 2u);  // reference row + the FP8 model
}

TEST_F(EvalCli, MissingInputFiles) {
  auto t = run_vlq(base() + "--tasks " + q(dir_ / "nothere.jsonl"));
  EXPECT_EQ(t.rc, 3) << t.err;
  EXPECT_TRUE(has(t.err, "nothere.jsonl")) << t.err;
  EXPECT_TRUE(has(t.err, "not found")) << t.err;
  auto x = run_vlq(base() + "--text " + q(dir_ / "nothere.txt"));
  EXPECT_EQ(x.rc, 3) << x.err;
  EXPECT_TRUE(has(x.err, "nothere.txt")) << x.err;
  auto m = run_vlq("eval --reference " + q(kModel) + " --model " + q(dir_ / "nomodel") + " --text " +
               q(kCalib / "text.jsonl"));
  EXPECT_EQ(m.rc, 3) << m.err;
  EXPECT_TRUE(has(m.err, "nomodel")) << m.err;
}

TEST_F(EvalCli, ReferenceWithAnotherVocabulary) {
  // tests/data/tiny/qwen2_5_vl-bf16-hf452 has vocab 512 (and a tokenizer); the trained model has 2048.
  auto r = run_vlq("eval --reference " + q(kRoot / "tests/data/tiny/qwen2_5_vl-bf16-hf452") + " --model " + q(kModel) +
               " --tasks " + q(kHeldout / "heldout.jsonl") + " --limit 2 -q");
  EXPECT_EQ(r.rc, 64) << r.err;
  EXPECT_TRUE(has(r.err, "different vocabularies")) << r.err;
  EXPECT_TRUE(has(r.err, "512")) << r.err;
  EXPECT_TRUE(has(r.err, "2048")) << r.err;
  EXPECT_TRUE(has(r.err, "Hint:")) << r.err;
  // The ref export base-bf16 (vocab 512 too) has no tokenizer.json: that is what gets reported.
  auto b = run_vlq("eval --reference " + q(kRoot / "tests/data/ref_exports/base-bf16") + " --model " + q(kModel) +
               " --tasks " + q(kHeldout / "heldout.jsonl") + " --limit 2 -q");
  EXPECT_EQ(b.rc, 3) << b.err;
  EXPECT_TRUE(has(b.err, "tokenizer.json")) << b.err;
}

TEST_F(EvalCli, PerLayerNeedsExactlyOneModel) {
  auto r = run_vlq(base() + "--model " + q(fp8_) + " --per-layer --tasks " + q(kHeldout / "heldout.jsonl") +
               " --limit 1 --no-generate -q");
  EXPECT_EQ(r.rc, 64) << r.err;
  EXPECT_TRUE(has(r.err, "--per-layer")) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

// BUG (late check): the --per-layer usage error comes only after both models were loaded and the whole
// evaluation ran (15 s for 4 items on the demo machine). Visible here: a missing task file is reported
// first, although the command line itself is invalid.
TEST_F(EvalCli, PerLayerUsageIsCheckedBeforeAnyWork) {
  auto r = run_vlq(base() + "--model " + q(fp8_) + " --per-layer --tasks " + q(dir_ / "nothere.jsonl") + " -q");
  EXPECT_EQ(r.rc, 64) << r.err;
  EXPECT_TRUE(has(r.err, "--per-layer")) << r.err;
}

TEST_F(EvalCli, DataSelectionUsage) {
  auto t = run_vlq(base() + "--data text --tasks " + q(kHeldout / "heldout.jsonl"));
  EXPECT_EQ(t.rc, 64) << t.err;
  EXPECT_TRUE(has(t.err, "--text")) << t.err;
  auto n = run_vlq(base());
  EXPECT_EQ(n.rc, 64) << n.err;
  EXPECT_TRUE(has(n.err, "nothing to evaluate")) << n.err;
  auto b = run_vlq(base() + "--data bogus --text " + q(kCalib / "text.jsonl"));
  EXPECT_EQ(b.rc, 64) << b.err;
  EXPECT_TRUE(has(b.err, "bogus")) << b.err;
}

// BUG (silent failure): --json-out to a path that cannot be written exits 0 without a word (the
// std::ofstream is never checked), so a script believes the results were saved.
TEST_F(EvalCli, UnwritableJsonOutIsAnError) {
  write_file(dir_ / "afile", "x");
  const fs::path j = dir_ / "afile" / "eval.json";  // parent is a file
  auto r = run_vlq(base() + "--text " + q(kCalib / "text.jsonl") + " --text-limit 1 --no-generate -q --json-out " + q(j));
  EXPECT_NE(r.rc, 0) << "exit 0 but nothing written: " << r.err;
  EXPECT_TRUE(has(r.err, "eval.json")) << r.err;
}

}  // namespace
