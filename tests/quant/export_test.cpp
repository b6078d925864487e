// Fidelity tests of the FP8 export (vlq quantize after calibration): exporting tests/data/ref_exports/base-bf16
// with the amax that ModelOpt 0.35/0.47 and llm-compressor 0.14 recorded must give the tensors and config
// blocks those tools wrote, byte for byte (with their double rounding, --layout exact); the default single
// rounding differs from them only by one E4M3 step where the BF16 quotient rounds across a code boundary,
// and equals the runtime's in-memory quantization; plus the plan rules and the refusal cases.
#include <gtest/gtest.h>

#include <random>

#include "io/io_test_util.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "vlq/core/error.h"
#include "vlq/core/numerics.h"
#include "vlq/formats/check.h"
#include "vlq/formats/names.h"
#include "vlq/io/safetensors.h"
#include "vlq/io/safetensors_writer.h"
#include "vlq/formats/hf_config.h"
#include "vlq/ops/linear.h"
#include "vlq/quant/act_scale.h"
#include "vlq/quant/export.h"

namespace fs = std::filesystem;
namespace Q = vlq::quant;
namespace F = vlq::formats;
using nlohmann::json;

namespace {

const fs::path kRef = fs::path(VLQ_SOURCE_DIR) / "tests/data/ref_exports";
const fs::path kBase = kRef / "base-bf16";

using vlq::testing::folder_snapshot;
using vlq::testing::read_bytes;

json read_json(const fs::path& p) { return json::parse(read_bytes(p)); }

// CalibrationStats from the per-quantizer amax ModelOpt recorded (provenance.json log), in-memory
// (canonical) names: "<Linear>.input_quantizer" → input_amax, "<attention>.{k,v}_bmm_quantizer" → k/v_amax.
// Weight quantizers are not needed: vlq computes max|W| itself (checked against them below).
Q::CalibrationStats stats_from_modelopt(const fs::path& dir, std::map<std::string, float>* weight_amax = nullptr) {
  json p = read_json(dir / "provenance.json");
  Q::CalibrationStats s;
  auto strip = [](const std::string& n, const std::string& suf) { return n.substr(0, n.size() - suf.size()); };
  auto ends = [](const std::string& n, const std::string& suf) {
    return n.size() >= suf.size() && n.compare(n.size() - suf.size(), suf.size(), suf) == 0;
  };
  for (const auto& e : p["log"]["enabled_quantizers_with_amax"]) {
    const std::string n = e[0];
    const float a = static_cast<float>(e[1].get<double>());  // printed from the f32 buffer: exact
    if (ends(n, ".input_quantizer")) s.input_amax[strip(n, ".input_quantizer")] = a;
    else if (ends(n, ".k_bmm_quantizer")) s.k_amax[strip(n, ".k_bmm_quantizer")] = a;
    else if (ends(n, ".v_bmm_quantizer")) s.v_amax[strip(n, ".v_bmm_quantizer")] = a;
    else if (ends(n, ".weight_quantizer") && weight_amax) (*weight_amax)[strip(n, ".weight_quantizer")] = a;
  }
  return s;
}

float f32_of(const vlq::io::Checkpoint& ck, const std::string& name) {
  const auto& info = ck.info(name);
  auto b = ck.data(name);
  if (info.dtype == vlq::DType::F32) { float f; std::memcpy(&f, b.data(), 4); return f; }
  std::uint16_t h;
  std::memcpy(&h, b.data(), 2);
  return vlq::bf16_to_f32(h);
}

// llm-compressor's provenance has no amax: compressed-tensors stores input_scale = BF16(amax/448). Taking
// amax = f32(input_scale) * 448 (exact: an 8-bit significand times 7·2^6) reproduces that BF16 scale
// exactly, which is all the export can be tested on (the calibration itself is the lead's).
Q::CalibrationStats stats_from_compressed_tensors(const fs::path& dir) {
  auto ck = vlq::io::Checkpoint::open(dir);
  Q::CalibrationStats s;
  for (const auto& n : ck.names()) {
    const std::string leaf(F::leaf_of(n));
    const std::string canon_mod(F::module_of(F::canonical_name(n)));
    if (leaf == "input_scale") s.input_amax[canon_mod] = f32_of(ck, n) * 448.0f;
    else if (auto kv = F::parse_kv_scale_name(n)) {
      const std::string att(F::module_of(F::canonical_name(kv->attention + ".x")));
      (kv->kind == F::KvKind::kK ? s.k_amax : s.v_amax)[att] = f32_of(ck, n) * 448.0f;
    }
  }
  return s;
}

// quantization_config / hf_quant_config without the producer version strings.
json without_versions(json j) {
  if (j.contains("producer") && j["producer"].is_object()) j["producer"].erase("version");
  if (j.contains("version")) j.erase("version");
  return j;
}

class QuantExport : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() / ("vlq-quant-test-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }

  static Q::QuantizeOptions opts() {
    Q::QuantizeOptions o;
    o.fsync = false;
    return o;
  }
  // The tools' double rounding E4M3(BF16(W/s)) (`vlq quantize --layout exact`): what byte-for-byte
  // comparisons with the reference exports need.
  static Q::QuantizeOptions exact_opts() {
    Q::QuantizeOptions o = opts();
    o.weight_rounding = vlq::ops::Fp8Rounding::kDouble;
    return o;
  }
  Q::QuantPlan plan(const fs::path& dir, const Q::QuantizeOptions& o) {
    auto ck = vlq::io::Checkpoint::open(dir);
    auto cfg = vlq::formats::load_model_config(dir / "config.json");
    return Q::plan_quantization(ck, cfg, o);
  }
  // Exports base-bf16 and compares everything with the reference export `ref`.
  Q::ExportReport export_and_compare(const std::string& ref, const Q::CalibrationStats& stats, const Q::QuantizeOptions& o) {
    const fs::path out = tmp_ / "out";
    auto before = folder_snapshot(kBase);
    Q::QuantPlan p = plan(kBase, o);
    Q::ExportReport r = Q::export_quantized(kBase, out, p, stats, o);
    EXPECT_EQ(folder_snapshot(kBase), before) << "input modified";
    compare_with_reference(out, kRef / ref);
    std::string summary = Q::format_summary(p, r);
    EXPECT_NE(summary.find("quantized"), std::string::npos);
    return r;
  }
  static void compare_with_reference(const fs::path& out, const fs::path& ref) {
    auto a = vlq::io::Checkpoint::open(out), b = vlq::io::Checkpoint::open(ref);
    ASSERT_EQ(a.names(), b.names());
    int fp8 = 0, scales = 0;
    for (const auto& n : b.names()) {
      const auto& ia = a.info(n);
      const auto& ib = b.info(n);
      EXPECT_EQ(ia.dtype, ib.dtype) << n;
      EXPECT_EQ(ia.shape, ib.shape) << n;
      auto da = a.data(n), db = b.data(n);
      ASSERT_EQ(da.size(), db.size()) << n;
      // FP8 weights and every scale bit-exact (see the file comment of each case for why this holds).
      if (ia.dtype == vlq::DType::F8_E4M3) {
        ++fp8;
        std::size_t diff = 0;
        for (std::size_t i = 0; i < da.size(); ++i) diff += da[i] != db[i];
        EXPECT_EQ(diff, 0u) << n << ": FP8 bytes differ";
      } else {
        const std::string leaf(F::leaf_of(n));
        if (leaf.find("scale") != std::string::npos) {
          ++scales;
          EXPECT_EQ(f32_of(a, n), f32_of(b, n)) << n;
        }
        EXPECT_TRUE(std::memcmp(da.data(), db.data(), da.size()) == 0) << n << ": bytes differ";
      }
    }
    EXPECT_GT(fp8, 0);
    EXPECT_GT(scales, 0);
    // The safetensors file itself: same layout rules as Python safetensors, same metadata → same bytes.
    EXPECT_EQ(read_bytes(out / "model.safetensors"), read_bytes(ref / "model.safetensors")) << "model.safetensors not byte-identical";
    // Config blocks: equal apart from producer version strings.
    json qa = read_json(out / "config.json")["quantization_config"], qb = read_json(ref / "config.json")["quantization_config"];
    EXPECT_EQ(without_versions(qa), without_versions(qb)) << "ours:\n" << qa.dump(1) << "\nref:\n" << qb.dump(1);
    EXPECT_EQ(fs::exists(out / "hf_quant_config.json"), fs::exists(ref / "hf_quant_config.json"));
    if (fs::exists(ref / "hf_quant_config.json")) {
      json ha = read_json(out / "hf_quant_config.json"), hb = read_json(ref / "hf_quant_config.json");
      EXPECT_EQ(without_versions(ha), without_versions(hb)) << ha.dump(1) << "\n" << hb.dump(1);
      if (ha == hb) {
        EXPECT_EQ(read_bytes(out / "hf_quant_config.json"), read_bytes(ref / "hf_quant_config.json"));
      }
    }
    // The rest of config.json is the input's (the tools re-serialised it with their transformers version).
    json ca = read_json(out / "config.json"), cbase = read_json(kBase / "config.json");
    ca.erase("quantization_config");
    EXPECT_EQ(ca, cbase);
    for (const char* f : {"generation_config.json", "preprocessor_config.json"})
      EXPECT_EQ(read_json(out / f), read_json(kBase / f)) << f;
    EXPECT_TRUE(fs::exists(out / "vlq_quantize.json"));
  }
  // Same verdict as the reference export on each runtime, and the verdict the formats doc predicts.
  static void expect_verdicts(const fs::path& out, const fs::path& ref, std::map<std::string, F::Verdict> predicted) {
    for (const auto& [target, v] : predicted) {
      F::Report ro = F::check_checkpoint(out, target), rr = F::check_checkpoint(ref, target);
      EXPECT_EQ(F::verdict_name(ro.verdict), F::verdict_name(v)) << target << "\n" << F::report_to_text(ro);
      EXPECT_EQ(F::verdict_name(ro.verdict), F::verdict_name(rr.verdict)) << target;
    }
  }
  fs::path tmp_;
};

// ---- fidelity ---------------------------------------------------------------------------------------

// ModelOpt 0.47, hf_ptq.py language-model path, FP8 KV calibrated (Profile A). Bit-exact because vlq
// computes the same f32 arithmetic: weight_scale = f32(max|W|)/448, W_fp8 = E4M3(BF16(W / s)) (PyTorch CPU
// keeps bf16 / 0-dim f32 in BF16), input_scale = f32(amax)/448, k/v_scale = f32(amax)/448 (no clamp ≥ 0.43).
TEST_F(QuantExport, ModelOpt047LanguageModelMatchesReference) {
  std::map<std::string, float> wamax;
  auto stats = stats_from_modelopt(kRef / "modelopt047-lm-fp8-kv", &wamax);
  ASSERT_EQ(stats.input_amax.size(), 14u);
  ASSERT_EQ(stats.k_amax.size(), 2u);
  Q::QuantizeOptions o = exact_opts();
  o.check_targets = {"vlq", "vllm-latest"};
  Q::ExportReport r = export_and_compare("modelopt047-lm-fp8-kv", stats, o);
  EXPECT_EQ(r.quantized, 14);
  EXPECT_EQ(r.kv_scales, 4);
  EXPECT_EQ(r.vision_kv_scales, 0);
  ASSERT_EQ(r.checks.size(), 2u);
  // vlq's max|W| equals ModelOpt's weight-quantizer amax.
  for (const auto& m : r.modules) {
    const std::string canon(F::module_of(F::canonical_name(m.checkpoint_module + ".weight")));
    ASSERT_TRUE(wamax.count(canon)) << canon;
    EXPECT_EQ(m.weight_amax, wamax[canon]) << canon;
    EXPECT_EQ(m.saturated, 0u);
  }
  // Profile A verdicts (fp8-checkpoint-formats.md §6): VL-0.10 ignores config.json's `ignore`, so the ViT
  // is built FP8 without scales (warning); VL-2026 and vlq load it cleanly.
  expect_verdicts(tmp_ / "out", kRef / "modelopt047-lm-fp8-kv",
                  {{"vlq", F::Verdict::kLoads}, {"vllm-latest", F::Verdict::kLoads}, {"vllm-0.10", F::Verdict::kLoadsWithWarnings}});
}

// --act-scale max (the default) with histograms in the statistics: apply_act_scale changes nothing, so the
// export is still byte-identical with ModelOpt 0.47's; the provenance records the method. With mse on a
// histogram that has outliers, only that Linear's input_scale changes.
TEST_F(QuantExport, ActScaleMaxKeepsTheReferenceBytesMseChangesOnlyInputScales) {
  auto stats = stats_from_modelopt(kRef / "modelopt047-lm-fp8-kv");
  // A histogram per Linear consistent with its amax: a bulk at amax/100000 and a few values at amax.
  for (const auto& [m, a] : stats.input_amax) {
    std::vector<float> x(20000, a / 100000.0f);
    for (int i = 0; i < 3; ++i) x[i] = a;
    stats.input_hist[m].add(x.data(), static_cast<std::int64_t>(x.size()));
  }
  const Q::CalibrationStats same = Q::apply_act_scale(stats, Q::ActScale{});
  ASSERT_EQ(same, stats);
  Q::QuantizeOptions o = exact_opts();
  export_and_compare("modelopt047-lm-fp8-kv", same, o);
  EXPECT_EQ(read_json(tmp_ / "out" / "vlq_quantize.json")["act_scale"], "max");

  // One Linear whose bulk (10^14 values at amax/10^5, counts set directly) would be subnormal under max:
  // mse clips its 3 outliers (see ActScale.MseClipsAFewOutliers); every other Linear: values at amax only.
  const std::string target = stats.input_amax.begin()->first;
  Q::CalibrationStats one = stats;
  for (auto& [m, h] : one.input_hist) {
    const float a = one.input_amax.at(m);
    h = Q::AbsHistogram{};
    h.counts.assign(Q::AbsHistogram::kBins, 0);
    h.counts[Q::AbsHistogram::bin_of(a)] = 3;
    if (m == target) {  // |N(0, a/10^5)|, 10^14 values
      std::mt19937 rng(1);
      std::normal_distribution<float> n(0.0f, a / 1e5f);
      for (int i = 0; i < 100000; ++i)
        if (const int b = Q::AbsHistogram::bin_of(std::fabs(n(rng))); b >= 0) h.counts[b] += 1'000'000'000;
    }
  }
  const Q::CalibrationStats mse = Q::apply_act_scale(one, Q::parse_act_scale("mse"));
  EXPECT_LT(mse.input_amax.at(target), stats.input_amax.at(target) / 4.0f);
  for (const auto& [m, a] : mse.input_amax)
    if (m != target) EXPECT_EQ(a, stats.input_amax.at(m)) << m;
  o.act_scale = "mse";
  const fs::path out2 = tmp_ / "out-mse";
  Q::export_quantized(kBase, out2, plan(kBase, o), mse, o);
  EXPECT_EQ(read_json(out2 / "vlq_quantize.json")["act_scale"], "mse");
  auto a = vlq::io::Checkpoint::open(tmp_ / "out"), b = vlq::io::Checkpoint::open(out2);
  int differing = 0;
  for (const auto& n : a.names()) {
    auto da = a.data(n), db = b.data(n);
    if (da.size() != db.size() || std::memcmp(da.data(), db.data(), da.size()) != 0) {
      ++differing;
      EXPECT_NE(n.find("input_scale"), std::string::npos) << n << " changed";
    }
  }
  EXPECT_EQ(differing, 1);
}

// ModelOpt 0.47 stock config on the whole model: `*visual*` disabled (vlq: scope vlm + --exclude
// '*visual*'), but the appended `*[kv]_bmm_quantizer` re-enables the ViT attention quantizers, giving the
// orphans visual.blocks.B.attn.{k,v}_proj.{k,v}_scale: only with VisionKvScales::kModelOpt.
TEST_F(QuantExport, ModelOpt047VlmNativeWithVisionOrphansMatchesReference) {
  auto stats = stats_from_modelopt(kRef / "modelopt047-vlm-fp8-kv-native");
  ASSERT_EQ(stats.k_amax.size(), 4u);  // 2 LM layers + 2 ViT blocks
  Q::QuantizeOptions o = exact_opts();
  o.scope = Q::Scope::kVisionLanguage;
  o.exclude = {"*visual*"};
  o.vision_kv = Q::VisionKvScales::kModelOpt;
  Q::ExportReport r = export_and_compare("modelopt047-vlm-fp8-kv-native", stats, o);
  EXPECT_EQ(r.vision_kv_scales, 4);
  // The orphans make vLLM 0.10 and 2026 die with the KeyError of §2.6; vlq skips them with a warning.
  expect_verdicts(tmp_ / "out", kRef / "modelopt047-vlm-fp8-kv-native",
                  {{"vlq", F::Verdict::kLoadsWithWarnings}, {"vllm-0.10", F::Verdict::kFails}});
  EXPECT_EQ(F::check_checkpoint(tmp_ / "out", "vllm-0.10").first_failure()->runtime_error,
            "KeyError: 'blocks.0.attn.k_proj.k_scale'");
}

// ModelOpt 0.35, FP8_DEFAULT_CFG + FP8_KV_CFG on the whole model (Profile B): FP8 ViT incl. merger, the
// Conv3d patch embedding calibrated but kept BF16, orphan ViT K/V scales, and every KV scale clamped to 1.0.
// The clamp and the MO <= 0.37 exclude list are reproduced only with --modelopt-compat 0.35.
TEST_F(QuantExport, ModelOpt035VlmCompatMatchesReference) {
  auto stats = stats_from_modelopt(kRef / "modelopt-vlm-fp8-kv");
  Q::QuantizeOptions o = exact_opts();
  o.scope = Q::Scope::kVisionLanguage;
  o.vision_kv = Q::VisionKvScales::kModelOpt;
  o.modelopt_version_compat = "0.35";
  Q::ExportReport r = export_and_compare("modelopt-vlm-fp8-kv", stats, o);
  EXPECT_EQ(r.quantized, 26);  // 14 LM + 12 ViT
  EXPECT_EQ(r.k_scale.min, 1.0f);
  EXPECT_EQ(r.k_scale.max, 1.0f);
  EXPECT_EQ(read_json(tmp_ / "out" / "hf_quant_config.json")["producer"]["version"], "0.35.0");
  expect_verdicts(tmp_ / "out", kRef / "modelopt-vlm-fp8-kv",
                  {{"vlq", F::Verdict::kLoadsWithWarnings}, {"vllm-0.10", F::Verdict::kFails}, {"vllm-latest", F::Verdict::kFails}});
}

// ModelOpt 0.35 language-model path: the MO <= 0.37 exclude entry "model.layers.visual*" (matches no
// tensor on disk) and KV scales clamped to 1.0, only with --modelopt-compat 0.35.
TEST_F(QuantExport, ModelOpt035LanguageModelCompatMatchesReference) {
  auto stats = stats_from_modelopt(kRef / "modelopt-lm-fp8-kv");
  Q::QuantizeOptions o = exact_opts();
  o.modelopt_version_compat = "0.35";
  export_and_compare("modelopt-lm-fp8-kv", stats, o);
  expect_verdicts(tmp_ / "out", kRef / "modelopt-lm-fp8-kv", {{"vllm-0.10", F::Verdict::kLoadsWithWarnings}});
}

// llm-compressor 0.14 / compressed-tensors 0.19, preset FP8 (static), FP8 KV, LM only (Profile C).
// Scales are BF16 [1]: weight_scale = BF16(f32(max|W|)/448), W_fp8 = E4M3(BF16(W / f32(weight_scale)));
// all bit-exact. The reference also holds llm-compressor's recipe.yaml, which vlq does not write.
TEST_F(QuantExport, CompressedTensorsLanguageModelMatchesReference) {
  auto stats = stats_from_compressed_tensors(kRef / "llmc-lm-fp8");
  ASSERT_EQ(stats.input_amax.size(), 14u);
  Q::QuantizeOptions o = exact_opts();
  o.format = Q::ExportFormat::kCompressedTensors;
  o.exclude = {"re:visual.*", "re:model.visual.*"};  // the recipe's ignore list (lm_head is excluded anyway)
  o.check_targets = {"vlq", "vllm-0.10", "vllm-latest"};
  Q::ExportReport r = export_and_compare("llmc-lm-fp8", stats, o);
  EXPECT_EQ(r.quantized, 14);
  EXPECT_EQ(r.kv_scales, 4);
  EXPECT_FALSE(fs::exists(tmp_ / "out" / "hf_quant_config.json"));
  expect_verdicts(tmp_ / "out", kRef / "llmc-lm-fp8",
                  {{"vlq", F::Verdict::kLoads}, {"vllm-0.10", F::Verdict::kLoads}, {"vllm-latest", F::Verdict::kLoads}});
}

// ---- defaults: where vlq deliberately differs from the tools -----------------------------------------

// Default weight rounding: one rounding, E4M3(f32(W) / s). The scales and every non-FP8 byte equal the
// ModelOpt 0.47 reference; an FP8 code differs only where BF16(W/s) rounds across an E4M3 code boundary (by
// one step, a few percent of the codes), and each equals the single-rounded code computed here directly.
TEST_F(QuantExport, DefaultSingleRoundingDiffersFromToolsByOneStep) {
  auto stats = stats_from_modelopt(kRef / "modelopt047-lm-fp8-kv");
  Q::QuantizeOptions o = opts();
  ASSERT_EQ(o.weight_rounding, vlq::ops::Fp8Rounding::kSingle);
  Q::export_quantized(kBase, tmp_ / "out", plan(kBase, o), stats, o);
  auto a = vlq::io::Checkpoint::open(tmp_ / "out"), ref = vlq::io::Checkpoint::open(kRef / "modelopt047-lm-fp8-kv"),
       base = vlq::io::Checkpoint::open(kBase);
  ASSERT_EQ(a.names(), ref.names());
  std::size_t codes = 0, differ = 0;
  for (const auto& n : ref.names()) {
    auto da = a.data(n), dr = ref.data(n);
    ASSERT_EQ(da.size(), dr.size()) << n;
    if (a.info(n).dtype != vlq::DType::F8_E4M3) {
      EXPECT_EQ(std::memcmp(da.data(), dr.data(), da.size()), 0) << n;
      continue;
    }
    const std::string mod(F::module_of(n));
    const float s = f32_of(a, mod + ".weight_scale");
    std::vector<float> w(da.size());
    vlq::decode_to_f32(base.info(n).dtype, base.data(n), w);
    for (std::size_t i = 0; i < da.size(); ++i) {
      const auto qa = static_cast<std::uint8_t>(da[i]), qr = static_cast<std::uint8_t>(dr[i]);
      ASSERT_EQ(qa, vlq::f32_to_e4m3fn_sat(w[i] / s)) << n << "[" << i << "]";
      ++codes;
      if (qa != qr) {
        ++differ;
        EXPECT_LE(std::abs(int(qa & 0x7f) - int(qr & 0x7f)), 1) << n << "[" << i << "]";
      }
    }
  }
  EXPECT_GT(differ, 0u);
  EXPECT_LT(double(differ) / double(codes), 0.06) << differ << " of " << codes;
  EXPECT_EQ(read_json(tmp_ / "out" / "vlq_quantize.json")["weight_rounding"], "single");
}

// The runtime's in-memory quantization (ops::quantize_linear_fp8_static) is the export's recipe: for every
// quantized Linear of the reference export, the same scale and the same codes, in both roundings.
TEST_F(QuantExport, InMemoryQuantizationEqualsTheExport) {
  auto stats = stats_from_modelopt(kRef / "modelopt047-lm-fp8-kv");
  for (const auto rounding : {vlq::ops::Fp8Rounding::kSingle, vlq::ops::Fp8Rounding::kDouble}) {
    Q::QuantizeOptions o = opts();
    o.weight_rounding = rounding;
    fs::remove_all(tmp_ / "out");
    Q::ExportReport r = Q::export_quantized(kBase, tmp_ / "out", plan(kBase, o), stats, o);
    auto out = vlq::io::Checkpoint::open(tmp_ / "out"), base = vlq::io::Checkpoint::open(kBase);
    ASSERT_EQ(r.modules.size(), 14u);
    for (const auto& m : r.modules) {
      const std::string wn = m.checkpoint_module + ".weight";
      vlq::ops::LinearWeights lin;
      lin.name = m.checkpoint_module;
      lin.w.resize(static_cast<std::size_t>(base.info(wn).numel()));
      vlq::decode_to_f32(base.info(wn).dtype, base.data(wn), lin.w);
      vlq::ops::Fp8WeightRecipe recipe;
      recipe.rounding = rounding;
      vlq::ops::quantize_linear_fp8_static(lin, m.input_amax, recipe, base.info(wn).dtype);
      EXPECT_EQ(lin.weight_scale[0], f32_of(out, m.checkpoint_module + ".weight_scale")) << wn;
      EXPECT_EQ(*lin.input_scale, f32_of(out, m.checkpoint_module + ".input_scale")) << wn;
      auto q = out.data(wn);
      std::size_t mismatches = 0;
      for (std::size_t i = 0; i < q.size(); ++i)
        mismatches += lin.w[i] != vlq::e4m3fn_to_f32(static_cast<std::uint8_t>(q[i]));
      EXPECT_EQ(mismatches, 0u) << wn << " rounding " << vlq::ops::fp8_rounding_name(rounding);
    }
  }
}


// Default ModelOpt output for scope vlm: no orphan ViT K/V scales (VisionKvScales::kNone), KV scales not
// clamped, ModelOpt 0.47 exclusions (embedding + lm_head). vLLM 0.10 then loads it (§2.6: the orphans were
// the only blocker); vLLM 2026 cannot load an FP8 ViT in ModelOpt format, so --check vllm-latest refuses
// and writes nothing.
TEST_F(QuantExport, DefaultVlmWritesNoVisionOrphansAndChecksTargets) {
  auto stats = stats_from_modelopt(kRef / "modelopt-vlm-fp8-kv");
  Q::QuantizeOptions o = opts();
  o.scope = Q::Scope::kVisionLanguage;
  o.check_targets = {"vlq", "vllm-0.10"};
  Q::ExportReport r = Q::export_quantized(kBase, tmp_ / "out", plan(kBase, o), stats, o);
  EXPECT_EQ(r.vision_kv_scales, 0);
  EXPECT_EQ(r.quantized, 26);
  EXPECT_LT(r.k_scale.max, 1.0f);
  for (const auto& c : r.checks) EXPECT_NE(c.verdict, F::Verdict::kFails) << F::report_to_text(c);
  auto ck = vlq::io::Checkpoint::open(tmp_ / "out");
  for (const auto& n : ck.names()) EXPECT_EQ(n.find("attn.k_proj.k_scale") != std::string::npos && n.rfind("visual", 0) == 0, false) << n;
  json h = read_json(tmp_ / "out" / "hf_quant_config.json");
  EXPECT_EQ(h["quantization"]["exclude_modules"], json({"lm_head", "model.embed_tokens"}));

  o.check_targets = {"vllm-latest"};
  try {
    Q::export_quantized(kBase, tmp_ / "out2", plan(kBase, o), stats, o);
    FAIL() << "expected a ConfigError";
  } catch (const vlq::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("vllm-latest"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(tmp_ / "out2"));
}

// transformers-4.52 naming is kept: tensor names, KV-scale names and the exclude entry ("model.visual*").
TEST_F(QuantExport, KeepsTransformers452Naming) {
  const fs::path in = fs::path(VLQ_SOURCE_DIR) / "tests/data/tiny/qwen2_5_vl-bf16-hf452";
  Q::QuantizeOptions o = opts();
  Q::QuantPlan p = plan(in, o);
  Q::CalibrationStats s;
  for (const auto& m : p.modules)
    if (m.quantize) s.input_amax[m.canonical_module] = 2.0f;
  for (const auto& a : p.attention_modules_with_kv) s.k_amax[a] = s.v_amax[a] = 3.0f;
  Q::export_quantized(in, tmp_ / "out", p, s, o);
  auto ck = vlq::io::Checkpoint::open(tmp_ / "out");
  EXPECT_TRUE(ck.find("model.language_model.layers.0.self_attn.k_proj.k_scale").info);
  EXPECT_TRUE(ck.find("model.language_model.layers.0.self_attn.q_proj.weight_scale").info);
  json h = read_json(tmp_ / "out" / "hf_quant_config.json");
  const auto ex = h["quantization"]["exclude_modules"];
  EXPECT_NE(std::find(ex.begin(), ex.end(), json("model.visual*")), ex.end()) << ex.dump();
  EXPECT_EQ(F::verdict_name(F::check_checkpoint(tmp_ / "out", "vlq").verdict), F::verdict_name(F::Verdict::kLoads));
}

// A zero amax (Linear never activated) becomes scale 1.0 with a warning, as ModelOpt 0.47 exports it.
TEST_F(QuantExport, ZeroAmaxGivesScaleOneWithWarning) {
  auto stats = stats_from_modelopt(kRef / "modelopt047-lm-fp8-kv");
  stats.input_amax["model.language_model.layers.1.mlp.down_proj"] = 0.0f;
  Q::QuantizeOptions o = opts();
  Q::ExportReport r = Q::export_quantized(kBase, tmp_ / "out", plan(kBase, o), stats, o);
  ASSERT_FALSE(r.warnings.empty());
  EXPECT_NE(r.warnings.front().find("layers.1.mlp.down_proj"), std::string::npos);
  auto ck = vlq::io::Checkpoint::open(tmp_ / "out");
  EXPECT_EQ(f32_of(ck, "model.layers.1.mlp.down_proj.input_scale"), 1.0f);
}

// ---- refusals ---------------------------------------------------------------------------------------

TEST_F(QuantExport, MissingAmaxNamesTheModule) {
  auto stats = stats_from_modelopt(kRef / "modelopt047-lm-fp8-kv");
  stats.input_amax.erase("model.language_model.layers.0.mlp.up_proj");
  stats.k_amax.erase("model.language_model.layers.1.self_attn");
  Q::QuantizeOptions o = opts();
  try {
    Q::export_quantized(kBase, tmp_ / "out", plan(kBase, o), stats, o);
    FAIL();
  } catch (const vlq::ConfigError& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("model.language_model.layers.0.mlp.up_proj"), std::string::npos) << w;
    EXPECT_NE(w.find("k_amax[model.language_model.layers.1.self_attn]"), std::string::npos) << w;
  }
  EXPECT_FALSE(fs::exists(tmp_ / "out"));
  stats = stats_from_modelopt(kRef / "modelopt047-lm-fp8-kv");
  stats.input_amax["model.language_model.layers.0.mlp.up_proj"] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(Q::export_quantized(kBase, tmp_ / "out", plan(kBase, o), stats, o), vlq::ConfigError);
  EXPECT_FALSE(fs::exists(tmp_ / "out"));
}

TEST_F(QuantExport, ExistingOutRefusedUnlessForce) {
  auto stats = stats_from_modelopt(kRef / "modelopt047-lm-fp8-kv");
  Q::QuantizeOptions o = opts();
  fs::create_directories(tmp_ / "out");
  std::ofstream(tmp_ / "out" / "keep.txt") << "x";
  EXPECT_THROW(Q::export_quantized(kBase, tmp_ / "out", plan(kBase, o), stats, o), vlq::UsageError);
  EXPECT_TRUE(fs::exists(tmp_ / "out" / "keep.txt"));
  o.force = true;
  Q::export_quantized(kBase, tmp_ / "out", plan(kBase, o), stats, o);
  EXPECT_FALSE(fs::exists(tmp_ / "out" / "keep.txt"));
  EXPECT_TRUE(fs::exists(tmp_ / "out" / "model.safetensors"));
  // An output inside the input folder is refused even with force.
  EXPECT_THROW(Q::export_quantized(kBase, kBase / "q", plan(kBase, o), stats, o), vlq::UsageError);
  EXPECT_FALSE(fs::exists(kBase / "q"));
}

// ---- plan -------------------------------------------------------------------------------------------

using QuantPlanTest = QuantExport;

TEST_F(QuantPlanTest, ReasonsAndOrder) {
  Q::QuantPlan p = plan(kBase, opts());
  ASSERT_FALSE(p.modules.empty());
  EXPECT_EQ(p.modules.front().checkpoint_module, "visual.patch_embed.proj");
  EXPECT_FALSE(p.modules.front().is_linear);
  EXPECT_NE(p.modules.front().reason.find("Conv3d"), std::string::npos);
  EXPECT_EQ(p.modules.back().checkpoint_module, "lm_head");
  EXPECT_NE(p.modules.back().reason.find("lm_head excluded by default"), std::string::npos);
  const Q::ModulePlan* qkv = p.find("model.visual.blocks.0.attn.qkv");
  ASSERT_NE(qkv, nullptr);
  EXPECT_FALSE(qkv->quantize);
  EXPECT_EQ(qkv->reason, "scope lm: vision tower");
  const Q::ModulePlan* q = p.find("model.language_model.layers.0.self_attn.q_proj");
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(q->quantize);
  EXPECT_EQ(q->checkpoint_module, "model.layers.0.self_attn.q_proj");
  EXPECT_EQ(p.quantized_count(), 14);
  EXPECT_EQ(p.attention_modules_with_kv,
            (std::vector<std::string>{"model.language_model.layers.0.self_attn", "model.language_model.layers.1.self_attn"}));
  // --exclude by canonical or checkpoint name, wildcard or re:.
  Q::QuantizeOptions o = opts();
  o.exclude = {"model.language_model.layers.1", "re:model\\.layers\\.0\\.mlp\\.down"};
  p = plan(kBase, o);
  EXPECT_EQ(p.quantized_count(), 14 - 7 - 1);
  EXPECT_EQ(p.find("model.language_model.layers.0.mlp.down_proj")->reason, "--exclude 're:model\\.layers\\.0\\.mlp\\.down'");
  ASSERT_EQ(p.exclude_matches.size(), 2u);
  EXPECT_EQ(p.exclude_matches[0].second, 7);
  // No KV: no attention modules.
  o = opts();
  o.kv_cache_fp8 = false;
  EXPECT_TRUE(plan(kBase, o).attention_modules_with_kv.empty());
}

TEST_F(QuantPlanTest, ExcludeMatchingNothingIsAnError) {
  Q::QuantizeOptions o = opts();
  o.exclude = {"model.language_model.layers.7.*"};
  try {
    plan(kBase, o);
    FAIL();
  } catch (const vlq::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("layers.7"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("closest module"), std::string::npos) << e.what();
  }
  o.exclude = {"re:("};
  EXPECT_THROW(plan(kBase, o), vlq::ConfigError);
}

TEST_F(QuantPlanTest, Refusals) {
  Q::QuantizeOptions o = opts();
  o.pad = true;
  EXPECT_THROW(plan(kBase, o), vlq::UsageError);  // a flag that is never valid: exit 64
  o = opts();
  o.vision_kv = Q::VisionKvScales::kModelOpt;  // needs scope vlm
  EXPECT_THROW(plan(kBase, o), vlq::UsageError);
  o = opts();
  o.format = Q::ExportFormat::kCompressedTensors;
  o.modelopt_version_compat = "0.35";
  EXPECT_THROW(plan(kBase, o), vlq::UsageError);
  o = opts();
  o.modelopt_version_compat = "1.0";
  EXPECT_THROW(plan(kBase, o), vlq::UsageError);
  // An FP8 checkpoint is not quantized again.
  EXPECT_THROW(plan(kRef / "modelopt047-lm-fp8-kv", opts()), vlq::UsageError);
}

// Writes a BF16 checkpoint with the base config and the given tensor shapes (zeros) into `dir`.
void write_synthetic(const fs::path& dir, const std::vector<std::pair<std::string, std::vector<std::int64_t>>>& tensors) {
  fs::create_directories(dir);
  fs::copy_file(kBase / "config.json", dir / "config.json");
  std::vector<std::vector<std::byte>> bufs;
  std::vector<vlq::io::TensorData> td;
  for (const auto& [n, shape] : tensors) {
    vlq::io::TensorSpec s{n, vlq::DType::BF16, shape};
    bufs.emplace_back(s.nbytes());
  }
  for (std::size_t i = 0; i < tensors.size(); ++i)
    td.push_back({{tensors[i].first, vlq::DType::BF16, tensors[i].second}, bufs[i]});
  vlq::io::write_safetensors_file(dir / "model.safetensors", td);
}

TEST_F(QuantPlanTest, ScopeVlmWithoutVisionTowerIsAnError) {
  write_synthetic(tmp_ / "lm", {{"model.layers.0.self_attn.q_proj.weight", {64, 64}},
                                {"model.layers.0.self_attn.k_proj.weight", {32, 64}},
                                {"model.embed_tokens.weight", {512, 64}},
                                {"lm_head.weight", {512, 64}}});
  Q::QuantizeOptions o = opts();
  EXPECT_EQ(plan(tmp_ / "lm", o).quantized_count(), 2);
  o.scope = Q::Scope::kVisionLanguage;
  try {
    plan(tmp_ / "lm", o);
    FAIL();
  } catch (const vlq::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("vision tower"), std::string::npos) << e.what();
  }
}

