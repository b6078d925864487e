// `vlq check` on tiny synthetic checkpoints: one test (or more) per loader/checker case of
// ../shared/docs/field-bug-classes.md (F01–F22, F25), each asserting the exact verdict and the named
// tensor/module, plus Profiles A/B/C of fp8-checkpoint-formats.md §6.
#include <gtest/gtest.h>

#include <cmath>

#include "formats/fixture_writer.h"
#include "vlq/core/error.h"
#include "vlq/formats/check.h"

using namespace vlq::formats;
using namespace vlq::testing;
using vlq::DType;

namespace {

Report check(const Fixture& f, const std::string& target, const CheckOptions& opts = {}) {
  TempDir d("check");
  f.write(d.path / "ckpt");
  return check_checkpoint(d.path / "ckpt", target, opts);
}

const Finding* find(const Report& r, const std::string& code) {
  auto v = r.with_code(code);
  return v.empty() ? nullptr : v.front();
}

std::string dump(const Report& r) { return report_to_text(r); }

#define EXPECT_VERDICT(r, v) EXPECT_EQ(verdict_name((r).verdict), verdict_name(v)) << dump(r)

}  // namespace

// ---- Profiles of fp8-checkpoint-formats.md §6 --------------------------------------------------------

TEST(CheckProfiles, ProfileB_WholeVlmModelOpt_KeyErrorOnVllm010) {
  QwenSpec s;
  s.vision_fp8 = true;
  s.vision_kv = true;
  Fixture f = make_qwen(s);
  Report r = check(f, "vllm-0.10");
  EXPECT_VERDICT(r, Verdict::kFails);
  const Finding* e = r.first_failure();
  ASSERT_NE(e, nullptr) << dump(r);
  EXPECT_EQ(e->code, "runtime_key_error");
  EXPECT_EQ(e->runtime_error, "KeyError: 'blocks.0.attn.k_proj.k_scale'");
  EXPECT_EQ(e->subject, "visual.blocks.0.attn.k_proj.k_scale");
  EXPECT_NE(e->hint.find("vlq convert"), std::string::npos);
  EXPECT_EQ(verdict_exit_code(r.verdict), 2);
  // Same with transformers-4.52 names: the mapper strips model.visual. first.
  s.legacy_names = false;
  r = check(make_qwen(s), "vllm-0.10");
  ASSERT_NE(r.first_failure(), nullptr);
  EXPECT_EQ(r.first_failure()->runtime_error, "KeyError: 'blocks.0.attn.k_proj.k_scale'");
  EXPECT_EQ(r.first_failure()->subject, "model.visual.blocks.0.attn.k_proj.k_scale");
}

TEST(CheckProfiles, ProfileB_WithoutOrphans_LoadsOn010_FailsOnLatest) {
  QwenSpec s;
  s.vision_fp8 = true;
  Fixture f = make_qwen(s);
  Report r010 = check(f, "vllm-0.10");
  EXPECT_VERDICT(r010, Verdict::kLoads);
  Report rl = check(f, "vllm-latest");
  EXPECT_VERDICT(rl, Verdict::kFails);
  ASSERT_NE(rl.first_failure(), nullptr);
  // visual.* is forced unquantized in VL-2026: the first ViT scale has no parameter.
  EXPECT_EQ(rl.first_failure()->runtime_error, "KeyError: 'blocks.0.attn.proj.input_scale'");
  EXPECT_EQ(rl.first_failure()->subject, "visual.blocks.0.attn.proj.input_scale");
  EXPECT_NE(rl.first_failure()->hint.find("--vision bf16"), std::string::npos);
  EXPECT_VERDICT(check(f, "vlq"), Verdict::kLoads);
}

TEST(CheckProfiles, ProfileA_LmOnlyModelOpt) {
  QwenSpec s;  // ModelOpt LM, ViT BF16 excluded with "visual*", both config files
  Fixture f = make_qwen(s);
  Report r = check(f, "vllm-0.10");
  EXPECT_VERDICT(r, Verdict::kLoadsWithWarnings);
  const Finding* w = find(r, "vision_fp8_without_scales");
  ASSERT_NE(w, nullptr) << dump(r);
  EXPECT_EQ(w->subject, "visual.blocks.0.attn.proj");
  EXPECT_FALSE(w->risk.empty());
  ASSERT_NE(find(r, "exclusions_not_read"), nullptr);
  EXPECT_VERDICT(check(f, "vllm-latest"), Verdict::kLoads);
  EXPECT_VERDICT(check(f, "vlq"), Verdict::kLoads);
}

TEST(CheckProfiles, ProfileC_CompressedTensorsLmOnly) {
  QwenSpec s;
  s.lm = LmQuant::kCtChannel;
  s.kv_style = KvStyle::kCanonical;
  Fixture f = make_qwen(s);
  EXPECT_VERDICT(check(f, "vllm-0.10"), Verdict::kLoads);
  EXPECT_VERDICT(check(f, "vllm-latest"), Verdict::kLoads);
  EXPECT_VERDICT(check(f, "vlq"), Verdict::kLoads);
  s.lm = LmQuant::kCtTensor;
  EXPECT_VERDICT(check(make_qwen(s), "vllm-0.10"), Verdict::kLoads);
}

// ---- F01 / F02 / F03 / F04: KV-cache scale spellings ------------------------------------------------

