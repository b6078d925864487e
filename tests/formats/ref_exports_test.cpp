// `vlq inspect`, `vlq check` and `vlq convert` on the real ModelOpt / llm-compressor exports of a tiny
// Qwen2.5-VL (tests/data/ref_exports, made by tools/ref_exports/run_all.sh), including the CLI exit codes.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "formats/fixture_writer.h"
#include "vlq/formats/check.h"
#include "vlq/formats/checkpoint_summary.h"
#include "vlq/formats/convert.h"

using namespace vlq::formats;
using vlq::testing::TempDir;

namespace {

const std::filesystem::path kRef = std::filesystem::path(VLQ_SOURCE_DIR) / "tests/data/ref_exports";

const Finding* find(const Report& r, const std::string& code) {
  auto v = r.with_code(code);
  return v.empty() ? nullptr : v.front();
}

#define EXPECT_VERDICT(r, v) EXPECT_EQ(verdict_name((r).verdict), verdict_name(v)) << report_to_text(r)

int run(const std::string& cmd, std::string* out = nullptr) {
  std::string full = cmd + " 2>/dev/null";
  FILE* p = popen(full.c_str(), "r");
  if (!p) return -1;
  std::string s;
  char buf[4096];
  while (std::size_t n = fread(buf, 1, sizeof buf, p)) s.append(buf, n);
  int st = pclose(p);
  if (out) *out = s;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

}  // namespace

TEST(RefExports, InspectSeesTheLayouts) {
  auto b = summarize_checkpoint(kRef / "modelopt-vlm-fp8-kv");
  ASSERT_TRUE(b.quant);
  EXPECT_EQ(b.quant->quant_algo, "FP8");
  auto c = summarize_checkpoint(kRef / "llmc-lm-fp8");
  ASSERT_TRUE(c.quant);
  EXPECT_NE(c.quant->format.find("compressed"), std::string::npos) << c.quant->format;
  auto a = summarize_checkpoint(kRef / "modelopt-lm-fp8-kv");
  ASSERT_TRUE(a.quant);
  ASSERT_TRUE(a.quant->exclude_modules);
  EXPECT_EQ(a.quant->exclude_modules->front(), "model.layers.visual*");
}

// Profile B (ModelOpt 0.35, whole VLM, FP8 KV): the KeyError of fp8-checkpoint-formats.md §2.6.
TEST(RefExports, ProfileB_FailsOnVllm010WithTheViTKeyError) {
  Report r = check_checkpoint(kRef / "modelopt-vlm-fp8-kv", "vllm-0.10");
  EXPECT_VERDICT(r, Verdict::kFails);
  ASSERT_NE(r.first_failure(), nullptr);
  EXPECT_EQ(r.first_failure()->runtime_error, "KeyError: 'blocks.0.attn.k_proj.k_scale'");
  EXPECT_EQ(r.first_failure()->subject, "visual.blocks.0.attn.k_proj.k_scale");
  EXPECT_EQ(r.summary.vision_fp8_linears, 12);
  EXPECT_EQ(r.summary.kv_scales, 8);
  // ModelOpt 0.35 clamps KV scales to >= 1.0: all 1.0 cannot be told from uncalibrated, a warning.
  EXPECT_EQ(find(r, "kv_scales_clamped"), nullptr);
  ASSERT_NE(find(r, "kv_scales_uncalibrated"), nullptr);
  EXPECT_EQ(find(r, "kv_scales_uncalibrated")->severity, Severity::kWarning);
  // The KeyError's fix says what the default convert does, and names a sibling output folder.
  EXPECT_EQ(r.first_failure()->hint,
            "vlq convert " + (kRef / "modelopt-vlm-fp8-kv").string() + " " + (kRef / "modelopt-vlm-fp8-kv").string() +
                "-vllm-0.10 --for vllm-0.10 (dequantizes the 12 FP8 vision Linears to BF16 and drops the vision K/V "
                "scales; --vision keep keeps them FP8 and only drops the vision K/V scales)");
  // VL-2026 fails on the same tensor first (and would then fail on the ViT scales).
  Report l = check_checkpoint(kRef / "modelopt-vlm-fp8-kv", "vllm-latest");
  EXPECT_VERDICT(l, Verdict::kFails);
  EXPECT_EQ(l.first_failure()->runtime_error, "KeyError: 'blocks.0.attn.k_proj.k_scale'");
  // transformers 4.52 naming: same error, the mapper strips model.visual. first.
  Report n = check_checkpoint(kRef / "modelopt-vlm-fp8-kv-tf4523-kv-visual", "vllm-0.10");
  EXPECT_VERDICT(n, Verdict::kFails);
  EXPECT_EQ(n.first_failure()->subject, "model.visual.blocks.0.attn.k_proj.k_scale");
  EXPECT_EQ(n.first_failure()->runtime_error, "KeyError: 'blocks.0.attn.k_proj.k_scale'");
  ASSERT_NE(find(n, "kv_scales_missing"), nullptr);  // FP8 KV declared, no decoder KV scales
  // vlq's own loader skips the orphans with a warning.
  EXPECT_VERDICT(check_checkpoint(kRef / "modelopt-vlm-fp8-kv", "vlq"), Verdict::kLoadsWithWarnings);
}

// Profile A (ModelOpt 0.35, LM only): loads on 0.10 with the ViT built FP8 without scales (§2.7); the
// fake `model.layers.` prefix of MO <= 0.37 makes the exclusion match nothing.
TEST(RefExports, ProfileA_LoadsWithWarnings) {
  Report r = check_checkpoint(kRef / "modelopt-lm-fp8-kv", "vllm-0.10");
  EXPECT_VERDICT(r, Verdict::kLoadsWithWarnings);
  ASSERT_NE(find(r, "vision_fp8_without_scales"), nullptr);
  EXPECT_EQ(find(r, "vision_fp8_without_scales")->subject, "visual.blocks.0.attn.proj");
  ASSERT_NE(find(r, "ignore_matches_nothing"), nullptr);
  EXPECT_EQ(find(r, "ignore_matches_nothing")->subject, "model.layers.visual*");
  Report l = check_checkpoint(kRef / "modelopt-lm-fp8-kv", "vllm-latest");
  EXPECT_EQ(l.first_failure(), nullptr);
  EXPECT_EQ(find(l, "vision_fp8_without_scales"), nullptr) << report_to_text(l);  // visual forced BF16
  // ModelOpt 0.47 writes real names ("visual*"): clean on VL-2026 and vlq; still lost by VL-0.10.
  EXPECT_VERDICT(check_checkpoint(kRef / "modelopt047-lm-fp8-kv", "vllm-latest"), Verdict::kLoads);
  EXPECT_VERDICT(check_checkpoint(kRef / "modelopt047-lm-fp8-kv", "vlq"), Verdict::kLoads);
  EXPECT_VERDICT(check_checkpoint(kRef / "modelopt047-lm-fp8-kv", "vllm-0.10"), Verdict::kLoadsWithWarnings);
}

// ModelOpt 0.47 stock config with the whole model: ViT Linears BF16, but orphan ViT K/V scales written.
TEST(RefExports, ModelOpt047NativeStillWritesViTKvOrphans) {
  Report r = check_checkpoint(kRef / "modelopt047-vlm-fp8-kv-native", "vllm-0.10");
  EXPECT_VERDICT(r, Verdict::kFails);
  EXPECT_EQ(r.first_failure()->runtime_error, "KeyError: 'blocks.0.attn.k_proj.k_scale'");
  EXPECT_EQ(r.summary.vision_fp8_linears, 0);
}

// Profile C (llm-compressor FP8, LM only): loads on vLLM; SGLang drops its KV scales.
TEST(RefExports, ProfileC_Loads) {
  for (const char* t : {"vllm-0.10", "vllm-latest", "vlq"})
    EXPECT_VERDICT(check_checkpoint(kRef / "llmc-lm-fp8", t), Verdict::kLoads);
  Report s = check_checkpoint(kRef / "llmc-lm-fp8", "sglang");
  EXPECT_VERDICT(s, Verdict::kLoadsWithWarnings);
  EXPECT_EQ(find(s, "kv_scales_dropped")->subject, "model.layers.0.self_attn.k_scale");
  // KV scales are BF16 [1], calibrated (not 1.0).
  QuantLayout L = build_quant_layout(CheckpointView::open(kRef / "llmc-lm-fp8"));
  ASSERT_EQ(L.kv_scales.size(), 4u);
  for (const auto& k : L.kv_scales) {
    EXPECT_EQ(k.dtype, vlq::DType::BF16);
    ASSERT_TRUE(k.value);
    EXPECT_GT(*k.value, 0.0);
    EXPECT_LT(*k.value, 1.0);
  }
  // FP8_DYNAMIC with the ViT quantized too: loads in vLLM's compressed-tensors path.
  Report d = check_checkpoint(kRef / "llmc-vlm-fp8-dynamic", "vllm-0.10");
  EXPECT_VERDICT(d, Verdict::kLoads);
  ASSERT_NE(find(d, "vision_fp8"), nullptr);
}

// `vlq convert --for vllm-0.10` on Profile B gives a checkpoint vLLM 0.10 loads; the input is untouched.
TEST(RefExports, ConvertProfileBForEachTarget) {
  TempDir d("refconv");
  const auto in = kRef / "modelopt-vlm-fp8-kv";
  const auto before = std::filesystem::last_write_time(in / "model.safetensors");
  for (const char* t : {"vllm-0.10", "vllm-latest"}) {
    ConvertOptions o;
    o.target = t;
    o.fsync = false;
    ConvertResult res = convert_checkpoint(in, d / t, o);
    // Loads; the one warning left is the clamped (all 1.0) KV scales of ModelOpt 0.35, which convert keeps.
    EXPECT_EQ(res.check.verdict, Verdict::kLoadsWithWarnings) << report_to_text(res.check);
    Report again = check_checkpoint(d / t, t);
    EXPECT_VERDICT(again, Verdict::kLoadsWithWarnings);
    for (const auto& f : again.findings)
      if (f.severity >= Severity::kWarning) EXPECT_EQ(f.code, "kv_scales_uncalibrated") << report_to_text(again);
    QuantLayout L = build_quant_layout(CheckpointView::open(d / t));
    for (const auto& k : L.kv_scales) EXPECT_NE(k.tower, Tower::kVision) << k.name;
    // Converted for 0.10 it also loads on 0.10's successor (both configs written consistently).
    EXPECT_EQ(find(again, "config_files_disagree"), nullptr);
  }
  EXPECT_VERDICT(check_checkpoint(d / "vllm-0.10", "vllm-latest"), Verdict::kLoadsWithWarnings);
  EXPECT_EQ(std::filesystem::last_write_time(in / "model.safetensors"), before);
}

TEST(RefExports, CliExitCodesJsonAndMatrix) {
  const std::string vlq = VLQ_BINARY;
  std::string out;
  EXPECT_EQ(run(vlq + " check " + (kRef / "modelopt-vlm-fp8-kv").string() + " --target vllm-0.10 --json", &out), 2);
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["schema"], "vlq.check/1");
  EXPECT_EQ(j["findings"][0]["runtime_error"], "KeyError: 'blocks.0.attn.k_proj.k_scale'");
  EXPECT_EQ(run(vlq + " check " + (kRef / "modelopt-lm-fp8-kv").string() + " --target vllm-0.10"), 1);
  EXPECT_EQ(run(vlq + " check " + (kRef / "llmc-lm-fp8").string() + " --target vllm-0.10"), 0);
  EXPECT_EQ(run(vlq + " check /nonexistent-vlq-dir --target vlq"), 3);
  EXPECT_EQ(run(vlq + " check " + (kRef / "llmc-lm-fp8").string() + " --target nope"), 64);
  EXPECT_EQ(run(vlq + " check --matrix --targets vllm-0.10,vlq " + (kRef / "modelopt-vlm-fp8-kv").string() + " " +
                    (kRef / "llmc-lm-fp8").string(),
                &out),
            0);
  EXPECT_NE(out.find("| modelopt-vlm-fp8-kv |"), std::string::npos) << out;
  EXPECT_NE(out.find("fails: `KeyError: 'blocks.0.attn.k_proj.k_scale'`"), std::string::npos) << out;
}
