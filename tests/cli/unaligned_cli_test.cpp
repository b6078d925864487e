// `vlq quantize --unaligned keep|fp8` on a model whose vision MLP width is not a multiple of 16 (the golden
// model gqa6_win112_odd: intermediate 37, as the 7B's 3420): by default those Linears stay in the source dtype
// and are named in the summary; with fp8 they are FP8 in their own shape, `vlq check` warns for vLLM (its FP8
// GEMMs need 16, field-bug-classes.md F19) and accepts for vlq, and vlq runs the export. The input stays
// byte-identical; a bad value is a usage error. The default export also loads on vLLM 0.10 (its exclusions
// written so that 0.10's substring matcher skips the kept MLPs and the kept q/k/v group).
#include <algorithm>

#include "cli/cli_test_util.h"

namespace {

using namespace vlq::clitest;

const fs::path kOdd = kRoot / "tests/data/golden/model/gqa6_win112_odd/model";
const std::string kFast = " --samples 2 --seq-len 64 -q";

std::string dtype_of(const fs::path& dir, const std::string& tensor) {
  const StFile f = read_st(dir / "model.safetensors");
  return f.header.contains(tensor) ? f.header[tensor]["dtype"].get<std::string>() : "(missing)";
}

const json* finding(const json& report, const std::string& code) {
  for (const auto& f : report["findings"])
    if (f["code"] == code) return &f;
  return nullptr;
}

TEST(UnalignedCli, VisionMlpStaysBf16ByDefaultAndIsFp8WithUnalignedFp8) {
  Scratch s("unaligned");
  const auto before = fingerprint(kOdd);
  const std::string calib = " --scope vlm --calib-images " + q(kCalib / "images");
  const std::string down = "visual.blocks.0.mlp.down_proj.weight", gate = "visual.blocks.0.mlp.gate_proj.weight";

  auto keep = run_vlq("quantize " + q(kOdd) + " " + q(s / "keep") + calib + kFast);
  ASSERT_EQ(keep.rc, 0) << keep.err;
  EXPECT_NE(dtype_of(s / "keep", down), "F8_E4M3");
  EXPECT_NE(dtype_of(s / "keep", gate), "F8_E4M3");
  EXPECT_EQ(dtype_of(s / "keep", "visual.blocks.0.attn.qkv.weight"), "F8_E4M3");  // aligned: quantized
  const json pk = json::parse(read_file(s / "keep" / "vlq_quantize.json"));
  EXPECT_EQ(pk["unaligned"], "keep");

  auto fp8 = run_vlq("quantize " + q(kOdd) + " " + q(s / "fp8") + calib + " --unaligned fp8" + kFast);
  ASSERT_EQ(fp8.rc, 0) << fp8.err;
  EXPECT_EQ(dtype_of(s / "fp8", down), "F8_E4M3");
  EXPECT_EQ(dtype_of(s / "fp8", gate), "F8_E4M3");
  const StFile st = read_st(s / "fp8" / "model.safetensors");
  EXPECT_EQ(st.header[down]["shape"], json::array({48, 37}));  // its own shape: nothing padded in the file
  EXPECT_TRUE(st.header.contains("visual.blocks.0.mlp.down_proj.weight_scale"));
  EXPECT_TRUE(st.header.contains("visual.blocks.0.mlp.down_proj.input_scale"));
  const json pf = json::parse(read_file(s / "fp8" / "vlq_quantize.json"));
  EXPECT_EQ(pf["unaligned"], "fp8");
  EXPECT_LT(pf["kept_linears"].size(), pk["kept_linears"].size());

  // vLLM 0.10: the alignment finding, as a warning naming an MLP tensor; the default export has none.
  auto cv = run_vlq("check " + q(s / "fp8") + " --target vllm-0.10 --json");
  const json jv = json::parse(cv.out);
  const json* fv = finding(jv, "fp8_gemm_alignment");
  ASSERT_NE(fv, nullptr) << cv.out;
  EXPECT_EQ((*fv)["severity"], "warning") << fv->dump();
  EXPECT_TRUE(has((*fv)["subject"].get<std::string>(), "mlp.")) << fv->dump();
  EXPECT_GE(cv.rc, 1) << cv.out;
  // The default export loads on vLLM 0.10 as it is: that loader matches exclude_modules as substrings without
  // expanding ModelOpt's "visual.blocks.0.mlp*", so the portable layout adds the stem "visual.blocks.0.mlp"; the
  // odd model's k_proj / v_proj (N = 8) keep q_proj with them (one fused qkv_proj), named "...qkv_proj" for 0.10.
  auto ck = run_vlq("check " + q(s / "keep") + " --target vllm-0.10 --json");
  const json jk = json::parse(ck.out);
  EXPECT_EQ(finding(jk, "fp8_gemm_alignment"), nullptr) << ck.out;
  EXPECT_EQ(finding(jk, "vision_fp8_without_scales"), nullptr) << ck.out;
  EXPECT_EQ(finding(jk, "fp8_without_scales"), nullptr) << ck.out;
  EXPECT_EQ(ck.rc, 0) << ck.out;
  const json ex = json::parse(read_file(s / "keep" / "config.json"))["quantization_config"]["exclude_modules"];
  EXPECT_NE(std::find(ex.begin(), ex.end(), "visual.blocks.0.mlp"), ex.end()) << ex.dump();
  EXPECT_NE(std::find(ex.begin(), ex.end(), "model.layers.0.self_attn.qkv_proj"), ex.end()) << ex.dump();
  EXPECT_NE(dtype_of(s / "keep", "model.layers.0.self_attn.q_proj.weight"), "F8_E4M3");
  // vlq: no alignment warning.
  auto cq = run_vlq("check " + q(s / "fp8") + " --target vlq --json");
  const json jq = json::parse(cq.out);
  const json* fq = finding(jq, "fp8_gemm_alignment");
  EXPECT_TRUE(fq == nullptr || (*fq)["severity"] == "info") << cq.out;
  EXPECT_LE(cq.rc, 1) << cq.out;

  // --layout exact (ModelOpt's config: vLLM 0.10 honours none of its exclusions): the kept BF16 MLPs are built FP8
  // there; the alignment finding's fix is the convert that writes the exclusion, not --vision bf16.
  auto xr = run_vlq("quantize " + q(kOdd) + " " + q(s / "exact") + calib + " --layout exact" + kFast);
  ASSERT_EQ(xr.rc, 0) << xr.err;
  auto ce = run_vlq("check " + q(s / "exact") + " --target vllm-0.10 --json");
  const json je = json::parse(ce.out);
  const json* fe = finding(je, "fp8_gemm_alignment");
  ASSERT_NE(fe, nullptr) << ce.out;
  EXPECT_TRUE(has((*fe)["hint"].get<std::string>(), "writes an exclusion")) << fe->dump();
  EXPECT_FALSE(has((*fe)["hint"].get<std::string>(), "--vision bf16")) << fe->dump();

  // --for vllm-0.10 refuses that exact export: it would load there but give wrong output.
  auto xf = run_vlq("quantize " + q(kOdd) + " " + q(s / "exact-for") + calib + " --layout exact --for vllm-0.10" + kFast);
  EXPECT_EQ(xf.rc, 3) << xf.err;
  EXPECT_TRUE(has(xf.err, "wrong output")) << xf.err;
  EXPECT_TRUE(has(xf.err, "vision_fp8_without_scales")) << xf.err;
  EXPECT_FALSE(fs::exists(s / "exact-for"));
  EXPECT_TRUE(entries_starting(s.dir, "exact-for.").empty());

  // vlq runs it, with an image (the FP8 vision MLP is on the path).
  auto g = run_vlq("generate --model " + q(s / "fp8") + " --image " + q(kColorImage) +
                   " --prompt 'What color is the shape?' --max-new-tokens 4 -q");
  EXPECT_EQ(g.rc, 0) << g.err;
  EXPECT_EQ(fingerprint(kOdd), before);
}

TEST(UnalignedCli, BadValueIsAUsageErrorAndPadPointsToIt) {
  Scratch s("unaligned");
  auto r = run_vlq("quantize " + q(kOdd) + " " + q(s / "out") + " --unaligned pad --calib-text " +
                   q(kCalib / "text.jsonl") + kFast);
  EXPECT_EQ(r.rc, 64) << r.err;
  EXPECT_TRUE(has(r.err, "--unaligned")) << r.err;
  EXPECT_TRUE(has(r.err, "keep or fp8")) << r.err;
  EXPECT_FALSE(fs::exists(s / "out"));
  auto p = run_vlq("quantize " + q(kOdd) + " " + q(s / "out") + " --pad --calib-text " + q(kCalib / "text.jsonl") + kFast);
  EXPECT_EQ(p.rc, 64) << p.err;
  EXPECT_TRUE(has(p.err, "--unaligned fp8")) << p.err;
}

}  // namespace
