// Tensor/module name normalisation as data: Qwen2.5-VL naming generations, prefix maps (HF → canonical,
// HF → runtime), the q/k/v and gate/up fusion table with shard ids, the KV-scale spelling and remap tables,
// the model components and the quantization-tensor leaves. Every naming rule of vlq lives here.
// Spec: ../shared/docs/fp8-checkpoint-formats.md §1.3 (ModelOpt `k_proj.k_scale`), §2.4 (vLLM
// `maybe_remap_kv_scale_name`), §2.5 (`hf_to_vllm_mapper`, vision stacking), §3.3 (compressed-tensors
// `self_attn.k_scale`, old `k_proj.output_scale`), §5 (transformers 4.52 renames);
// ../shared/docs/field-bug-classes.md F04 (the KV-scale naming zoo), F10 (naming generations).
//
// Canonical vlq names are the transformers ≥ 4.52 in-memory names (`model.language_model.*`,
// `model.visual.*`, `lm_head.*`), with Linears unfused (q/k/v separate) and one KV scale per attention
// module spelled `<attention>.k_scale` / `<attention>.v_scale`.
//
// A rename pipeline always runs in this fixed order: prefix map → KV-scale rename → shard stacking.
// Each step is idempotent, and so is the pipeline (tested). Running stacking before the KV rename is
// the bug of F01/F02 (`k_proj.k_scale` becomes `qkv_proj.k_scale` before anyone recognises it).
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vlq::formats {

// ---- naming generations --------------------------------------------------------------------------

enum class NamingGeneration {
  kUnknown,          // no Qwen2.5-VL-like names at all
  kLegacy,           // released hub checkpoints, transformers < 4.52 and ≥ 5.x saves: model.layers.*, visual.*
  kTransformers452,  // transformers 4.52–4.5x saves: model.language_model.*, model.visual.*
  kMixed,            // both kinds present (a broken merge of two saves)
};
std::string_view naming_generation_name(NamingGeneration g) noexcept;
// Short id of a generation, as `vlq inspect` reports it (schema vlq.inspect/1): "unknown", "legacy",
// "hf-4.52", "mixed".
std::string_view naming_generation_id(NamingGeneration g) noexcept;
// The generation of one name: kTransformers452 (model.language_model.*, model.visual.*), kLegacy
// (model.*, visual.*), or kUnknown for neutral names (lm_head.*, unknown prefixes).
NamingGeneration naming_generation_of(std::string_view tensor_name) noexcept;
// Looks at the names' prefixes (lm_head is neutral): naming_generation_of over all names.
NamingGeneration detect_naming(const std::vector<std::string>& tensor_names);

// Canonical roots (the transformers >= 4.52 in-memory names, without the trailing dot).
inline constexpr std::string_view kCanonicalLanguageRoot = "model.language_model";
inline constexpr std::string_view kCanonicalVisionRoot = "model.visual";
inline constexpr std::string_view kLmHeadRoot = "lm_head";

// ---- prefix maps ---------------------------------------------------------------------------------

// One prefix replacement; `from` is compared with the start of the name.
struct PrefixRule {
  std::string from;
  std::string to;
};
// An ordered prefix map: the first rule whose `from` starts the name wins; names that no rule matches
// are returned unchanged (vLLM WeightsMapper `orig_to_new_prefix` semantics).
struct PrefixMap {
  std::vector<PrefixRule> rules;
  std::string apply(std::string_view name) const;
  // Index of the rule that applies, or -1.
  int rule_for(std::string_view name) const;
};

// HF (either generation) → canonical (4.52) names for Qwen2-VL / Qwen2.5-VL. Identity rules first, so
// applying it twice is the same as applying it once.
const PrefixMap& qwen_vl_hf_to_canonical();
// Canonical → legacy (released/hub) names.
const PrefixMap& qwen_vl_canonical_to_legacy();
// vLLM's Qwen2.5-VL `hf_to_vllm_mapper` (§2.5; same in VL-0.10 and VL-2026).
const PrefixMap& vllm_qwen2_5_vl_mapper();
// Renames of whole last components (`from` → `to`) that TensorRT-LLM 1.2.0rc0 applies to the Qwen2.5-VL
// vision attention Linears: attn.qkv → attn.qkv_proj, attn.proj → attn.o_proj (field-bug-classes.md F06).
const std::vector<PrefixRule>& trtllm_vision_attention_renames();

// ---- fusion (stacking) ---------------------------------------------------------------------------

// One shard of a fused runtime Linear: `shard` (e.g. "k_proj") is replaced by `fused` ("qkv_proj") and
// loaded into the slot `shard_id` ("q"/"k"/"v" for QKV, "0"/"1" for merged column Linears).
struct FusionRule {
  std::string fused;
  std::string shard;
  std::string shard_id;
};
// How a fusion table finds its shard names.
//   kComponent: `shard` must be a whole dotted component ("...self_attn.k_proj.weight").
//   kSubstring: `shard` may occur anywhere (vLLM's `if weight_name not in name: continue`), which is
//               what turns "self_attn.k_proj.k_scale" into "self_attn.qkv_proj.k_scale" (§2.4).
enum class FusionMatch { kComponent, kSubstring };
struct FusionTable {
  std::vector<FusionRule> rules;
  FusionMatch match = FusionMatch::kComponent;
  // The first rule that applies, with the renamed name; nullopt when none applies.
  struct Result {
    std::string name;
    const FusionRule* rule = nullptr;
  };
  std::optional<Result> apply(std::string_view name) const;
  // The shard names of a fused module name ("...qkv_proj" → "...q_proj", "...k_proj", "...v_proj"),
  // empty when the last component is not a fused name of this table.
  std::vector<std::string> shards_of(std::string_view fused_module) const;
};

// The Qwen2 language-model fusion (vLLM `stacked_params_mapping`, component form): q/k/v_proj → qkv_proj
// (q, k, v), gate/up_proj → gate_up_proj (0, 1).
const FusionTable& qwen2_lm_fusion();
// The same rules matched as vLLM's Qwen2 loader matches them (substring: `if weight_name not in name`).
// "v_proj" is a substring of "qkv_proj": a fused "qkv_proj.k_scale" becomes "qkqkv_proj.k_scale", which
// is why vLLM's KV remap has a "qkqkv_proj" rule (§2.4).
const FusionTable& vllm_qwen2_lm_stacking();
// vLLM's Qwen2.5-VL vision stacking (§2.5): "attn.q." / "attn.k." / "attn.v." → "attn.qkv.",
// "mlp.gate_proj." / "mlp.up_proj." → "mlp.gate_up_proj." (substring rules, as vLLM writes them).
const FusionTable& vllm_qwen2_5_vision_fusion();

// ---- KV-cache scales -----------------------------------------------------------------------------

enum class KvKind {
  kK,     // key scale
  kV,     // value scale
  kKV,    // one scalar for both (NeuralMagic `kv_scale`)
  kQ,     // query scale (later vLLM; never needed for an FP8 KV cache)
  kProb,  // attention-probability scale (later vLLM)
};
std::string_view kv_kind_name(KvKind k) noexcept;

// How a producer or runtime spells a KV scale, relative to the attention module A.
enum class KvStyle {
  kCanonical,    // A.k_scale / A.v_scale            (compressed-tensors ≥ 2024-08; vlq canonical)
  kModelOpt,     // A.k_proj.k_scale / A.v_proj.v_scale  (ModelOpt, §1.3)
  kFusedQkv,     // A.qkv_proj.k_scale / A.qkv_proj.v_scale  (llm-compressor on fused models, F01)
  kOutputScale,  // A.k_proj.output_scale / A.v_proj.output_scale  (old compressed-tensors, F04)
  kRuntimeAttn,  // A.attn.k_scale / A.attn.v_scale  (vLLM/SGLang runtime parameter)
};
std::string_view kv_style_name(KvStyle s) noexcept;

// One row of the KV-scale spelling table: a name ends in `<attention>` + `suffix`.
struct KvSpelling {
  std::string suffix;    // e.g. ".k_proj.k_scale"
  KvKind kind;
  KvStyle style;
  std::string producer;  // who writes it (for reports)
};
// The table, most specific first (order matters: ".k_proj.k_scale" before ".k_scale").
const std::vector<KvSpelling>& kv_scale_spellings();

// A parsed KV-scale tensor name.
struct KvScaleName {
  std::string attention;  // the attention module, in the same naming as the input
  KvKind kind;
  const KvSpelling* spelling;
};
// Recognises any spelling of the table. The runtime spelling ".attn.k_scale" is only taken when the
// part before it ends in a component ending in "attn" (e.g. "self_attn"), so that a vision attention
// module that is itself called "attn" parses as A = "...blocks.0.attn". nullopt for other names.
std::optional<KvScaleName> parse_kv_scale_name(std::string_view tensor_name);
// Spells the scale of `kind` (kK, kV or kQ) for attention module `attention` in `style`.
std::string kv_scale_name(std::string_view attention, KvKind kind, KvStyle style);

// A K/V-cache scale name as `vlq inspect` reports it (K, V or one scale for both; q/prob scales are not
// KV-cache scales here). `spelling` is how the producer wrote it, relative to the attention module's
// parent: "k_proj.k_scale" / "v_proj.v_scale" (ModelOpt), "self_attn.k_scale" (compressed-tensors;
// "attn.k_scale" for a module named attn), "k_proj.output_scale" (old compressed-tensors),
// "qkv_proj.k_scale" (fused producers), "kv_scale" (one scale for K and V). Parsed with the spelling
// table (parse_kv_scale_name).
struct KvScaleKey {
  std::string attention;  // attention module, e.g. "model.layers.0.self_attn"
  char kind = 'k';        // 'k', 'v', or 'b' (both: kv_scale)
  std::string spelling;
  std::string holder;     // the module the key hangs under ("...self_attn.k_proj" for ModelOpt); must exist
};
std::optional<KvScaleKey> parse_kv_scale_key(std::string_view tensor_name);

// One rule of a KV-scale remap (vLLM `maybe_remap_kv_scale_name`): a name ending in `from` gets that
// suffix replaced by `to`; the first matching rule wins.
struct KvRemapRule {
  std::string from;
  std::string to;
};
// vLLM 0.10 `maybe_remap_kv_scale_name` (§2.4), in its order (the Qwen2 decoder's names after stacking).
const std::vector<KvRemapRule>& vllm_kv_scale_remap();

// ---- quantization tensors ------------------------------------------------------------------------

// What a quantization tensor (one that is not a parameter of the model) is for, by its last component.
enum class QuantTensorRole {
  kLinearScale,  // scale / zero point / global scale of a Linear's weight or input (weight_scale, ...)
  kKvScale,      // attention scale (k_scale, v_scale, q_scale, prob_scale, kv_scale)
  kOther,        // other quantizer state (k_bias, v_bias, pre_quant_scale, output_zero_point, _amax)
};
struct QuantTensorLeaf {
  std::string leaf;  // e.g. "weight_scale"
  QuantTensorRole role;
};
// The table: weight_scale, weight_scale_inv, weight_scale_2, weight_global_scale, input_scale,
// input_scale_2, input_global_scale, output_scale, weight_zero_point, input_zero_point (Linear scales);
// k_scale, v_scale, q_scale, prob_scale, kv_scale (KV); k_bias, v_bias, pre_quant_scale,
// output_zero_point, _amax (other).
const std::vector<QuantTensorLeaf>& quant_tensor_leaves();
// The row of a tensor name's last component; nullptr for ordinary tensors (weights, biases, norms).
const QuantTensorLeaf* quant_tensor_leaf(std::string_view tensor_name) noexcept;

// ---- the rename pipeline -------------------------------------------------------------------------

// A fixed-order rename: prefix map → KV-scale rename → shard stacking. Any step may be absent.
struct NamePipeline {
  const PrefixMap* prefix = nullptr;
  std::optional<KvStyle> kv_style;  // rename KV scales to this spelling
  std::vector<const FusionTable*> fusion;
};
struct NormalizedName {
  std::string name;
  std::optional<std::string> shard_id;  // set when stacking applied
  std::optional<KvKind> kv;             // set when the name is a KV scale
};
NormalizedName normalize_name(std::string_view name, const NamePipeline& pipeline);

// Canonical vlq naming: HF→canonical prefix map, KV scales to kCanonical, no stacking.
const NamePipeline& canonical_pipeline();
// Shorthand: normalize_name(name, canonical_pipeline()).name.
std::string canonical_name(std::string_view name);

// ---- module helpers ------------------------------------------------------------------------------

// The module of a tensor: everything before the last dot ("a.b.weight" → "a.b"); "" for "weight".
std::string_view module_of(std::string_view tensor_name) noexcept;
// The last component ("a.b.weight" → "weight").
std::string_view leaf_of(std::string_view tensor_name) noexcept;
// True when `name` equals `prefix` or starts with `prefix` + ".".
bool in_subtree(std::string_view name, std::string_view prefix) noexcept;

// Part of the Qwen2.5-VL model a tensor belongs to (either naming generation; the name is mapped to
// canonical naming first, then the first matching canonical prefix wins):
//   vision_merger:  model.visual.merger.*  (the projector into the LM)
//   vision_tower:   model.visual.*  except the merger (patch_embed, blocks)
//   embed_tokens:   model.language_model.embed_tokens.*
//   lm_head:        lm_head.*
//   language_model: model.language_model.*  (decoder layers, final norm)
//   other:          anything else
enum class Component { kVisionTower, kVisionMerger, kLanguageModel, kEmbedTokens, kLmHead, kOther };
inline constexpr std::size_t kNumComponents = 6;
inline constexpr std::array<Component, kNumComponents> kAllComponents{
    Component::kVisionTower, Component::kVisionMerger, Component::kLanguageModel,
    Component::kEmbedTokens, Component::kLmHead,       Component::kOther};
// "vision_tower", "vision_merger", "language_model", "embed_tokens", "lm_head", "other".
std::string_view component_name(Component c) noexcept;
Component component_of(std::string_view tensor_name);

// Which part of a vision-language model a canonical name belongs to.
enum class Tower { kLanguage, kVision, kHead, kOther };
std::string_view tower_name(Tower t) noexcept;
// Vision roots (data): model.visual, visual, vision_tower, vision_model, multi_modal_projector,
// embed_vision, mlp1 (InternVL projector) — at the start of the name, optionally after "model.".
Tower tower_of(std::string_view canonical_name) noexcept;

}  // namespace vlq::formats
