// `vlq quantize --auto-precision` end to end on the bundled model (LM only, 4 text calibration samples,
// 4 held-out items as sensitivity data, so each run takes seconds): a loose budget keeps everything FP8;
// half the all-FP8 KL keeps the most sensitive groups in BF16, meets the budget, writes the exclusions, and
// `vlq eval` of the written checkpoint on the same items measures exactly the KL the search predicted; a
// size budget that leaves no room is a usage error naming both budgets; --report pages parse.
#include <gtest/gtest.h>

#include "cli/cli_test_util.h"
#include "cli/report_check.h"

namespace {

using namespace vlq::clitest;

const std::string kTasks = q(kHeldout / "heldout.jsonl");

std::string quantize_cmd(const fs::path& out, const std::string& extra) {
  return "quantize " + q(kModel) + " " + q(out) + " --scope lm --calib-text " + q(kCalib / "text.jsonl") +
         " --samples 4 --seq-len 64 -q --auto-precision --auto-tasks " + kTasks + " --auto-limit 4 --json" + extra;
}

std::string fmt_number(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.17g", v);
  return b;
}
std::string fmt_budget(double kl) { return " --max-kl " + fmt_number(kl); }

double ratio_of(const json& ap) { return ap["tensor_bytes"].get<double>() / ap["reference_bytes"].get<double>(); }

}  // namespace

TEST(AutoPrecisionCli, KeepsTheMostSensitiveGroupsUntilTheKlBudgetHolds) {
  Scratch s("autoprec");
  // Loose budget: nothing kept; steps[0] is the all-FP8 model.
  auto r0 = run_vlq(quantize_cmd(s / "loose", " --max-kl 1e9"));
  ASSERT_EQ(r0.rc, 0) << r0.err;
  const json a0 = json::parse(r0.out)["auto_precision"];
  EXPECT_TRUE(a0["kept_bf16"].empty());
  ASSERT_EQ(a0["steps"].size(), 1u);
  const double k0 = a0["steps"][0]["kl_mean"];
  ASSERT_GT(k0, 0);
  ASSERT_GE(a0["sensitivity"].size(), 9u);  // 4 layers x (attn, mlp) + KV cache

  // Half the all-FP8 KL.
  const double budget = k0 / 2;
  const fs::path out = s / "half";
  auto r1 = run_vlq(quantize_cmd(out, fmt_budget(budget)) + " --report " + q(s / "report.html"));
  ASSERT_EQ(r1.rc, 0) << r1.err;
  const json a1 = json::parse(r1.out)["auto_precision"];
  ASSERT_FALSE(a1["kept_bf16"].empty());
  EXPECT_LE(a1["kl_mean"].get<double>(), budget);
  EXPECT_EQ(a1["steps"].size(), a1["kept_bf16"].size() + 1);
  // every step but the last was over budget (greedy stops at the first that holds)
  for (std::size_t i = 0; i + 1 < a1["steps"].size(); ++i) EXPECT_GT(a1["steps"][i]["kl_mean"].get<double>(), budget);
  // the first group kept is the most sensitive one alone
  std::string most;
  double most_kl = -1;
  for (const auto& g : a1["sensitivity"])
    if (g["kl_mean"].get<double>() > most_kl) {
      most_kl = g["kl_mean"];
      most = g["group"];
    }
  EXPECT_EQ(a1["kept_bf16"][0], most);
  // The exclusions are in the export: kept Linears in the provenance, fewer FP8 Linears, exclude_modules grown.
  const json prov = json::parse(read_file(out / "vlq_quantize.json"));
  EXPECT_EQ(prov["auto_precision"]["kept_bf16"], a1["kept_bf16"]);
  const json loose_hfq = json::parse(read_file(s / "loose" / "hf_quant_config.json"));
  const json hfq = json::parse(read_file(out / "hf_quant_config.json"));
  bool kv_kept = false;
  for (const auto& g : a1["kept_bf16"]) kv_kept |= g == "lm.kv_cache";
  EXPECT_EQ(hfq["quantization"]["kv_cache_quant_algo"].is_null(), kv_kept);
  // The record says which naming each list uses: canonical, and the checkpoint's (the bundled model has 4.x
  // names, model.layers.N.*, as the written exclude_modules do).
  EXPECT_EQ(a1["exclude_naming"], "canonical");
  ASSERT_EQ(a1["exclude_checkpoint"].size(), a1["exclude"].size());
  EXPECT_EQ(prov["auto_precision"]["exclude_checkpoint"], a1["exclude_checkpoint"]);
  for (std::size_t i = 0; i < a1["exclude"].size(); ++i) {
    const std::string canon = a1["exclude"][i], ck = a1["exclude_checkpoint"][i];
    EXPECT_EQ(canon.rfind("model.language_model.layers.", 0), 0u) << canon;
    EXPECT_EQ(ck.rfind("model.layers.", 0), 0u) << ck;
    EXPECT_EQ(canon.substr(std::string("model.language_model.").size()), ck.substr(std::string("model.").size()));
    bool named = false;
    for (const auto& e : hfq["quantization"]["exclude_modules"]) named |= e.get<std::string>().rfind(ck, 0) == 0;
    EXPECT_TRUE(named) << ck << " not in " << hfq["quantization"]["exclude_modules"].dump();
  }
  if (a1["exclude"].size() > 0) {
    EXPECT_GT(prov["kept_linears"].size(), json::parse(read_file(s / "loose" / "vlq_quantize.json"))["kept_linears"].size());
    EXPECT_NE(hfq["quantization"]["exclude_modules"], loose_hfq["quantization"]["exclude_modules"]);
  }
  // The written checkpoint measured by vlq eval on the same 4 items: the KL the search predicted, and its size.
  auto e = run_vlq("eval --reference " + q(kModel) + " --model " + q(out) + " --tasks " + kTasks +
                   " --limit 4 --no-generate --device cpu --json -q");
  ASSERT_EQ(e.rc, 0) << e.err;
  const json m = json::parse(e.out)["models"][1];
  EXPECT_NEAR(m["task_logits"]["mean_kl"].get<double>(), a1["kl_mean"].get<double>(), 1e-9 + 1e-6 * a1["kl_mean"].get<double>());
  EXPECT_EQ(m["tensor_bytes"].get<std::uint64_t>(), a1["tensor_bytes"].get<std::uint64_t>());
  // The report of that run.
  vlq::testing_report::expect_report(read_file(s / "report.html"), /*group_kl_measured=*/true);
}