TEST(CheckF01, FusedNameKvScalesBindInVllmAndAreDroppedBySglang) {
  QwenSpec s;
  s.lm = LmQuant::kCtTensor;
  s.kv_style = KvStyle::kFusedQkv;  // self_attn.qkv_proj.k_scale
  Fixture f = make_qwen(s);
  Report r = check(f, "vllm-0.10");
  EXPECT_VERDICT(r, Verdict::kLoads);
  EXPECT_EQ(find(r, "kv_scales_dropped"), nullptr) << dump(r);
  const Finding* kv = find(r, "kv_cache");
  ASSERT_NE(kv, nullptr);
  EXPECT_NE(kv->message.find("4 KV scales bound"), std::string::npos) << kv->message;
  // The ModelOpt spelling binds too (fixing one spelling must not break the other).
  s.kv_style = KvStyle::kModelOpt;
  r = check(make_qwen(s), "vllm-0.10");
  EXPECT_EQ(find(r, "kv_scales_dropped"), nullptr) << dump(r);
  // SGLang's Qwen2 loader drops them: loads, KV scales ignored (warning).
  s.kv_style = KvStyle::kFusedQkv;
  r = check(make_qwen(s), "sglang");
  EXPECT_VERDICT(r, Verdict::kLoadsWithWarnings);
  const Finding* d = find(r, "kv_scales_dropped");
  ASSERT_NE(d, nullptr) << dump(r);
  EXPECT_EQ(d->subject, "model.layers.0.self_attn.qkv_proj.k_scale");
}

TEST(CheckF02, ThreeSpellingsSameCanonicalScalesSglangDropsAll) {
  struct Case {
    KvStyle style;
    bool single;
    std::string first;
  };
  const Case cases[] = {{KvStyle::kFusedQkv, false, "model.layers.0.self_attn.qkv_proj.k_scale"},
                        {KvStyle::kModelOpt, false, "model.layers.0.self_attn.k_proj.k_scale"},
                        {KvStyle::kCanonical, true, "model.layers.0.self_attn.kv_scale"}};
  for (const auto& c : cases) {
    QwenSpec s;
    s.kv_style = c.style;
    s.kv_single = c.single;
    Fixture f = make_qwen(s);
    TempDir d("f02");
    f.write(d.path);
    QuantLayout L = build_quant_layout(CheckpointView::open(d.path));
    ASSERT_EQ(L.kv_scales.size(), c.single ? 2u : 4u);
    EXPECT_EQ(L.kv_scales.front().canonical,
              c.single ? "model.language_model.layers.0.self_attn.kv_scale"
                       : "model.language_model.layers.0.self_attn.k_scale");
    EXPECT_EQ(L.kv_scales.front().value, 0.05f);
    Report r = check_view(CheckpointView::open(d.path), find_profile("sglang"));
    EXPECT_VERDICT(r, Verdict::kLoadsWithWarnings);
    ASSERT_NE(find(r, "kv_scales_dropped"), nullptr) << dump(r);
    EXPECT_EQ(find(r, "kv_scales_dropped")->subject, c.first);
    Report v = check_view(CheckpointView::open(d.path), find_profile("vllm-0.10"));
    EXPECT_EQ(find(v, "kv_scales_dropped"), nullptr) << dump(v);
  }
}

TEST(CheckF03, CanonicalSpellingBindsAndMissingScalesWarn) {
  // (1) self_attn.k_scale / v_scale bind to the attention layer.
  QwenSpec s;
  s.lm = LmQuant::kCtTensor;
  s.kv_style = KvStyle::kCanonical;
  Report r = check(make_qwen(s), "vllm-latest");
  EXPECT_VERDICT(r, Verdict::kLoads);
  EXPECT_NE(find(r, "kv_cache")->message.find("fp8 (declared by the checkpoint); 4 KV scales bound"),
            std::string::npos)
      << dump(r);
  // (2) FP8 KV declared, no KV tensors: runtimes use 1.0 → warning naming no tensor.
  Fixture f = make_qwen(s);
  f.remove_matching("_scale");  // drops weight/input scales too; put those back
  f = make_qwen(s);
  for (int l = 0; l < 2; ++l) {
    f.remove("model.layers." + std::to_string(l) + ".self_attn.k_scale");
    f.remove("model.layers." + std::to_string(l) + ".self_attn.v_scale");
  }
  r = check(f, "vllm-latest");
  EXPECT_VERDICT(r, Verdict::kLoadsWithWarnings);
  ASSERT_NE(find(r, "kv_scales_missing"), nullptr) << dump(r);
  // (3) declared KV for a runtime whose loader does not bind KV scales: "KV scales will be ignored".
  r = check(make_qwen(s), "sglang");
  ASSERT_NE(find(r, "kv_scales_dropped"), nullptr);
  EXPECT_EQ(find(r, "kv_scales_dropped")->subject, "model.layers.0.self_attn.k_scale");
}