// FP8 GEMM alignment: K and N multiples of 16, else kept BF16 with the reason (Qwen2.5-VL's ViT MLP has
// I_v = 3420 = 16·213.75). Zero weights also exercise the zero-amax path (scale 1.0).
TEST_F(QuantPlanTest, MisalignedLinearKeptWithReason) {
  write_synthetic(tmp_ / "m", {{"model.layers.0.mlp.gate_proj.weight", {3420, 64}},
                               {"model.layers.0.mlp.down_proj.weight", {64, 3420}},
                               {"model.layers.0.mlp.up_proj.weight", {128, 64}},
                               {"model.layers.0.self_attn.o_proj.weight", {64, 64}},
                               {"lm_head.weight", {512, 64}}});
  Q::QuantizeOptions o = opts();
  o.kv_cache_fp8 = false;
  Q::QuantPlan p = plan(tmp_ / "m", o);
  const auto* g = p.find("model.language_model.layers.0.mlp.gate_proj");
  ASSERT_NE(g, nullptr);
  EXPECT_FALSE(g->quantize);
  EXPECT_NE(g->reason.find("N=3420 not a multiple of 16"), std::string::npos) << g->reason;
  EXPECT_NE(p.find("model.language_model.layers.0.mlp.down_proj")->reason.find("K=3420"), std::string::npos);
  // up_proj is aligned, but runtimes fuse it with gate_proj into one gate_up_proj: kept with it.
  const auto* u = p.find("model.language_model.layers.0.mlp.up_proj");
  EXPECT_FALSE(u->quantize);
  EXPECT_NE(u->reason.find("fused sibling gate_proj"), std::string::npos) << u->reason;
  EXPECT_TRUE(p.find("model.language_model.layers.0.self_attn.o_proj")->quantize);
  Q::CalibrationStats s;
  s.input_amax["model.language_model.layers.0.self_attn.o_proj"] = 1.0f;
  Q::ExportReport r = Q::export_quantized(tmp_ / "m", tmp_ / "out", p, s, o);
  EXPECT_EQ(r.quantized, 1);
  EXPECT_EQ(r.modules.at(0).weight_scale, 1.0f);  // all-zero weight
  json qc = read_json(tmp_ / "out" / "config.json")["quantization_config"];
  EXPECT_EQ(qc["ignore"], json({"lm_head", "model.layers.0.mlp*"})) << qc.dump();
  EXPECT_FALSE(qc.contains("kv_cache_scheme"));
  EXPECT_TRUE(read_json(tmp_ / "out" / "hf_quant_config.json")["quantization"]["kv_cache_quant_algo"].is_null());
}