TEST(AutoPrecisionCli, BudgetsThatCannotBothHoldAreAUsageError) {
  Scratch s("autoprec");
  auto r0 = run_vlq(quantize_cmd(s / "loose", " --max-kl 1e9 --kv-cache none"));
  ASSERT_EQ(r0.rc, 0) << r0.err;
  const json a0 = json::parse(r0.out)["auto_precision"];
  const double k0 = a0["steps"][0]["kl_mean"];
  // The all-FP8 size exactly: any group kept in BF16 makes the export larger.
  const fs::path out = s / "out";
  auto r = run_vlq(quantize_cmd(out, fmt_budget(k0 / 2) + " --kv-cache none --max-size-ratio " +
                                         fmt_number(ratio_of(a0) * (1 + 1e-9))));
  EXPECT_EQ(r.rc, 64) << r.err;
  EXPECT_TRUE(has(r.err, "cannot both hold")) << r.err;
  EXPECT_TRUE(has(r.err, "--max-size-ratio")) << r.err;
  EXPECT_FALSE(fs::exists(out));
  // Usage: the budget flags belong together.
  auto none = run_vlq("quantize " + q(kModel) + " " + q(out) + " --calib-text " + q(kCalib / "text.jsonl") + " --auto-precision");
  EXPECT_EQ(none.rc, 64) << none.err;
  EXPECT_TRUE(has(none.err, "--max-kl")) << none.err;
  auto alone = run_vlq("quantize " + q(kModel) + " " + q(out) + " --calib-text " + q(kCalib / "text.jsonl") + " --max-kl 0.1");
  EXPECT_EQ(alone.rc, 64) << alone.err;
  EXPECT_TRUE(has(alone.err, "--auto-precision")) << alone.err;
  EXPECT_FALSE(fs::exists(out));
}
