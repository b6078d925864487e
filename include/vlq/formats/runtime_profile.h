// Runtime profiles: small declarative descriptions of how one runtime version reads the quantization
// configs, maps checkpoint names, matches exclusions, builds the vision tower and loads KV scales.
// `vlq check` runs one generic loader model (src/formats/check.cpp) over a profile; nothing in the
// checker is specific to a runtime except the data here.
// Spec: ../shared/docs/fp8-checkpoint-formats.md §2 (vLLM 0.10), §2.8 (later vLLM), §3.5 (compressed-
// tensors in vLLM); ../shared/docs/field-bug-classes.md F02/F15/F19 (SGLang), F06 (TensorRT-LLM),
// F07 (vllm-ascend). docs/runtime-profiles.md lists every field with its source and [V]/[I]/[U] marker.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "vlq/formats/finding.h"
#include "vlq/formats/names.h"
#include "vlq/formats/patterns.h"
#include "vlq/formats/quant_layout.h"

namespace vlq::formats {

// Which family of loader logic the profile parameterises.
enum class LoaderKind {
  kVllmFamily,   // vLLM / SGLang style: config → quant methods per module → per-tensor weight loading
  kTrtllm,       // TensorRT-LLM PyTorch backend: state-dict load with a strict missing-keys check
  kNative,       // vlq's own loader: the tensors are the truth; everything valid loads
};

// What a loader does with a tensor name it has no parameter for.
enum class UnknownName {
  kKeyError,  // Python `params_dict[name]` → KeyError: '<name>' (the load aborts)
  kSkip,      // skipped, with a warning at most
  kUnknown,   // not documented: reported as a warning, not as a prediction
};

// KvRemapRule (one rule of vLLM's `maybe_remap_kv_scale_name`) is a naming rule: see names.h.

// How a profile reads ModelOpt / compressed-tensors configs (fp8-checkpoint-formats.md §2.1, §2.2).
struct ConfigReading {
  bool config_json_first = true;         // config.json quantization_config wins over hf_quant_config.json
  bool reads_hf_quant_config = true;     // hf_quant_config.json alone is detected (producer modelopt)
  bool reads_config_json_modelopt = true;  // config.json quant_method "modelopt" is detected
  std::string cfgjson_exclude_key;       // ModelOpt config.json form: "exclude_modules" (VL-0.10) or "ignore"
  bool cfgjson_kv_from_scheme = false;   // config.json form: kv_cache_scheme {float, 8} means FP8 KV
  std::vector<std::string> modelopt_algos;  // quant_algo values accepted
  bool supports_modelopt = true;
  bool supports_compressed_tensors = true;
  bool kv_dtype_from_checkpoint = false;  // the declared FP8 KV cache is used without a command-line flag
  std::string unsupported_error;          // runtime error text when a format is not supported
};

// How a profile decides that a Linear is excluded (kept BF16).
struct ExclusionReading {
  bool apply_mapper = false;  // entries pass through the prefix map first (vLLM `apply_vllm_mapper`)
  bool split_star = false;    // "name*" becomes "name" + "name.*" before mapping (vLLM PR #30164)
  MatchPolicy policy;         // how an entry compares with a runtime module name
  bool fused_exact = false;   // exact test is fused-aware: all shards of qkv_proj / gate_up_proj must agree
  std::string fused_error;    // error text when shards disagree ({prefix} is replaced)
};

struct RuntimeProfile {
  std::string id;        // "vllm-0.10"
  std::string title;     // "vLLM 0.10.x (upstream main 2025-08-18)"
  std::string sources;   // doc sections the behaviour comes from
  LoaderKind kind = LoaderKind::kVllmFamily;
  ConfigReading config;
  ExclusionReading modelopt_exclusion;
  ExclusionReading ct_exclusion;

  // Names.
  PrefixMap prefix;                    // checkpoint → runtime (both naming generations)
  std::string top_class;               // class named in top-level "no module or parameter" errors
  std::vector<std::string> top_modules;  // first components the top-level loader dispatches
  std::string vision_root;             // "visual": its loader sees names with "visual." stripped
  std::string lm_root;                 // "language_model.model": decoder loader root
  std::string lm_class;                // "Qwen2ForCausalLM" (named in lm_head errors)
  std::string lm_head;                 // "language_model.lm_head"
  FusionTable lm_stacking;             // decoder stacked_params_mapping (substring, as vLLM)
  FusionTable vision_stacking;         // vision stacked_params_mapping
  PrefixMap vision_module_renames;     // module renames inside the vision tower (TRT-LLM attn.qkv → qkv_proj)
  std::vector<FusionRule> packed_modules;  // fused-name table used by exclusion checks (packed_modules_mapping)

  // Building the model.
  bool vision_gets_quant_config = true;          // the ViT Linears receive the quantization config
  std::vector<std::string> modelopt_forced_unquantized;  // ModelOpt: Linear prefixes containing one of these stay BF16
  bool lm_head_quantizable = false;              // lm_head can take a ModelOpt FP8 method
  bool attention_kv_params_always = true;        // Attention gets k/v_scale params even without a KV algo

