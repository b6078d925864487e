// Name normalisation tables and the fixed-order rename pipeline; see include/vlq/formats/names.h.
#include "vlq/formats/names.h"

#include <array>

namespace vlq::formats {

namespace {
bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}
}  // namespace

// ---- naming generations --------------------------------------------------------------------------

std::string_view naming_generation_name(NamingGeneration g) noexcept {
  switch (g) {
    case NamingGeneration::kUnknown: return "unknown";
    case NamingGeneration::kLegacy: return "legacy (model.layers.*, visual.*)";
    case NamingGeneration::kTransformers452: return "transformers-4.52 (model.language_model.*, model.visual.*)";
    case NamingGeneration::kMixed: return "mixed";
  }
  return "?";
}

std::string_view naming_generation_id(NamingGeneration g) noexcept {
  constexpr std::array<std::string_view, 4> kIds = {"unknown", "legacy", "hf-4.52", "mixed"};
  return kIds[static_cast<std::size_t>(g)];
}

NamingGeneration naming_generation_of(std::string_view n) noexcept {
  if (starts_with(n, "model.language_model.") || starts_with(n, "model.visual.")) return NamingGeneration::kTransformers452;
  if (starts_with(n, "visual.") || starts_with(n, "model.")) return NamingGeneration::kLegacy;
  return NamingGeneration::kUnknown;
}

NamingGeneration detect_naming(const std::vector<std::string>& names) {
  bool legacy = false, v452 = false;
  for (const auto& n : names) {
    const NamingGeneration g = naming_generation_of(n);
    v452 = v452 || g == NamingGeneration::kTransformers452;
    legacy = legacy || g == NamingGeneration::kLegacy;
  }
  if (legacy && v452) return NamingGeneration::kMixed;
  if (legacy) return NamingGeneration::kLegacy;
  if (v452) return NamingGeneration::kTransformers452;
  return NamingGeneration::kUnknown;
}

// ---- prefix maps ---------------------------------------------------------------------------------

int PrefixMap::rule_for(std::string_view name) const {
  for (std::size_t i = 0; i < rules.size(); ++i)
    if (starts_with(name, rules[i].from)) return static_cast<int>(i);
  return -1;
}

std::string PrefixMap::apply(std::string_view name) const {
  int i = rule_for(name);
  if (i < 0) return std::string(name);
  return rules[i].to + std::string(name.substr(rules[i].from.size()));
}

const PrefixMap& qwen_vl_hf_to_canonical() {
  static const PrefixMap m{{
      {"model.language_model.", "model.language_model."},  // already canonical
      {"model.visual.", "model.visual."},                  // already canonical
      {"visual.", "model.visual."},                        // legacy vision tower
      {"model.", "model.language_model."},                 // legacy language model
  }};
  return m;
}

const PrefixMap& qwen_vl_canonical_to_legacy() {
  static const PrefixMap m{{
      {"model.language_model.", "model."},
      {"model.visual.", "visual."},
  }};
  return m;
}

const PrefixMap& vllm_qwen2_5_vl_mapper() {
  static const PrefixMap m{{
      {"model.language_model.", "language_model.model."},
      {"model.visual.", "visual."},
      {"lm_head.", "language_model.lm_head."},
      {"model.", "language_model.model."},
  }};
  return m;
}

const std::vector<PrefixRule>& trtllm_vision_attention_renames() {
  static const std::vector<PrefixRule> r = {{"qkv", "qkv_proj"}, {"proj", "o_proj"}};
  return r;
}

// ---- fusion --------------------------------------------------------------------------------------

std::optional<FusionTable::Result> FusionTable::apply(std::string_view name) const {
  for (const auto& r : rules) {
    if (match == FusionMatch::kSubstring) {
      auto pos = name.find(r.shard);
      if (pos == std::string_view::npos) continue;
      std::string out(name);
      out.replace(pos, r.shard.size(), r.fused);
      return Result{out, &r};
    }
    // Component match: ".shard." inside, or ".shard" at the end, or "shard." at the start.
    std::string dotted = "." + r.shard + ".";
    std::string padded = "." + std::string(name) + ".";
    auto pos = padded.find(dotted);
    if (pos == std::string::npos) continue;
    padded.replace(pos, dotted.size(), "." + r.fused + ".");
    return Result{padded.substr(1, padded.size() - 2), &r};
  }
  return std::nullopt;
}