// --unaligned fp8: the same misaligned Linears are quantized, their reason says what it means for other runtimes.
TEST_F(QuantPlanTest, UnalignedFp8QuantizesMisalignedLinears) {
  write_synthetic(tmp_ / "m", {{"model.layers.0.mlp.gate_proj.weight", {3420, 64}},
                               {"model.layers.0.mlp.down_proj.weight", {64, 3420}},
                               {"model.layers.0.mlp.up_proj.weight", {3420, 64}},
                               {"lm_head.weight", {512, 64}}});
  Q::QuantizeOptions o = opts();
  o.kv_cache_fp8 = false;
  o.unaligned_fp8 = true;
  Q::QuantPlan p = plan(tmp_ / "m", o);
  for (const char* m : {"gate_proj", "up_proj", "down_proj"}) {
    const auto* x = p.find(std::string("model.language_model.layers.0.mlp.") + m);
    ASSERT_NE(x, nullptr);
    EXPECT_TRUE(x->quantize) << m;
    EXPECT_NE(x->reason.find("--unaligned fp8"), std::string::npos) << x->reason;
  }
}

// An --exclude of one q/k/v shard keeps its fused siblings too (vLLM builds one qkv_proj for the three).
TEST_F(QuantPlanTest, ExcludingOneFusedShardKeepsTheGroup) {
  write_synthetic(tmp_ / "m", {{"model.layers.0.self_attn.q_proj.weight", {64, 64}},
                               {"model.layers.0.self_attn.k_proj.weight", {32, 64}},
                               {"model.layers.0.self_attn.v_proj.weight", {32, 64}},
                               {"model.layers.0.self_attn.o_proj.weight", {64, 64}},
                               {"lm_head.weight", {512, 64}}});
  Q::QuantizeOptions o = opts();
  o.kv_cache_fp8 = false;
  o.exclude = {"model.layers.0.self_attn.k_proj"};
  Q::QuantPlan p = plan(tmp_ / "m", o);
  EXPECT_NE(p.find("model.language_model.layers.0.self_attn.k_proj")->reason.find("--exclude"), std::string::npos);
  for (const char* m : {"q_proj", "v_proj"}) {
    const auto* x = p.find(std::string("model.language_model.layers.0.self_attn.") + m);
    EXPECT_FALSE(x->quantize) << m;
    EXPECT_NE(x->reason.find("fused sibling k_proj"), std::string::npos) << x->reason;
  }
  EXPECT_TRUE(p.find("model.language_model.layers.0.self_attn.o_proj")->quantize);
}

// ---- calibration statistics JSON --------------------------------------------------------------------

TEST_F(QuantExport, CalibrationStatsJsonRoundTrip) {
  auto s = stats_from_modelopt(kRef / "modelopt047-vlm-fp8-kv-native");
  s.input_amax["x"] = 0x1.fffffep-3f;  // needs 9 significant digits
  s.samples = 3;
  s.text_tokens = 120;
  s.image_tokens = 77;
  Q::save_calibration_stats(s, tmp_ / "calib.json");
  EXPECT_EQ(Q::load_calibration_stats(tmp_ / "calib.json"), s);
  json j = Q::calibration_stats_to_json(s);
  j["k_amax"]["bad"] = -1.0;
  EXPECT_THROW(Q::calibration_stats_from_json(j), vlq::ConfigError);
  j = Q::calibration_stats_to_json(s);
  j["schema"] = "other";
  EXPECT_THROW(Q::calibration_stats_from_json(j), vlq::ConfigError);
}

}  // namespace