TEST(CheckF04, EverySpellingIsRecognisedInALayout) {
  for (KvStyle st : {KvStyle::kModelOpt, KvStyle::kFusedQkv, KvStyle::kOutputScale, KvStyle::kCanonical}) {
    QwenSpec s;
    s.lm = LmQuant::kCtTensor;
    s.kv_style = st;
    Fixture f = make_qwen(s);
    std::vector<TensorMeta> metas;
    for (const auto& t : f.tensors) metas.push_back({t.name, t.dtype, t.shape, 0});
    QuantLayout L = build_quant_layout(CheckpointView::from_memory(metas, f.config, f.hf_quant));
    ASSERT_EQ(L.kv_scales.size(), 4u) << kv_style_name(st);
    std::set<std::string> canon;
    for (const auto& k : L.kv_scales) canon.insert(k.canonical);
    EXPECT_EQ(canon, (std::set<std::string>{"model.language_model.layers.0.self_attn.k_scale",
                                            "model.language_model.layers.0.self_attn.v_scale",
                                            "model.language_model.layers.1.self_attn.k_scale",
                                            "model.language_model.layers.1.self_attn.v_scale"}));
    // Old compressed-tensors k_proj.output_scale goes through get_cache_scale in vLLM and binds.
    Report r = check(f, "vllm-0.10");
    EXPECT_EQ(find(r, "kv_scales_dropped"), nullptr) << kv_style_name(st) << dump(r);
    EXPECT_VERDICT(r, Verdict::kLoads);
  }
}

// ---- F05 / F06 / F07 / F08 / F09: vision towers ----------------------------------------------------------

TEST(CheckF05, BF16VisionExcludedButRuntimeQuantizesVision) {
  QwenSpec s;
  s.legacy_names = false;  // model.visual.* with exclude "model.visual*"
  Fixture f = make_qwen(s);
  Report r = check(f, "vllm-0.10");
  EXPECT_VERDICT(r, Verdict::kLoadsWithWarnings);
  const Finding* w = find(r, "vision_fp8_without_scales");
  ASSERT_NE(w, nullptr) << dump(r);
  EXPECT_EQ(w->subject, "model.visual.blocks.0.attn.proj");
  // Runtimes that build the vision path unquantized (VL-2026, vlq) load it cleanly.
  EXPECT_VERDICT(check(f, "vllm-latest"), Verdict::kLoads);
  EXPECT_VERDICT(check(f, "vlq"), Verdict::kLoads);
}

TEST(CheckF06, TrtllmBuildsVisionFp8AndMissesScaleKeys) {
  QwenSpec s;
  Fixture f = make_qwen(s);
  Report r = check(f, "trtllm");
  EXPECT_VERDICT(r, Verdict::kFails);
  const Finding* e = r.first_failure();
  ASSERT_NE(e, nullptr) << dump(r);
  EXPECT_EQ(e->code, "runtime_missing_keys");
  EXPECT_EQ(e->subject, "visual.blocks.0.attn.proj");
  EXPECT_NE(e->runtime_error.find("Missing key(s)"), std::string::npos);
  EXPECT_NE(e->runtime_error.find("\"visual.blocks.0.attn.o_proj.weight_scale\""), std::string::npos) << e->runtime_error;
  EXPECT_NE(e->runtime_error.find("qkv_proj"), std::string::npos);
  // Derived buffers are never reported as missing checkpoint keys.
  EXPECT_EQ(e->runtime_error.find("inv_input_scale"), std::string::npos);
  EXPECT_EQ(e->runtime_error.find("kv_scales"), std::string::npos);
  EXPECT_VERDICT(check(f, "vlq"), Verdict::kLoads);
}

TEST(CheckF07, AscendRejectsFp8FormatByName) {
  QwenSpec s;
  s.lm = LmQuant::kCtTensor;
  s.kv_style = KvStyle::kCanonical;
  Report r = check(make_qwen(s), "vllm-ascend");
  EXPECT_VERDICT(r, Verdict::kFails);
  const Finding* e = r.first_failure();
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->code, "format_unsupported");
  EXPECT_NE(e->message.find("compressed-tensors"), std::string::npos);
  EXPECT_EQ(e->runtime_error, "KeyError: 'visual.blocks.0.attn.qkv.weight'");
  EXPECT_NE(e->message.find("Ascend A2/A3"), std::string::npos);
}

TEST(CheckF08, QuantizedVisionEncoder) {
  // compressed-tensors FP8 with the ViT quantized (recipe that ignores only lm_head): loads in vLLM 0.10
  // (its CT path quantizes the ViT), reported as an FP8 vision tower.
  QwenSpec s;
  s.lm = LmQuant::kCtTensor;
  s.kv_style = KvStyle::kCanonical;
  s.vision_fp8 = true;
  Report r = check(make_qwen(s), "vllm-0.10");
  EXPECT_VERDICT(r, Verdict::kLoads);
  ASSERT_NE(find(r, "vision_fp8"), nullptr);
  EXPECT_EQ(find(r, "vision_fp8")->subject, "visual.blocks.0.attn.proj");
  // ModelOpt FP8 ViT on a runtime that builds the vision tower unquantized: refused, tensor named.
  QwenSpec m;
  m.vision_fp8 = true;
  r = check(make_qwen(m), "vllm-latest");
  EXPECT_VERDICT(r, Verdict::kFails);
  EXPECT_EQ(r.first_failure()->subject, "visual.blocks.0.attn.proj.input_scale");
}