std::vector<std::string> FusionTable::shards_of(std::string_view fused_module) const {
  std::vector<std::string> out;
  if (match == FusionMatch::kComponent) {
    std::string_view leaf = leaf_of(fused_module);
    std::string_view mod = module_of(fused_module);
    for (const auto& r : rules)
      if (leaf == r.fused) out.push_back((mod.empty() ? "" : std::string(mod) + ".") + r.shard);
    return out;
  }
  std::string m = std::string(fused_module) + ".";
  for (const auto& r : rules) {
    if (!ends_with(m, r.fused)) continue;
    std::string s = m.substr(0, m.size() - r.fused.size()) + r.shard;
    out.push_back(s.substr(0, s.size() - 1));
  }
  return out;
}

const FusionTable& qwen2_lm_fusion() {
  static const FusionTable t{{
                                 {"qkv_proj", "q_proj", "q"},
                                 {"qkv_proj", "k_proj", "k"},
                                 {"qkv_proj", "v_proj", "v"},
                                 {"gate_up_proj", "gate_proj", "0"},
                                 {"gate_up_proj", "up_proj", "1"},
                             },
                             FusionMatch::kComponent};
  return t;
}

const FusionTable& vllm_qwen2_lm_stacking() {
  static const FusionTable t{qwen2_lm_fusion().rules, FusionMatch::kSubstring};
  return t;
}

const FusionTable& vllm_qwen2_5_vision_fusion() {
  static const FusionTable t{{
                                 {"attn.qkv.", "attn.q.", "q"},
                                 {"attn.qkv.", "attn.k.", "k"},
                                 {"attn.qkv.", "attn.v.", "v"},
                                 {"mlp.gate_up_proj.", "mlp.gate_proj.", "0"},
                                 {"mlp.gate_up_proj.", "mlp.up_proj.", "1"},
                             },
                             FusionMatch::kSubstring};
  return t;
}

// ---- KV scales -----------------------------------------------------------------------------------

std::string_view kv_kind_name(KvKind k) noexcept {
  switch (k) {
    case KvKind::kK: return "k";
    case KvKind::kV: return "v";
    case KvKind::kKV: return "kv";
    case KvKind::kQ: return "q";
    case KvKind::kProb: return "prob";
  }
  return "?";
}

std::string_view kv_style_name(KvStyle s) noexcept {
  switch (s) {
    case KvStyle::kCanonical: return "attn.k_scale (compressed-tensors)";
    case KvStyle::kModelOpt: return "attn.k_proj.k_scale (ModelOpt)";
    case KvStyle::kFusedQkv: return "attn.qkv_proj.k_scale (llm-compressor fused)";
    case KvStyle::kOutputScale: return "attn.k_proj.output_scale (old compressed-tensors)";
    case KvStyle::kRuntimeAttn: return "attn.attn.k_scale (runtime parameter)";
  }
  return "?";
}

const std::vector<KvSpelling>& kv_scale_spellings() {
  static const std::vector<KvSpelling> t = {
      {".k_proj.k_scale", KvKind::kK, KvStyle::kModelOpt, "ModelOpt"},
      {".v_proj.v_scale", KvKind::kV, KvStyle::kModelOpt, "ModelOpt"},
      {".qkv_proj.k_scale", KvKind::kK, KvStyle::kFusedQkv, "llm-compressor (fused qkv_proj)"},
      {".qkv_proj.v_scale", KvKind::kV, KvStyle::kFusedQkv, "llm-compressor (fused qkv_proj)"},
      {".k_proj.output_scale", KvKind::kK, KvStyle::kOutputScale, "compressed-tensors (old)"},
      {".v_proj.output_scale", KvKind::kV, KvStyle::kOutputScale, "compressed-tensors (old)"},
      {".q_proj.output_scale", KvKind::kQ, KvStyle::kOutputScale, "compressed-tensors (old)"},
      {".attn.k_scale", KvKind::kK, KvStyle::kRuntimeAttn, "vLLM/SGLang runtime"},
      {".attn.v_scale", KvKind::kV, KvStyle::kRuntimeAttn, "vLLM/SGLang runtime"},
      {".attn.q_scale", KvKind::kQ, KvStyle::kRuntimeAttn, "vLLM/SGLang runtime"},
      {".attn.prob_scale", KvKind::kProb, KvStyle::kRuntimeAttn, "vLLM/SGLang runtime"},
      {".kv_scale", KvKind::kKV, KvStyle::kCanonical, "NeuralMagic (old, one scale for K and V)"},
      {".k_scale", KvKind::kK, KvStyle::kCanonical, "compressed-tensors"},
      {".v_scale", KvKind::kV, KvStyle::kCanonical, "compressed-tensors"},
      {".q_scale", KvKind::kQ, KvStyle::kCanonical, "compressed-tensors"},
      {".prob_scale", KvKind::kProb, KvStyle::kCanonical, "compressed-tensors"},
  };
  return t;
}

