// The built-in runtime profiles (data only); see include/vlq/formats/runtime_profile.h and
// docs/runtime-profiles.md for the source and verification marker of every entry.
#include "vlq/formats/runtime_profile.h"

#include <algorithm>
#include <optional>

#include "vlq/core/error.h"

namespace vlq::formats {

namespace {

const char* kCtFusedError =
    "ValueError: Found a different quantization schemes for {shards} in {prefix}. vLLM requires all to use the "
    "same scheme.";
const char* kMoFusedError =
    "ValueError: Detected some but not all shards of {prefix} are quantized. All shards of fused layers to have "
    "the same precision.";
const char* kVllmUnaligned =
    "FP8 GEMMs need K and N to be multiples of 16 (CUTLASS scaled_mm, torch._scaled_mm): vLLM falls back to a "
    "slower Triton kernel in cutlass_scaled_mm, and other FP8 paths assert (vLLM issue #17595, "
    "AssertionError in the Qwen2.5-VL vision MLP) [I]";

RuntimeProfile vllm_010() {
  RuntimeProfile p;
  p.id = "vllm-0.10";
  p.title = "vLLM 0.10.x (upstream main 2025-08-18, commit 0dd3f4f5)";
  p.sources = "fp8-checkpoint-formats.md §2.1-§2.7, §3.5";
  p.kind = LoaderKind::kVllmFamily;
  p.config.config_json_first = true;
  p.config.cfgjson_exclude_key = "exclude_modules";
  p.config.cfgjson_kv_from_scheme = false;
  p.config.modelopt_algos = {"FP8"};
  p.config.kv_dtype_from_checkpoint = false;
  p.modelopt_exclusion = {false, false, MatchPolicy{MatchMode::kExact, {MatchMode::kSubstring}, true}, false, ""};
  p.ct_exclusion = {true, false, MatchPolicy{MatchMode::kRegexMatch, {MatchMode::kExact}, false}, true, kCtFusedError};
  p.prefix = vllm_qwen2_5_vl_mapper();
  p.top_class = "Qwen2_5_VLForConditionalGeneration";
  p.top_modules = {"visual", "language_model"};
  p.vision_root = "visual";
  p.lm_root = "language_model.model";
  p.lm_class = "Qwen2ForCausalLM";
  p.lm_head = "language_model.lm_head";
  p.lm_stacking = vllm_qwen2_lm_stacking();
  p.vision_stacking = vllm_qwen2_5_vision_fusion();
  p.packed_modules = qwen2_lm_fusion().rules;
  p.vision_gets_quant_config = true;
  p.lm_head_quantizable = false;
  p.attention_kv_params_always = true;
  p.vision_unknown = UnknownName::kKeyError;
  p.lm_unknown = UnknownName::kKeyError;
  p.kv_remap_after_stacking = true;
  p.kv_remap = vllm_kv_scale_remap();
  p.fp8_gemm_align = 16;
  p.unaligned_severity = Severity::kWarning;
  p.unaligned_text = kVllmUnaligned;
  p.modelopt_kv_style = KvStyle::kModelOpt;
  p.ct_kv_style = KvStyle::kCanonical;
  p.vision_exclude_extra = {"visual"};
  p.write_cfgjson_exclude_modules = true;
  p.default_vision = "bf16";
  p.notes = {
      "[V] config.json quantization_config wins; hf_quant_config.json is read only without it (§2.1)",
      "[V] config.json ModelOpt form: reads top-level quant_algo, kv_cache_quant_algo, exclude_modules; "
      "`ignore` and `kv_cache_scheme` are not read (§2.2)",
      "[V] ModelOpt exclusion = substring test (`entry in prefix`, also after stripping `language_model.`); "
      "no wildcard, no name mapping (§2.2)",
      "[V] compressed-tensors ignore list mapped through hf_to_vllm_mapper, exact or re.match, fused shards must "
      "agree (§3.5)",
      "[V] the ViT receives the quantization config; no vision special case (§2.2, §2.5)",
      "[V] vision loader: stacking attn.q/k/v → attn.qkv, gate/up → gate_up_proj, otherwise params_dict[name] "
      "(KeyError) (§2.5)",
      "[V] decoder loader: stacking (substring), then maybe_remap_kv_scale_name for *scale names; unknown KV "
      "scales are skipped with a warning (§2.4)",
      "[I] KV-cache dtype is not switched by the checkpoint: FP8 KV needs --kv-cache-dtype fp8 (§2.4)",
      "[I] a quantized Linear whose checkpoint weight is BF16 keeps unloaded scales (float32 min) (§2.3, §2.7)",
      "[I] FP8 GEMM alignment: 16 (CUTLASS); unaligned shapes fall back to Triton or assert (F19)",
  };
  return p;
}

RuntimeProfile vllm_latest() {
  RuntimeProfile p = vllm_010();
  p.id = "vllm-latest";
  p.title = "vLLM 2026 (modelopt.py at commit 00155cde, upstream main 2026-02-10)";
  p.sources = "fp8-checkpoint-formats.md §2.8 (on top of §2.1-§2.6), §3.5";
  p.config.cfgjson_exclude_key = "ignore";
  p.config.cfgjson_kv_from_scheme = true;
  p.config.modelopt_algos = {"FP8", "FP8_PER_CHANNEL_PER_TOKEN", "FP8_PB_WO"};
  p.config.kv_dtype_from_checkpoint = true;
  p.modelopt_exclusion = {true, true,
                          MatchPolicy{MatchMode::kExact, {MatchMode::kSubstring, MatchMode::kFnmatch}, true}, true,
                          kMoFusedError};
  p.modelopt_forced_unquantized = {"vision_tower", "vision_model", "visual"};
  p.lm_head_quantizable = true;
  p.kv_remap.push_back({".q_scale", ".attn.q_scale"});
  p.vision_exclude_extra = {};
  p.write_cfgjson_exclude_modules = false;
  p.notes = {
      "[V] PR #24178: ModelOpt exclude list passed through hf_to_vllm_mapper; exact fused-aware is_layer_skipped",
      "[V] PR #25706: config.json form reads `ignore`",
      "[V] PR #28076: fnmatch wildcard matching of exclude entries (substring test kept)",
      "[V] PR #30164: `name*` split into `name` and `name.*` before mapping",
      "[V] VL-2026: Linear prefixes containing vision_tower / vision_model / visual are forced unquantized",
      "[V] VL-2026: config.json kv_cache_scheme {float, 8} read as FP8 KV; PR #29980 honours kv_cache_quant_algo",
      "[V] vision loader unchanged: params_dict[name] (KeyError) (§2.5)",
      "[I] an FP8 ViT in ModelOpt format fails on its weight_scale / input_scale (§2.8)",
      "[I] lm_head can take a quant method (ParallelLMHead accepted); ModelOpt always excludes lm_head",
      "[U] compressed-tensors handling assumed unchanged from 0.10 (§6: not analysed)",
  };
  return p;
}

// SGLang: vLLM 0.10's Qwen2.5-VL loader (stacking, KV remap, exclusion matching) with its own names (one flat
// loader over the legacy names), config reading, KV-scale handling and vision-MLP padding.
RuntimeProfile sglang() {
  RuntimeProfile p = vllm_010();
  p.id = "sglang";
  p.title = "SGLang main (2026-09)";
  p.sources = "field-bug-classes.md F02, F15, F19; fp8-checkpoint-formats.md §2 for the shared vLLM-derived parts";
  p.config.cfgjson_exclude_key = "ignore";
  p.config.cfgjson_kv_from_scheme = true;
  p.modelopt_exclusion.fused_exact = true;
  p.modelopt_exclusion.fused_error = kMoFusedError;
  p.ct_exclusion.apply_mapper = false;
  p.prefix = qwen_vl_canonical_to_legacy();
  p.top_modules = {"visual", "model", "lm_head"};
  p.vision_root = "";  // one flat loader: errors name the full name
  p.lm_root = "";
  p.lm_class = "Qwen2_5_VLForConditionalGeneration";
  p.lm_head = "lm_head";
  p.attention_kv_params_always = false;
  p.kv_scales_bind = false;
  p.unaligned_severity = Severity::kInfo;
  p.unaligned_text = "SGLang pads the Qwen2.5-VL vision MLP to a multiple of 8 at load (PR #10112)";
  p.write_cfgjson_exclude_modules = false;
  p.notes = {
      "[V] F15/PR #13919: ModelOpt detected from hf_quant_config.json and from config.json quantization_config",
      "[V] F02 (issue #39942, PR #39943 open): the Qwen2 loader drops k_proj.k_scale, qkv_proj.k_scale and "
      "kv_scale; the KV cache runs with scale 1.0",
      "[V] F19/PR #10112: vision MLP width padded for FP8 kernels",
      "[I] exclusion: exact fused-aware is_layer_skipped + substring is_layer_excluded (sglang modelopt_quant.py)",
      "[I] KV-cache parameters exist only when kv_cache_quant_algo is set",
      "[I] unknown weight names raise KeyError with the full name (F15 `KeyError: ...gate_up_proj.input_scale`)",
      "[U] name mapping of transformers-4.52 checkpoints; ViT quantization; KV dtype selection",
  };
  return p;
}

RuntimeProfile trtllm() {
  RuntimeProfile p;
  p.id = "trtllm-1.2rc0";
  p.title = "TensorRT-LLM 1.2.0rc0 (PyTorch backend, before PR #8680)";
  p.sources = "field-bug-classes.md F06, F16 (PR #3167)";
  p.kind = LoaderKind::kTrtllm;
  p.config.config_json_first = false;
  p.config.supports_compressed_tensors = false;
  p.config.modelopt_algos = {"FP8"};
  p.config.kv_dtype_from_checkpoint = true;
  p.config.unsupported_error = "not analysed: TensorRT-LLM's compressed-tensors path is not documented in vlq's sources";
  p.prefix = qwen_vl_canonical_to_legacy();
  p.top_class = "Qwen2VisionModelBase";
  p.vision_root = "visual";
  p.vision_module_renames = PrefixMap{};
  p.vision_gets_quant_config = true;
  p.vision_unknown = UnknownName::kUnknown;
  p.lm_unknown = UnknownName::kUnknown;
  p.unaligned_severity = Severity::kWarning;
  p.unaligned_text = "FP8 GEMMs need 16-aligned K and N [U for TensorRT-LLM]";
  p.fp8_gemm_align = 16;
  p.vision_exclude_extra = {};
  p.default_vision = "keep";
  p.notes = {
      "[V] F06: tensorrt_llm 1.2.0rc0 builds the Qwen2.5-VL ViT attention Linears as FP8 although the checkpoint's "
      "ViT is BF16 and excluded; load fails with `Missing key(s)` for visual.blocks.N.attn.qkv_proj / o_proj scales",
      "[V] F06: runtime names attn.qkv → attn.qkv_proj, attn.proj → attn.o_proj",
      "[V] F06(c): derived buffers (inv_input_scale, kv_scales, inv_kv_scales) are not checkpoint keys",
      "[V] PR #3167: only kv_cache_quant_algo FP8 accepted for pre-quantized checkpoints",
      "[I] reads hf_quant_config.json; [U] everything else (decoder loading, ViT FP8 with scales)",
  };
  return p;
}

RuntimeProfile ascend() {
  RuntimeProfile p;
  p.id = "vllm-ascend";
  p.title = "vllm-ascend 0.11.0rc1 (Ascend 910B A2/A3)";
  p.sources = "field-bug-classes.md F07";
  p.kind = LoaderKind::kVllmFamily;
  p.config.supports_modelopt = false;
  p.config.supports_compressed_tensors = false;
  p.config.unsupported_error = "KeyError: 'visual.blocks.0.attn.qkv.weight'";
  p.prefix = vllm_qwen2_5_vl_mapper();
  p.default_vision = "bf16";
  p.notes = {
      "[V] F07: an FP8 Qwen2.5-VL checkpoint dies with KeyError: 'visual.blocks.0.attn.qkv.weight' while the vision "
      "transformer is built",
      "[V] F07: maintainers: FP8 is not supported on A2/A3 NPUs; use W8A8 (ModelSlim)",
  };
  return p;
}

RuntimeProfile vlq_native() {
  RuntimeProfile p;
  p.id = "vlq";
  p.title = "vlq's own loader";
  p.sources = "fp8-checkpoint-formats.md §7.1 (loader rules)";
  p.kind = LoaderKind::kNative;
  p.config.modelopt_algos = {"FP8", "FP8_PER_CHANNEL_PER_TOKEN", "FP8_PB_WO"};
  p.config.kv_dtype_from_checkpoint = true;
  p.prefix = qwen_vl_hf_to_canonical();
  p.vision_kv_supported = false;
  p.fp8_gemm_align = 1;
  p.unaligned_severity = Severity::kInfo;
  p.unaligned_text = "vlq runs any shape: the CPU path has no alignment constraint, the CUDA path zero-pads the vision MLP width to 16 on upload";
  p.modelopt_kv_style = KvStyle::kModelOpt;
  p.ct_kv_style = KvStyle::kCanonical;
  p.default_vision = "keep";
  p.notes = {
      "[V] §7.1: both naming generations; scalar or [1] scales; fused layers requantized to the max scale",
      "[V] §7.1: unknown *.k_scale / *.v_scale (e.g. ViT K/V) are skipped with a warning; any other unknown "
      "scale is an error",
      "[V] F15: scale tensors without any quantization config: refused, naming the first scale tensor",
      "the tensors are the truth: every Linear is computed in the scheme its tensors have",
  };
  return p;
}

}  // namespace

bool runtime_vision_name(const RuntimeProfile& p, std::string_view rt, Tower tower) {
  if (!p.vision_root.empty()) return rt.starts_with(p.vision_root + ".");
  return tower == Tower::kVision;
}

std::string runtime_loader_name(const RuntimeProfile& p, const std::string& rt, bool vision) {
  const std::string& root = vision ? p.vision_root : p.lm_root;
  if (!root.empty() && rt.starts_with(root + ".")) return rt.substr(root.size() + 1);
  return rt;
}

RuntimeModule runtime_module(const RuntimeProfile& p, std::string_view module, Tower tower) {
  RuntimeModule out;
  std::string rt = p.prefix.apply(std::string(module) + ".weight");
  out.vision = runtime_vision_name(p, rt, tower);
  if (out.vision || tower != Tower::kHead) {
    const FusionTable& stacking = out.vision ? p.vision_stacking : p.lm_stacking;
    const std::string& root = out.vision ? p.vision_root : p.lm_root;
    if (auto s = stacking.apply(runtime_loader_name(p, rt, out.vision))) {
      out.shard_id = s->rule->shard_id;
      rt = (root.empty() ? "" : root + ".") + s->name;
    }
  }
  out.name = std::string(module_of(rt));
  if (out.vision && !p.vision_module_renames.rules.empty()) out.name = p.vision_module_renames.apply(out.name);
  return out;
}

std::string runtime_module_name(const RuntimeProfile& p, std::string_view module, Tower tower) {
  return runtime_module(p, module, tower).name;
}

std::vector<std::string> runtime_exclude_entries(const RuntimeProfile& p, QuantFormat format,
                                                 const std::vector<std::string>& entries) {
  const ExclusionReading& x = format == QuantFormat::kCompressedTensors ? p.ct_exclusion : p.modelopt_exclusion;
  std::vector<std::string> e;
  for (const auto& s : entries) {
    if (x.split_star && s.size() >= 2 && s.back() == '*' && s[s.size() - 2] != '.') {
      e.push_back(s.substr(0, s.size() - 1));
      e.push_back(s.substr(0, s.size() - 1) + ".*");
    } else {
      e.push_back(s);
    }
  }
  if (x.apply_mapper)
    for (auto& s : e)
      if (!is_regex_entry(s)) s = p.prefix.apply(s);
  return e;
}

ExclusionResult runtime_exclusion(const RuntimeProfile& p, QuantFormat format, const std::vector<std::string>& raw,
                                  std::string_view rt_module) {
  ExclusionResult res;
  const bool ct = format == QuantFormat::kCompressedTensors;
  const ExclusionReading& x = ct ? p.ct_exclusion : p.modelopt_exclusion;
  std::vector<std::string> entries = runtime_exclude_entries(p, format, raw);
  if (entries.empty()) return res;
  std::vector<std::string> shard_names;
  for (const auto& fr : p.packed_modules)
    if (leaf_of(rt_module) == fr.fused) shard_names.push_back(std::string(module_of(rt_module)) + "." + fr.shard);
  if (x.fused_exact && !shard_names.empty()) {
    std::optional<bool> all;
    std::string hit;
    for (const auto& s : shard_names) {
      int i = -1;
      if (ct) {
        i = first_match(entries, s, x.policy);
      } else {
        auto it = std::find(entries.begin(), entries.end(), s);
        if (it != entries.end()) i = static_cast<int>(it - entries.begin());
      }
      bool skipped = i >= 0;
      if (skipped && hit.empty()) hit = entries[static_cast<std::size_t>(i)];
      if (!all) {
        all = skipped;
      } else if (*all != skipped) {
        res.fused_mismatch = true;
        return res;
      }
    }
    if (all && *all) {
      res.entry = hit;
      return res;
    }
    if (ct) return res;  // compressed-tensors tests only the shard names of a fused layer
  }
  int i = first_match(entries, rt_module, x.policy);
  if (i >= 0) res.entry = entries[static_cast<std::size_t>(i)];
  return res;
}

std::string profile_id_list() {
  std::string out;
  for (const auto& p : builtin_profiles()) out += (out.empty() ? "" : ", ") + p.id;
  return out;
}

const std::vector<RuntimeProfile>& builtin_profiles() {
  static const std::vector<RuntimeProfile> all = {vllm_010(), vllm_latest(), sglang(), trtllm(), ascend(),
                                                  vlq_native()};
  return all;
}

const RuntimeProfile& find_profile(std::string_view id) {
  std::string_view want = id;
  if (want == "trtllm") want = "trtllm-1.2rc0";
  if (want == "vllm") want = "vllm-latest";
  if (want == "ascend") want = "vllm-ascend";
  for (const auto& p : builtin_profiles())
    if (p.id == want) return p;
  std::string known;
  for (const auto& p : builtin_profiles()) known += (known.empty() ? "" : ", ") + p.id;
  throw UsageError({"--target " + std::string(id), "unknown runtime profile", known, std::string(id),
                    "pick one of the listed targets"});
}

}  // namespace vlq::formats