TEST(CheckF09, QuantizedProjectorOnUnquantizedVisionRuntime) {
  QwenSpec s;  // ModelOpt LM; ViT BF16 except the merger (projector)
  s.exclude = {"lm_head", "visual.blocks*"};
  s.exclude_set = true;
  Fixture f = make_qwen(s);
  for (const char* m : {"visual.merger.mlp.0", "visual.merger.mlp.2"}) {
    auto* w = f.find(std::string(m) + ".weight");
    w->dtype = DType::F8_E4M3;
    f.scalar(std::string(m) + ".weight_scale", 0.01f);
    f.scalar(std::string(m) + ".input_scale", 0.02f);
  }
  Report r = check(f, "vllm-latest");
  EXPECT_VERDICT(r, Verdict::kFails);
  ASSERT_NE(r.first_failure(), nullptr);
  EXPECT_EQ(r.first_failure()->runtime_error, "KeyError: 'merger.mlp.0.input_scale'");
  EXPECT_EQ(r.first_failure()->subject, "visual.merger.mlp.0.input_scale");
  EXPECT_VERDICT(check(f, "vlq"), Verdict::kLoads);
}

// ---- F10–F14: naming generations and exclusion lists ---------------------------------------------------

TEST(CheckF10, BothNamingGenerationsResolveToTheSameLayout) {
  QwenSpec a, b;
  b.legacy_names = false;
  TempDir d("f10");
  make_qwen(a).write(d / "legacy");
  make_qwen(b).write(d / "hf452");
  QuantLayout La = build_quant_layout(CheckpointView::open(d / "legacy"));
  QuantLayout Lb = build_quant_layout(CheckpointView::open(d / "hf452"));
  EXPECT_EQ(La.naming, NamingGeneration::kLegacy);
  EXPECT_EQ(Lb.naming, NamingGeneration::kTransformers452);
  ASSERT_EQ(La.linears.size(), Lb.linears.size());
  for (std::size_t i = 0; i < La.linears.size(); ++i) {
    EXPECT_EQ(La.linears[i].canonical, Lb.linears[i].canonical);
    EXPECT_EQ(La.linears[i].tensors, Lb.linears[i].tensors);
  }
  Report ra = check_checkpoint(d / "legacy", "vllm-0.10"), rb = check_checkpoint(d / "hf452", "vllm-0.10");
  EXPECT_EQ(ra.verdict, rb.verdict);
  ASSERT_NE(find(rb, "naming_generation"), nullptr);
  EXPECT_NE(find(rb, "naming_generation")->message.find("model.language_model"), std::string::npos);
}