std::optional<KvScaleName> parse_kv_scale_name(std::string_view name) {
  for (const auto& sp : kv_scale_spellings()) {
    if (!ends_with(name, sp.suffix) || name.size() == sp.suffix.size()) continue;
    std::string_view attention = name.substr(0, name.size() - sp.suffix.size());
    if (sp.style == KvStyle::kRuntimeAttn && !ends_with(leaf_of(attention), "attn")) continue;
    return KvScaleName{std::string(attention), sp.kind, &sp};
  }
  return std::nullopt;
}

std::string kv_scale_name(std::string_view attention, KvKind kind, KvStyle style) {
  std::string a(attention);
  const char* k = kind == KvKind::kK ? "k" : kind == KvKind::kV ? "v" : kind == KvKind::kQ ? "q" : nullptr;
  if (kind == KvKind::kKV) return a + ".kv_scale";
  if (kind == KvKind::kProb) return a + (style == KvStyle::kRuntimeAttn ? ".attn.prob_scale" : ".prob_scale");
  std::string s(k);
  switch (style) {
    case KvStyle::kCanonical: return a + "." + s + "_scale";
    case KvStyle::kModelOpt: return a + "." + s + "_proj." + s + "_scale";
    case KvStyle::kFusedQkv: return a + ".qkv_proj." + s + "_scale";
    case KvStyle::kOutputScale: return a + "." + s + "_proj.output_scale";
    case KvStyle::kRuntimeAttn: return a + ".attn." + s + "_scale";
  }
  return a + "." + s + "_scale";
}

std::optional<KvScaleKey> parse_kv_scale_key(std::string_view name) {
  auto kv = parse_kv_scale_name(name);
  if (!kv || (kv->kind != KvKind::kK && kv->kind != KvKind::kV && kv->kind != KvKind::kKV)) return std::nullopt;
  KvScaleKey k;
  k.attention = kv->attention;
  k.kind = kv->kind == KvKind::kK ? 'k' : kv->kind == KvKind::kV ? 'v' : 'b';
  // The spelling relative to the attention's parent: one-component suffixes are written under the attention
  // module itself ("self_attn.k_scale"), two-component ones under a child ("k_proj.k_scale").
  const std::string& suffix = kv->spelling->suffix;
  const bool child = suffix.find('.', 1) != std::string::npos;
  if (kv->kind == KvKind::kKV) k.spelling = suffix.substr(1);
  else k.spelling = child ? suffix.substr(1) : std::string(leaf_of(kv->attention)) + suffix;
  k.holder = child && kv->spelling->style != KvStyle::kRuntimeAttn ? std::string(module_of(name)) : kv->attention;
  return k;
}

const std::vector<KvRemapRule>& vllm_kv_scale_remap() {
  static const std::vector<KvRemapRule> t = {{".kv_scale", ".attn.k_scale"},
                                             {".self_attn.k_proj.k_scale", ".self_attn.attn.k_scale"},
                                             {".self_attn.v_proj.v_scale", ".self_attn.attn.v_scale"},
                                             {".self_attn.qkv_proj.k_scale", ".self_attn.attn.k_scale"},
                                             {".self_attn.qkv_proj.v_scale", ".self_attn.attn.v_scale"},
                                             {".self_attn.qkqkv_proj.k_scale", ".self_attn.attn.k_scale"},
                                             {".self_attn.qkqkv_proj.v_scale", ".self_attn.attn.v_scale"},
                                             {".k_scale", ".attn.k_scale"},
                                             {".v_scale", ".attn.v_scale"}};
  return t;
}

// ---- quantization tensors ------------------------------------------------------------------------

const std::vector<QuantTensorLeaf>& quant_tensor_leaves() {
  using R = QuantTensorRole;
  static const std::vector<QuantTensorLeaf> t = {
      {"weight_scale", R::kLinearScale},      {"weight_scale_inv", R::kLinearScale},
      {"weight_scale_2", R::kLinearScale},    {"weight_global_scale", R::kLinearScale},
      {"input_scale", R::kLinearScale},       {"input_scale_2", R::kLinearScale},
      {"input_global_scale", R::kLinearScale}, {"output_scale", R::kLinearScale},
      {"weight_zero_point", R::kLinearScale}, {"input_zero_point", R::kLinearScale},
      {"k_scale", R::kKvScale},               {"v_scale", R::kKvScale},
      {"q_scale", R::kKvScale},               {"prob_scale", R::kKvScale},
      {"kv_scale", R::kKvScale},              {"k_bias", R::kOther},
      {"v_bias", R::kOther},                  {"pre_quant_scale", R::kOther},
      {"output_zero_point", R::kOther},       {"_amax", R::kOther},
  };
  return t;
}