  // Loading.
  UnknownName vision_unknown = UnknownName::kKeyError;  // unknown vision tensor
  UnknownName lm_unknown = UnknownName::kKeyError;      // unknown decoder tensor (non-KV)
  bool kv_remap_after_stacking = true;   // stacking runs before the KV remap (vLLM Qwen2 loader, §2.4)
  std::vector<KvRemapRule> kv_remap;     // decoder KV-scale remap rules; unmatched/absent → skipped
  bool kv_scales_bind = true;            // false: the loader drops every KV scale (SGLang Qwen2, F02)
  bool ct_output_scale_remap = true;     // compressed-tensors `get_cache_scale` for k_proj.output_scale
  bool vision_kv_supported = false;      // a vision attention can hold K/V scales

  // Numerics.
  int fp8_gemm_align = 16;                    // K and N of an FP8 GEMM must be multiples of this
  Severity unaligned_severity = Severity::kWarning;
  std::string unaligned_text;                 // what happens to an unaligned FP8 Linear

  // Conversion target (vlq convert --for <id>).
  KvStyle modelopt_kv_style = KvStyle::kModelOpt;  // KV spelling written for ModelOpt output
  KvStyle ct_kv_style = KvStyle::kCanonical;       // KV spelling written for compressed-tensors output
  std::vector<std::string> vision_exclude_extra;   // extra exclude entries this runtime needs for the ViT
  bool write_cfgjson_exclude_modules = false;      // also write exclude_modules / kv_cache_quant_algo in
                                                   // config.json quantization_config (read by VL-0.10)
  std::string default_vision = "bf16";             // convert --vision default: "keep" or "bf16"

  // Markers per behaviour for docs/runtime-profiles.md: "[V] ..."/"[I] ..." lines.
  std::vector<std::string> notes;
};

// Whether runtime name `rt` (after the prefix map) is loaded by the profile's vision loader: it starts
// with `vision_root` + "." or, for a flat loader (no vision_root), `tower` is the vision tower.
bool runtime_vision_name(const RuntimeProfile& p, std::string_view rt, Tower tower);
// The name the vision (`vision`) or decoder sub-loader sees, as its error texts spell it: `rt` with
// "<vision_root>." / "<lm_root>." stripped when it starts with it, else `rt`.
std::string runtime_loader_name(const RuntimeProfile& p, const std::string& rt, bool vision);

// The runtime module a checkpoint Linear (checkpoint naming) becomes: prefix map, then the vision or
// decoder stacking (lm_head is never stacked), then the vision module renames; `shard_id` is the slot the
// stacking loads it into ("q"/"k"/"v", "0"/"1"; "" when not stacked). E.g. vllm-0.10:
// "model.layers.0.self_attn.k_proj" → "language_model.model.layers.0.self_attn.qkv_proj" (shard "k");
// "visual.blocks.0.mlp.up_proj" → "visual.blocks.0.mlp.gate_up_proj" (shard "1").
struct RuntimeModule {
  std::string name;
  std::string shard_id;
  bool vision = false;  // runtime_vision_name of the module's weight
};
RuntimeModule runtime_module(const RuntimeProfile& p, std::string_view module, Tower tower);
// runtime_module(p, module, tower).name
std::string runtime_module_name(const RuntimeProfile& p, std::string_view module, Tower tower);

// The exclude/ignore list after the runtime's own preprocessing (star split, HF→runtime name mapping),
// for a list `entries` as read from the config file of format `format`.
std::vector<std::string> runtime_exclude_entries(const RuntimeProfile& p, QuantFormat format,
                                                 const std::vector<std::string>& entries);

// Whether runtime module `rt_module` is excluded under the profile's semantics for `format`: the
// matching entry (as preprocessed), or "" when none; fused_mismatch when the shards of a fused runtime
// Linear (qkv_proj, gate_up_proj) disagree (the runtime raises ValueError).
struct ExclusionResult {
  std::string entry;
  bool fused_mismatch = false;
};
ExclusionResult runtime_exclusion(const RuntimeProfile& p, QuantFormat format, const std::vector<std::string>& entries,
                                  std::string_view rt_module);

// All built-in profiles: vllm-0.10, vllm-latest, sglang, trtllm-1.2rc0, vllm-ascend, vlq.
const std::vector<RuntimeProfile>& builtin_profiles();
// The built-in ids joined by ", " (for help texts and error messages; the one list, from builtin_profiles()).
std::string profile_id_list();
// Looks a profile up by id (aliases: "trtllm" → "trtllm-1.2rc0", "vllm" → "vllm-latest").
// Throws UsageError naming the id and listing the known ones.
const RuntimeProfile& find_profile(std::string_view id);

}  // namespace vlq::formats