TEST(CheckF11, IgnoreRegexMissedTheMergerOnHfNamesButMatchesRuntimeNames) {
  QwenSpec s;
  s.legacy_names = false;
  s.lm = LmQuant::kCtTensor;
  s.kv_style = KvStyle::kCanonical;
  Fixture f = make_qwen(s);
  std::vector<std::string> ignore = {"re:.*lm_head", "re:visual.*"};
  for (int b = 0; b < 2; ++b)
    for (const char* m : {"attn.qkv", "attn.proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
      ignore.push_back("model.visual.blocks." + std::to_string(b) + "." + m);
  f.qc()["ignore"] = ignore;
  for (const char* m : {"model.visual.merger.mlp.0", "model.visual.merger.mlp.2"}) {
    f.find(std::string(m) + ".weight")->dtype = DType::F8_E4M3;
    f.scalar(std::string(m) + ".weight_scale", 0.01f, DType::BF16, {1});
    f.scalar(std::string(m) + ".input_scale", 0.02f, DType::BF16, {1});
  }
  Report r = check(f, "vllm-0.10");
  // On checkpoint names `re:visual.*` matches nothing (re.match is anchored at the start) ...
  const Finding* n = find(r, "ignore_matches_nothing");
  ASSERT_NE(n, nullptr) << dump(r);
  EXPECT_EQ(n->subject, "re:visual.*");
  // ... but vLLM matches it against runtime names (visual.merger.mlp.0): the merger is built BF16 and
  // its scales have no parameter.
  EXPECT_VERDICT(r, Verdict::kFails);
  EXPECT_EQ(r.first_failure()->subject, "model.visual.merger.mlp.0.input_scale");
  EXPECT_EQ(r.first_failure()->runtime_error, "KeyError: 'merger.mlp.0.input_scale'");
  EXPECT_NE(r.first_failure()->message.find("excluded by 're:visual.*'"), std::string::npos);
}

TEST(CheckF12, StaleIgnoreListLeavesBf16VisionUncovered) {
  QwenSpec s;
  s.lm = LmQuant::kCtTensor;
  s.kv_style = KvStyle::kCanonical;
  Fixture f = make_qwen(s);
  // The saved ignore list names modules of an older module tree.
  f.qc()["ignore"] = {"lm_head", "visual.encoder.layers.0.attn.qkv", "visual.encoder.layers.1.attn.qkv"};
  Report r = check(f, "vllm-0.10");
  const Finding* b = find(r, "bf16_not_excluded");
  ASSERT_NE(b, nullptr) << dump(r);
  EXPECT_EQ(b->subject, "visual.blocks.0.attn.proj");
  const Finding* n = find(r, "ignore_matches_nothing");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->subject, "visual.encoder.layers.0.attn.qkv");
  // vLLM treats the vision layers as quantized: silent garbage, not an error.
  EXPECT_VERDICT(r, Verdict::kLoadsWithWarnings);
  const Finding* g = find(r, "vision_fp8_without_scales");
  ASSERT_NE(g, nullptr);
  EXPECT_NE(g->risk.find("garbage"), std::string::npos);
}

TEST(CheckF13, IgnoreListIsMappedToRuntimeNamesBeforeMatching) {
  const auto& v010 = find_profile("vllm-0.10");
  const auto& vl = find_profile("vllm-latest");
  const std::vector<std::string> ct = {"lm_head", "re:visual.*", "model.visual.merger.mlp.0"};
  struct Row {
    const RuntimeProfile* p;
    QuantFormat f;
    std::vector<std::string> entries;
    std::string hf;
    Tower tower;
    std::string runtime;
    std::string excluded_by;
  };
  const std::vector<Row> rows = {
      {&v010, QuantFormat::kCompressedTensors, ct, "model.visual.merger.mlp.0", Tower::kVision, "visual.merger.mlp.0",
       "re:visual.*"},
      {&v010, QuantFormat::kCompressedTensors, {"lm_head", "model.visual.merger.mlp.0"}, "model.visual.merger.mlp.0",
       Tower::kVision, "visual.merger.mlp.0", "visual.merger.mlp.0"},
      {&v010, QuantFormat::kCompressedTensors, {"lm_head", "model.visual.merger.mlp.0"}, "visual.merger.mlp.2",
       Tower::kVision, "visual.merger.mlp.2", ""},
      {&v010, QuantFormat::kCompressedTensors, ct, "model.visual.blocks.0.attn.qkv", Tower::kVision,
       "visual.blocks.0.attn.qkv", "re:visual.*"},
      {&v010, QuantFormat::kCompressedTensors, ct, "visual.blocks.0.mlp.up_proj", Tower::kVision,
       "visual.blocks.0.mlp.gate_up_proj", "re:visual.*"},
      {&v010, QuantFormat::kCompressedTensors, ct, "model.language_model.layers.0.mlp.up_proj", Tower::kLanguage,
       "language_model.model.layers.0.mlp.gate_up_proj", ""},
      // ModelOpt wildcard: literal substring in 0.10 (never matches), fnmatch after the split in VL-2026.
      {&v010, QuantFormat::kModelOpt, {"model.visual*"}, "model.visual.blocks.0.attn.qkv", Tower::kVision,
       "visual.blocks.0.attn.qkv", ""},
      {&vl, QuantFormat::kModelOpt, {"model.visual*"}, "model.visual.blocks.0.attn.qkv", Tower::kVision,
       "visual.blocks.0.attn.qkv", "visual.*"},
      {&v010, QuantFormat::kModelOpt, {"visual"}, "visual.merger.mlp.2", Tower::kVision, "visual.merger.mlp.2",
       "visual"},
      {&vl, QuantFormat::kModelOpt, {"lm_head"}, "lm_head", Tower::kHead, "language_model.lm_head", "lm_head"},
  };
  for (const auto& row : rows) {
    std::string rt = runtime_module_name(*row.p, row.hf, row.tower);
    EXPECT_EQ(rt, row.runtime) << row.p->id << " " << row.hf;
    ExclusionResult e = runtime_exclusion(*row.p, row.f, row.entries, rt);
    EXPECT_FALSE(e.fused_mismatch);
    EXPECT_EQ(e.entry, row.excluded_by) << row.p->id << " " << row.hf;
  }
}

TEST(CheckF14, IgnoreEntryWithRuntimeSpellingMatchesNothing) {
  QwenSpec s;
  s.lm = LmQuant::kCtTensor;
  s.kv_style = KvStyle::kCanonical;
  Fixture f = make_qwen(s);
  std::vector<std::string> ignore = f.qc()["ignore"];
  for (auto& e : ignore)
    if (e.size() > 8 && e.substr(e.size() - 8) == "attn.qkv") e += "_proj";  // attn.qkv → attn.qkv_proj
  f.qc()["ignore"] = ignore;
  Report r = check(f, "vllm-0.10");
  const Finding* n = find(r, "ignore_matches_nothing");
  ASSERT_NE(n, nullptr) << dump(r);
  EXPECT_EQ(n->subject, "visual.blocks.0.attn.qkv_proj");
  EXPECT_NE(n->message.find("closest module: visual.blocks.0.attn.qkv"), std::string::npos) << n->message;
  EXPECT_VERDICT(r, Verdict::kLoadsWithWarnings);
  const Finding* g = find(r, "vision_fp8_without_scales");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->subject, "visual.blocks.0.attn.qkv");
}

// ---- F15 / F16 / F17 / F18: configs and scales -------------------------------------------------------

TEST(CheckF15, DetectionMatrixAndScalesWithoutConfig) {
  for (int c = 0; c < 3; ++c) {
    QwenSpec s;
    s.hf_quant_config = c != 1;
    s.config_json_quant = c != 0;
    Fixture f = make_qwen(s);
    Report r = check(f, "vlq");
    EXPECT_VERDICT(r, Verdict::kLoads);
    Report v = check(f, "vllm-0.10");
    ASSERT_NE(find(v, "config_read"), nullptr);
    EXPECT_EQ(find(v, "config_read")->subject, c == 0 ? "hf_quant_config.json" : "config.json");
    EXPECT_NE(v.verdict, Verdict::kFails) << dump(v);
  }
  QwenSpec s;
  s.hf_quant_config = false;
  s.config_json_quant = false;
  Fixture f = make_qwen(s);
  Report r = check(f, "vlq");
  EXPECT_VERDICT(r, Verdict::kFails);
  EXPECT_EQ(r.first_failure()->code, "no_quant_config");
  EXPECT_EQ(r.first_failure()->subject, "model.layers.0.mlp.down_proj.input_scale");
  Report v = check(f, "vllm-0.10");
  EXPECT_VERDICT(v, Verdict::kFails);
  EXPECT_EQ(v.first_failure()->runtime_error, "KeyError: 'layers.0.mlp.down_proj.input_scale'");
}