const QuantTensorLeaf* quant_tensor_leaf(std::string_view name) noexcept {
  const std::string_view leaf = leaf_of(name);
  for (const auto& r : quant_tensor_leaves())
    if (leaf == r.leaf) return &r;
  return nullptr;
}

// ---- pipeline ------------------------------------------------------------------------------------

NormalizedName normalize_name(std::string_view name, const NamePipeline& p) {
  NormalizedName out{std::string(name), std::nullopt, std::nullopt};
  if (p.prefix) out.name = p.prefix->apply(out.name);
  if (p.kv_style) {
    if (auto kv = parse_kv_scale_name(out.name)) {
      out.kv = kv->kind;
      out.name = kv_scale_name(kv->attention, kv->kind, *p.kv_style);
      return out;  // KV scales are never stacked: they belong to the attention module, not a Linear
    }
  }
  for (const FusionTable* t : p.fusion) {
    if (!t) continue;
    if (auto r = t->apply(out.name)) {
      out.name = r->name;
      out.shard_id = r->rule->shard_id;
      break;
    }
  }
  return out;
}

const NamePipeline& canonical_pipeline() {
  static const NamePipeline p{&qwen_vl_hf_to_canonical(), KvStyle::kCanonical, {}};
  return p;
}

std::string canonical_name(std::string_view name) { return normalize_name(name, canonical_pipeline()).name; }

// ---- module helpers ------------------------------------------------------------------------------

std::string_view module_of(std::string_view n) noexcept {
  auto pos = n.rfind('.');
  return pos == std::string_view::npos ? std::string_view{} : n.substr(0, pos);
}

std::string_view leaf_of(std::string_view n) noexcept {
  auto pos = n.rfind('.');
  return pos == std::string_view::npos ? n : n.substr(pos + 1);
}

bool in_subtree(std::string_view name, std::string_view prefix) noexcept {
  if (!starts_with(name, prefix)) return false;
  return name.size() == prefix.size() || name[prefix.size()] == '.';
}

std::string_view component_name(Component c) noexcept {
  constexpr std::array<std::string_view, kNumComponents> kNames = {"vision_tower", "vision_merger", "language_model",
                                                                    "embed_tokens", "lm_head",      "other"};
  return kNames[static_cast<std::size_t>(c)];
}

Component component_of(std::string_view n) {
  struct Rule {
    std::string_view prefix;  // canonical naming, with the trailing dot
    Component component;
  };
  static constexpr std::array<Rule, 5> kRules = {{{"model.visual.merger.", Component::kVisionMerger},
                                                  {"model.visual.", Component::kVisionTower},
                                                  {"model.language_model.embed_tokens.", Component::kEmbedTokens},
                                                  {"lm_head.", Component::kLmHead},
                                                  {"model.language_model.", Component::kLanguageModel}}};
  const std::string canonical = qwen_vl_hf_to_canonical().apply(n);
  for (const auto& r : kRules)
    if (starts_with(canonical, r.prefix)) return r.component;
  return Component::kOther;
}

std::string_view tower_name(Tower t) noexcept {
  switch (t) {
    case Tower::kLanguage: return "language";
    case Tower::kVision: return "vision";
    case Tower::kHead: return "head";
    case Tower::kOther: return "other";
  }
  return "?";
}

Tower tower_of(std::string_view n) noexcept {
  static constexpr std::array<std::string_view, 6> kVisionRoots = {
      "visual", "vision_tower", "vision_model", "multi_modal_projector", "embed_vision", "mlp1"};
  std::string_view rest = starts_with(n, "model.") ? n.substr(6) : n;
  for (auto root : kVisionRoots)
    if (in_subtree(n, root) || in_subtree(rest, root)) return Tower::kVision;
  if (in_subtree(n, "lm_head") || in_subtree(n, "language_model.lm_head")) return Tower::kHead;
  if (starts_with(n, "model.") || starts_with(n, "language_model.")) return Tower::kLanguage;
  return Tower::kOther;
}

}  // namespace vlq::formats