TEST(CheckF16, BothConfigFilesCompared) {
  QwenSpec s;
  Fixture agree = make_qwen(s);
  Report r = check(agree, "vllm-latest");
  EXPECT_EQ(find(r, "config_files_disagree"), nullptr) << dump(r);
  // (b) FP8 KV declared in hf_quant_config.json only.
  Fixture kv = make_qwen(s);
  kv.qc().erase("kv_cache_scheme");
  r = check(kv, "vllm-latest");
  const Finding* d = find(r, "config_files_disagree");
  ASSERT_NE(d, nullptr) << dump(r);
  EXPECT_EQ(d->subject, "kv_cache");
  EXPECT_EQ(r.summary.kv_cache, "model dtype (no FP8 KV declared as this runtime reads it)");
  EXPECT_EQ(check(kv, "trtllm").summary.kv_cache, "fp8 (declared by hf_quant_config.json)");
  // (c) different quant_algo.
  Fixture algo = make_qwen(s);
  algo.qc()["quant_algo"] = "FP8_PER_CHANNEL_PER_TOKEN";
  r = check(algo, "vllm-0.10");
  ASSERT_NE(find(r, "config_files_disagree"), nullptr);
  EXPECT_EQ(find(r, "config_files_disagree")->subject, "quant_algo");
  // vLLM 0.10 reads config.json and does not accept that algo.
  EXPECT_VERDICT(r, Verdict::kFails);
  EXPECT_EQ(r.first_failure()->code, "quant_algo_unsupported");
  // hf_quant_config.json alone on vLLM 0.10: the KV declaration is read but not used.
  QwenSpec h;
  h.config_json_quant = false;
  EXPECT_EQ(check(make_qwen(h), "vllm-0.10").summary.kv_cache,
            "model dtype; fp8 only with --kv-cache-dtype fp8 (the declaration is not used)");
}

TEST(CheckF17, KvScaleValues) {
  // All exactly 1.0 from a producer that does not clamp: probably uncalibrated.
  QwenSpec s;
  s.lm = LmQuant::kCtTensor;
  s.kv_style = KvStyle::kCanonical;
  s.kv_value = 1.0f;
  Report r = check(make_qwen(s), "vlq");
  EXPECT_VERDICT(r, Verdict::kLoadsWithWarnings);
  ASSERT_NE(find(r, "kv_scales_uncalibrated"), nullptr) << dump(r);
  EXPECT_EQ(find(r, "kv_scales_uncalibrated")->subject, "model.layers.0.self_attn.k_scale");
  // ModelOpt <= 0.42 clamps to >= 1.0: 1.0 cannot be told from uncalibrated, so the same warning (exit 1),
  // with a message saying why and the recalibration hint.
  QwenSpec m;
  m.kv_value = 1.0f;
  r = check(make_qwen(m), "vlq");
  EXPECT_VERDICT(r, Verdict::kLoadsWithWarnings);
  EXPECT_EQ(find(r, "kv_scales_clamped"), nullptr);
  ASSERT_NE(find(r, "kv_scales_uncalibrated"), nullptr) << dump(r);
  EXPECT_EQ(find(r, "kv_scales_uncalibrated")->severity, Severity::kWarning);
  EXPECT_NE(find(r, "kv_scales_uncalibrated")->message.find("clamps FP8 KV scales to >= 1.0"), std::string::npos);
  EXPECT_NE(find(r, "kv_scales_uncalibrated")->message.find("indistinguishable from uncalibrated"), std::string::npos);
  EXPECT_EQ(find(r, "kv_scales_uncalibrated")->hint.rfind("recalibrate the KV cache (vlq quantize --kv-cache fp8)", 0), 0u);
  m.modelopt_version = "0.43.0";
  r = check(make_qwen(m), "vlq");
  ASSERT_NE(find(r, "kv_scales_uncalibrated"), nullptr);
  EXPECT_NE(find(r, "kv_scales_uncalibrated")->message.find("probably never calibrated"), std::string::npos);
  // <= 0, NaN, Inf: the checkpoint is invalid (exit 3), tensor named.
  for (float bad : {0.0f, -0.5f, NAN, INFINITY}) {
    Fixture f = make_qwen(QwenSpec{});
    f.scalar("model.layers.1.self_attn.v_proj.v_scale", bad);
    Report b = check(f, "vllm-0.10");
    EXPECT_VERDICT(b, Verdict::kInvalid);
    EXPECT_EQ(verdict_exit_code(b.verdict), 3);
    ASSERT_NE(find(b, "kv_scale_value"), nullptr);
    EXPECT_EQ(find(b, "kv_scale_value")->subject, "model.layers.1.self_attn.v_proj.v_scale");
  }
}

TEST(CheckF18, FusedShardsWithDifferentScales) {
  QwenSpec s;
  Fixture f = make_qwen(s);
  f.scalar("model.layers.0.self_attn.q_proj.weight_scale", 0.01f);
  f.scalar("model.layers.0.self_attn.k_proj.weight_scale", 0.02f);
  f.scalar("model.layers.0.self_attn.v_proj.weight_scale", 0.005f);
  f.scalar("model.layers.0.self_attn.k_proj.input_scale", 0.03f);
  Report r = check(f, "vllm-latest");
  EXPECT_VERDICT(r, Verdict::kLoads);
  const Finding* i = find(r, "fused_scales_differ");
  ASSERT_NE(i, nullptr) << dump(r);
  EXPECT_EQ(i->subject, "model.layers.0.self_attn.qkv_proj");
  EXPECT_NE(i->message.find("largest ratio 4"), std::string::npos) << i->message;
}

// ---- F19 / F21 / F22 / F25 ------------------------------------------------------------------------

TEST(CheckF19, VisionMlpWidth3420NotFp8Aligned) {
  QwenSpec s;
  s.vision_fp8 = true;
  s.vinter = 3420;
  s.vdepth = 1;
  Fixture f = make_qwen(s);
  Report r = check(f, "vllm-0.10");
  EXPECT_VERDICT(r, Verdict::kLoadsWithWarnings);
  const Finding* a = find(r, "fp8_gemm_alignment");
  ASSERT_NE(a, nullptr) << dump(r);
  EXPECT_EQ(a->subject, "visual.blocks.0.mlp.down_proj");
  EXPECT_NE(a->message.find("K=3420"), std::string::npos) << a->message;
  EXPECT_NE(a->hint.find("--vision bf16"), std::string::npos);
  Report sg = check(f, "sglang");
  ASSERT_NE(find(sg, "fp8_gemm_alignment"), nullptr);
  EXPECT_EQ(find(sg, "fp8_gemm_alignment")->severity, Severity::kInfo);  // padded since PR #10112
  // vlq runs it (its CUDA path pads the vision MLP width): an info finding that says so.
  Report vq = check(f, "vlq");
  const Finding* v = find(vq, "fp8_gemm_alignment");
  ASSERT_NE(v, nullptr) << dump(vq);
  EXPECT_EQ(v->severity, Severity::kInfo);
  EXPECT_NE(v->message.find("zero-pads"), std::string::npos) << v->message;
  EXPECT_VERDICT(vq, Verdict::kLoads);
}

TEST(CheckF21, UnknownSafetensorsDtypeMakesTheCheckpointInvalid) {
  Fixture f = make_qwen(QwenSpec{});
  f.dtype_override["model.layers.0.mlp.down_proj.weight"] = "F8_E4M3FN";
  Report r = check(f, "vllm-0.10");
  EXPECT_VERDICT(r, Verdict::kInvalid);
  ASSERT_NE(find(r, "unreadable"), nullptr);
  EXPECT_NE(find(r, "unreadable")->message.find("F8_E4M3FN"), std::string::npos) << dump(r);
  EXPECT_NE(find(r, "unreadable")->subject.find("model.layers.0.mlp.down_proj.weight"), std::string::npos) << dump(r);
}

TEST(CheckF22, FusedNameExclusionMatching) {
  // Layer 0 attention kept BF16 and excluded by its three shard names.
  QwenSpec s;
  s.config_json_quant = false;  // so that vLLM 0.10 reads the exclusions (hf_quant_config.json)
  Fixture f = make_qwen(s);
  std::vector<std::string> excl = {"lm_head", "visual*"};
  for (const char* p : {"q_proj", "k_proj", "v_proj"}) {
    std::string m = std::string("model.layers.0.self_attn.") + p;
    excl.push_back(m);
    f.remove(m + ".weight_scale").remove(m + ".input_scale");
    f.find(m + ".weight")->dtype = DType::BF16;
  }
  (*f.hf_quant)["quantization"]["exclude_modules"] = excl;
  // VL-2026: exact, fused-aware match → qkv_proj excluded; the ViT is forced BF16.
  EXPECT_VERDICT(check(f, "vllm-latest"), Verdict::kLoads);
  // VL-0.10: substring test on "…self_attn.qkv_proj" misses the shard names → built FP8 → garbage.
  Report r = check(f, "vllm-0.10");
  EXPECT_VERDICT(r, Verdict::kLoadsWithWarnings);
  const Finding* g = find(r, "fp8_without_scales");
  ASSERT_NE(g, nullptr) << dump(r);
  EXPECT_EQ(g->subject, "model.layers.0.self_attn.q_proj");
  // Only some shards excluded: VL-2026 refuses the fused layer.
  excl.pop_back();
  (*f.hf_quant)["quantization"]["exclude_modules"] = excl;
  r = check(f, "vllm-latest");
  EXPECT_VERDICT(r, Verdict::kFails);
  EXPECT_EQ(r.first_failure()->code, "fused_exclusion_mismatch");
  EXPECT_NE(r.first_failure()->runtime_error.find("language_model.model.layers.0.self_attn.qkv_proj"),
            std::string::npos);
}

TEST(CheckF25, SpecialTokensComparedWithTheBaseModel) {
  TempDir d("f25");
  Fixture base = make_qwen(QwenSpec{});
  base.files["generation_config.json"] = R"({"bos_token_id": 1000, "eos_token_id": [1002, 1000], "pad_token_id": 1000})";
  base.files["tokenizer_config.json"] = R"({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})";
  base.write(d / "base");
  Fixture q = base;
  q.files["generation_config.json"] = R"({"bos_token_id": 1000, "eos_token_id": 1000, "pad_token_id": 1000})";
  q.write(d / "q");
  CheckOptions o;
  o.base_model = d / "base";
  Report r = check_checkpoint(d / "q", "vlq", o);
  EXPECT_VERDICT(r, Verdict::kLoadsWithWarnings);
  const Finding* t = find(r, "special_tokens_changed");
  ASSERT_NE(t, nullptr) << dump(r);
  EXPECT_EQ(t->subject, "generation_config.json eos_token_id");
  EXPECT_VERDICT(check_checkpoint(d / "base", "vlq", o), Verdict::kLoads);
}

// ---- structural validity ------------------------------------------------------------------------

TEST(CheckInvalid, ScaleShapesNameTensorExpectedAndFound) {
  Fixture f = make_qwen(QwenSpec{});
  f.add("model.layers.0.self_attn.o_proj.weight_scale", DType::F32, {3});
  Report r = check(f, "vllm-0.10");
  EXPECT_VERDICT(r, Verdict::kInvalid);
  const Finding* s = find(r, "scale_shape");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->subject, "model.layers.0.self_attn.o_proj.weight_scale");
  EXPECT_NE(s->message.find("has shape [3]"), std::string::npos) << s->message;
  EXPECT_NE(s->message.find("expected [] or [1] (per-tensor), [64] or [64,1]"), std::string::npos) << s->message;
  // FP8 weight without its scale.
  Fixture g = make_qwen(QwenSpec{});
  g.remove("model.layers.1.mlp.up_proj.weight_scale");
  r = check(g, "vlq");
  EXPECT_VERDICT(r, Verdict::kInvalid);
  EXPECT_EQ(find(r, "fp8_weight_without_scale")->subject, "model.layers.1.mlp.up_proj.weight");
  // Per-channel [N,1], [N] and block grids are accepted.
  QwenSpec c;
  c.lm = LmQuant::kCtChannel;
  c.kv_style = KvStyle::kCanonical;
  Fixture h = make_qwen(c);
  h.add("model.layers.0.mlp.down_proj.weight_scale", DType::BF16, {64}, {0.01f});
  EXPECT_VERDICT(check(h, "vlq"), Verdict::kLoads);
}

// The special-token audit reads metadata with the one JSON reader: a tokenizer_config.json that exists but
// is not JSON is reported (invalid, exit 3, file named), never taken for an absent file.
TEST(CheckInvalid, BrokenTokenizerConfigIsNamed) {
  Fixture f = make_qwen(QwenSpec{});
  f.files["tokenizer_config.json"] = R"({"eos_token": )";
  Report r = check(f, "vlq");
  EXPECT_VERDICT(r, Verdict::kInvalid);
  const Finding* u = find(r, "unreadable");
  ASSERT_NE(u, nullptr) << dump(r);
  EXPECT_NE(u->subject.find("tokenizer_config.json"), std::string::npos) << u->subject;
  EXPECT_NE(u->message.find("invalid JSON"), std::string::npos) << u->message;
}

// `vlq check` reads the exclusion list a runtime reads through the parsed declaration: VL-0.10 reads only
// `exclude_modules` of the ModelOpt config.json form, so an `ignore`-only file loses every exclusion.
TEST(CheckConfig, ExclusionKeyReadFromTheDeclaration) {
  QwenSpec s;
  s.hf_quant_config = false;
  Fixture f = make_qwen(s);
  ASSERT_TRUE(f.qc().contains("ignore"));
  ASSERT_FALSE(f.qc().contains("exclude_modules"));
  Report r = check(f, "vllm-0.10");
  const Finding* x = find(r, "exclusions_not_read");
  ASSERT_NE(x, nullptr) << dump(r);
  EXPECT_NE(x->message.find("reads 'exclude_modules'"), std::string::npos) << x->message;
  EXPECT_NE(r.summary.config_read.find("'exclude_modules' (absent"), std::string::npos) << r.summary.config_read;
}

TEST(CheckInvalid, UnreadableFolderIsExit3) {
  TempDir d("empty");
  Report r = check_checkpoint(d.path, "vlq");
  EXPECT_VERDICT(r, Verdict::kInvalid);
  EXPECT_THROW(check_checkpoint(d.path, "no-such-runtime"), vlq::UsageError);
}

TEST(CheckJson, SchemaFields) {
  QwenSpec s;
  s.vision_fp8 = true;
  s.vision_kv = true;
  Report r = check(make_qwen(s), "vllm-0.10");
  auto j = report_to_json(r);
  EXPECT_EQ(j["schema"], "vlq.check/1");
  EXPECT_EQ(j["verdict"], "fails");
  EXPECT_EQ(j["exit_code"], 2);
  EXPECT_EQ(j["target"]["id"], "vllm-0.10");
  ASSERT_TRUE(j["findings"].is_array());
  EXPECT_EQ(j["findings"][0]["severity"], "error");
  EXPECT_EQ(j["findings"][0]["runtime_error"], "KeyError: 'blocks.0.attn.k_proj.k_scale'");
  EXPECT_EQ(j["layout"]["vision_fp8_linears"], 12);
}

TEST(CheckScope, OtherArchitecturesAreNotSimulated) {
  Fixture f = make_qwen(QwenSpec{});
  (*f.config)["architectures"] = {"Gemma3ForConditionalGeneration"};
  Report r = check(f, "vllm-0.10");
  EXPECT_VERDICT(r, Verdict::kLoadsWithWarnings);
  ASSERT_NE(find(r, "not_analysed"), nullptr);
  EXPECT_EQ(r.first_failure(), nullptr);
}
