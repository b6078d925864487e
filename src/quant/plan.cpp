// The quantization plan: from tensor headers to which Linears become FP8 and why the others do not (see
// vlq/quant/plan.h).
#include "vlq/quant/plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <limits>

#include "vlq/core/error.h"
#include "vlq/formats/names.h"
#include "vlq/formats/patterns.h"
#include "vlq/io/safetensors.h"
#include "quant/recipe.h"

namespace vlq::quant {
namespace {

using formats::Tower;
using detail::canonical_module_of;

// Rank of a name component in transformers' module registration order (Qwen2.5-VL); unknown → 100.
int component_rank(std::string_view c) {
  static const std::map<std::string, int, std::less<>> r = {
      // towers
      {"visual", 0}, {"language_model", 1},
      // vision
      {"patch_embed", 0}, {"rotary_pos_emb", 1}, {"blocks", 2}, {"merger", 3},
      {"attn", 0}, {"qkv", 0}, {"proj", 1}, {"ln_q", 0},  // block: norm1, norm2, attn, mlp (norms are no Linears)
      // language model
      {"embed_tokens", 0}, {"layers", 1}, {"norm", 2}, {"rotary_emb", 3}, {"self_attn", 0}, {"mlp", 1},
      {"input_layernorm", 2}, {"post_attention_layernorm", 3}, {"q_proj", 0}, {"k_proj", 1}, {"v_proj", 2},
      {"o_proj", 3}, {"gate_proj", 0}, {"up_proj", 1}, {"down_proj", 2}};
  auto it = r.find(c);
  return it == r.end() ? 100 : it->second;
}

std::vector<std::string_view> split_dots(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t b = 0;
  while (true) {
    std::size_t e = s.find('.', b);
    out.push_back(s.substr(b, e == std::string_view::npos ? std::string_view::npos : e - b));
    if (e == std::string_view::npos) break;
    b = e + 1;
  }
  return out;
}

bool is_number(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int tower_rank(Tower t) {
  switch (t) {
    case Tower::kVision: return 0;
    case Tower::kLanguage: return 1;
    case Tower::kHead: return 2;
    default: return 3;
  }
}

// named_modules order of two canonical module names.
bool model_order_before(const ModulePlan& a, const ModulePlan& b) {
  if (a.tower != b.tower) return tower_rank(a.tower) < tower_rank(b.tower);
  auto ca = split_dots(a.canonical_module), cb = split_dots(b.canonical_module);
  for (std::size_t i = 0; i < std::min(ca.size(), cb.size()); ++i) {
    if (ca[i] == cb[i]) continue;
    if (is_number(ca[i]) && is_number(cb[i])) {
      if (ca[i].size() != cb[i].size()) return ca[i].size() < cb[i].size();
      return ca[i] < cb[i];
    }
    int ra = component_rank(ca[i]), rb = component_rank(cb[i]);
    if (ra != rb) return ra < rb;
    return ca[i] < cb[i];
  }
  return ca.size() < cb.size();
}

bool exclude_entry_hits(const std::string& entry, const std::string& name) {
  if (formats::is_regex_entry(entry))
    return formats::regex_test(formats::regex_body(entry), name, formats::MatchMode::kRegexMatch);
  if (formats::has_wildcard(entry)) return formats::fnmatch_case(entry, name);
  return formats::in_subtree(name, entry);
}

// Option combinations that cannot work, before the checkpoint is looked at.
void check_options(const std::string& where, const QuantizeOptions& opt) {
  if (opt.pad)
    throw UsageError(
        {where, "--pad is not supported",
         "Linears whose K and N are multiples of 16 (others are kept BF16 and listed in the exclusions)", "--pad",
         "drop --pad: a zero-padded weight has a shape that no loader accepts (transformers, vLLM, SGLang and vlq "
         "check every tensor shape against config.json), so a padded checkpoint would not load anywhere; the "
         "misaligned Linears are kept BF16 instead, or --unaligned fp8 quantizes them in their own shape for vlq "
         "(its GPU path pads the vision MLP width itself; vLLM's FP8 GEMMs need 16: a slow fallback or an assertion)"});
  if (opt.format == ExportFormat::kCompressedTensors && opt.modelopt_version_compat)
    throw UsageError({where, "--modelopt-compat applies to the ModelOpt format only", "--format modelopt",
                      "--format compressed-tensors", "drop --modelopt-compat"});
  if (opt.modelopt_version_compat) {
    const int minor = detail::modelopt_minor(*opt.modelopt_version_compat);
    if (minor < 31 || minor > detail::kModelOptDefaultMinor)
      throw UsageError({where, "unknown ModelOpt version for --modelopt-compat", "0.31 ... 0.47",
                        *opt.modelopt_version_compat, "leave it out for the ModelOpt 0.47 layout"});
  }
  if (opt.vision_kv == VisionKvScales::kModelOpt) {
    if (opt.format != ExportFormat::kModelOpt || opt.scope != Scope::kVisionLanguage || !opt.kv_cache_fp8)
      throw UsageError({where, "vision K/V scales (ModelOpt orphans) need the ModelOpt format, scope vlm and an FP8 KV cache",
                        "--format modelopt --scope vlm --kv-cache fp8",
                        fmt::format("format {}, scope {}, kv cache {}",
                                    opt.format == ExportFormat::kModelOpt ? "modelopt" : "compressed-tensors",
                                    opt.scope == Scope::kVisionLanguage ? "vlm" : "lm", opt.kv_cache_fp8 ? "fp8" : "none"),
                        "they exist only to reproduce ModelOpt; leave --vision-kv-scales at none"});
  }
  for (const auto& e : opt.exclude)
    if (formats::is_regex_entry(e))
      if (std::string err = formats::regex_error(formats::regex_body(e)); !err.empty())
        throw ConfigError({"--exclude '" + e + "'", "regular expression does not compile", "a valid re: pattern", err, ""});

}

// An FP8 input (tensors or a quantization_config) is refused: quantize the original model.
void refuse_quantized_input(const io::Checkpoint& ckpt, const formats::ModelConfig& cfg, const std::string& where) {
  if (cfg.quantization_config)
    throw UsageError({where + "/config.json", "the input is already quantized (config.json has a quantization_config)",
                      "a BF16/F16/F32 checkpoint", "quantization_config",
                      "quantize the original model; to retarget an FP8 checkpoint use vlq convert"});
  for (const auto& n : ckpt.names()) {
    const auto& info = ckpt.info(n);
    const std::string_view leaf = formats::leaf_of(n);
    if (is_fp8(info.dtype) || leaf == "weight_scale" || leaf == "input_scale" || leaf == "k_scale" || leaf == "v_scale")
      throw UsageError({where + ": " + n, "the input is already quantized", "a BF16/F16/F32 checkpoint",
                        fmt::format("{} {}", n, dtype_name(info.dtype)),
                        "quantize the original model; to retarget an FP8 checkpoint use vlq convert"});
  }
}

// Every Linear (2-D weight, not the token embedding) and the Conv3d patch embedding, in model order.
std::vector<ModulePlan> collect_modules(const io::Checkpoint& ckpt) {
  std::vector<ModulePlan> mods;
  for (const auto& n : ckpt.names()) {
    if (formats::leaf_of(n) != "weight") continue;
    const auto& info = ckpt.info(n);
    const std::string mod(formats::module_of(n));
    const std::string canon = canonical_module_of(mod);
    if (formats::leaf_of(canon) == "embed_tokens") continue;  // token embedding (never quantized)
    ModulePlan m;
    m.checkpoint_module = mod;
    m.canonical_module = canon;
    m.tower = formats::tower_of(canon);
    if (info.shape.size() == 2) {
      m.out_features = info.shape[0];
      m.in_features = info.shape[1];
      if (info.dtype != DType::BF16 && info.dtype != DType::F16 && info.dtype != DType::F32)
        throw UnsupportedError({n, "Linear weight dtype vlq cannot quantize", "BF16, F16 or F32",
                                std::string(dtype_name(info.dtype)), "convert the checkpoint to BF16 first"});
    } else if (info.shape.size() >= 3) {
      m.is_linear = false;
      m.out_features = info.shape[0];
      m.in_features = 1;
      for (std::size_t i = 1; i < info.shape.size(); ++i) m.in_features *= info.shape[i];
    } else {
      continue;  // norms
    }
    mods.push_back(std::move(m));
  }
  std::sort(mods.begin(), mods.end(), model_order_before);
  return mods;
}

// Counts what each --exclude entry matches; an entry matching nothing is a UsageError naming the closest module.
void match_excludes(QuantPlan& plan, const QuantizeOptions& opt) {
  std::vector<int> hits(opt.exclude.size(), 0);
  std::vector<std::string> first_hit(opt.exclude.size());
  for (auto& m : plan.modules) {
    for (std::size_t i = 0; i < opt.exclude.size(); ++i) {
      if (exclude_entry_hits(opt.exclude[i], m.canonical_module) || exclude_entry_hits(opt.exclude[i], m.checkpoint_module)) {
        if (hits[i]++ == 0) first_hit[i] = m.checkpoint_module;
      }
    }
  }
  for (std::size_t i = 0; i < opt.exclude.size(); ++i) {
    if (hits[i] > 0) continue;
    std::string closest;
    std::size_t best = std::numeric_limits<std::size_t>::max();
    for (const auto& m : plan.modules)
      for (const std::string* n : {&m.canonical_module, &m.checkpoint_module}) {
        std::size_t d = formats::edit_distance(formats::is_regex_entry(opt.exclude[i]) ? formats::regex_body(opt.exclude[i])
                                                                                       : std::string_view(opt.exclude[i]),
                                               *n);
        if (d < best) best = d, closest = *n;
      }
    throw UsageError({"--exclude '" + opt.exclude[i] + "'", "the exclude pattern matches no module",
                      "a pattern matching at least one Linear (canonical or checkpoint name)", "no match",
                      fmt::format("closest module: {}; plain names match a module and everything under it, '*' is a "
                                  "shell wildcard, 're:' patterns are anchored at the start",
                                  closest)});
  }
  for (std::size_t i = 0; i < opt.exclude.size(); ++i) plan.exclude_matches.emplace_back(opt.exclude[i], hits[i]);
}

// Whether one module is quantized, and why (not).
void decide(ModulePlan& m, const QuantizeOptions& opt) {
  m.quantize = false;
  if (!m.is_linear) {
    m.reason = fmt::format("Conv3d patch embedding (K={}{}): kept in the source dtype as ModelOpt and llm-compressor do",
                           m.in_features, m.in_features % 16 ? ", not a multiple of 16" : "");
    return;
  }
  if (m.tower == Tower::kHead || m.canonical_module == "lm_head") {
    m.reason = "lm_head excluded by default (as ModelOpt and llm-compressor)";
    return;
  }
  if (opt.scope == Scope::kLanguageModel && m.tower == Tower::kVision) {
    m.reason = "scope lm: vision tower";
    return;
  }
  std::string by;
  for (const auto& e : opt.exclude)
    if (exclude_entry_hits(e, m.canonical_module) || exclude_entry_hits(e, m.checkpoint_module)) {
      by = e;
      break;
    }
  if (!by.empty()) {
    m.reason = "--exclude '" + by + "'";
    return;
  }
  if (m.in_features % 16 || m.out_features % 16) {
    const char* dim = m.in_features % 16 ? "K" : "N";
    const std::int64_t v = m.in_features % 16 ? m.in_features : m.out_features;
    if (!opt.unaligned_fp8) {
      m.reason = fmt::format("{}={} not a multiple of 16 (FP8 GEMM alignment of cuBLASLt/CUTLASS; --unaligned fp8 "
                             "quantizes it for vlq)", dim, v);
      return;
    }
    m.quantize = true;
    m.reason = fmt::format("FP8 E4M3 per-tensor weight, static per-tensor input; {}={} not a multiple of 16 "
                           "(--unaligned fp8: vlq runs it; vLLM's FP8 GEMMs need 16, see `vlq check`)", dim, v);
    return;
  }
  m.quantize = true;
  m.reason = "FP8 E4M3 per-tensor weight, static per-tensor input";
}

// Shards that runtimes fuse into one Linear (q/k/v → qkv_proj, gate/up → gate_up_proj; vLLM, SGLang, TensorRT-LLM)
// must share one dtype: vLLM 0.10 builds the fused Linear from one exclusion test and casts a kept shard's BF16
// weight to FP8 without scales, newer vLLM raises "Detected some but not all shards ... are quantized". So when
// some shard is kept (alignment: the odd test models' k_proj N = 8; or a user's --exclude of one shard), its
// siblings are kept too, and their reason names it.
void keep_fused_groups_whole(QuantPlan& plan) {
  auto group_of = [](const ModulePlan& m) -> std::string {  // the fused module (vLLM's stacked_params_mapping)
    const auto r = formats::qwen2_lm_fusion().apply(m.canonical_module);
    return r ? r->name : std::string();
  };
  std::map<std::string, std::vector<ModulePlan*>> groups;
  for (auto& m : plan.modules)
    if (m.is_linear)
      if (std::string g = group_of(m); !g.empty()) groups[g].push_back(&m);
  for (auto& [g, members] : groups) {
    const ModulePlan* kept = nullptr;
    bool any_quantized = false;
    for (const ModulePlan* m : members) {
      if (!m->quantize && !kept) kept = m;
      any_quantized |= m->quantize;
    }
    if (!kept || !any_quantized) continue;
    const bool qkv = formats::leaf_of(g) == "qkv_proj";
    for (ModulePlan* m : members)
      if (m->quantize) {
        m->quantize = false;
        m->reason = fmt::format("fused sibling {} is not quantized: runtimes fuse {} into one {} whose shards must share "
                                "a dtype", formats::leaf_of(kept->canonical_module), qkv ? "q/k/v" : "gate/up",
                                formats::leaf_of(g));
      }
  }
}

// The attention modules that get k_scale / v_scale.
void add_kv_attention(QuantPlan& plan, const QuantizeOptions& opt) {
  for (const auto& m : plan.modules) {
    if (!m.is_linear) continue;
    const std::string_view leaf = formats::leaf_of(m.canonical_module);
    const bool lm_attn = m.tower == Tower::kLanguage && leaf == "k_proj";
    const bool vit_attn = m.tower == Tower::kVision && leaf == "qkv";
    if (!opt.kv_cache_fp8) continue;
    if (lm_attn || (vit_attn && opt.vision_kv == VisionKvScales::kModelOpt)) {
      const std::string canon(formats::module_of(m.canonical_module));
      plan.attention_modules_with_kv.push_back(canon);
      plan.attention_checkpoint_names[canon] = std::string(formats::module_of(m.checkpoint_module));
    }
  }
}

}  // namespace

int QuantPlan::quantized_count() const {
  return static_cast<int>(std::count_if(modules.begin(), modules.end(), [](const ModulePlan& m) { return m.quantize; }));
}

const ModulePlan* QuantPlan::find(std::string_view canonical_module) const {
  for (const auto& m : modules)
    if (m.canonical_module == canonical_module) return &m;
  return nullptr;
}

QuantPlan plan_quantization(const io::Checkpoint& ckpt, const formats::ModelConfig& cfg, const QuantizeOptions& opt) {
  const std::string where = ckpt.dir().string();
  check_options(where, opt);
  refuse_quantized_input(ckpt, cfg, where);
  QuantPlan plan;
  plan.naming = std::string(formats::naming_generation_name(formats::detect_naming(ckpt.names())));
  plan.modules = collect_modules(ckpt);
  const bool has_vision =
      std::any_of(plan.modules.begin(), plan.modules.end(), [](const ModulePlan& m) { return m.is_linear && m.tower == Tower::kVision; });
  if (opt.scope == Scope::kVisionLanguage && !has_vision)
    throw UsageError({where, "scope vlm needs a vision tower, and this checkpoint has no vision Linears",
                      "model.visual.* / visual.* Linears", "none",
                      "use --scope lm (language model only) or point at the full Qwen2.5-VL checkpoint"});

  match_excludes(plan, opt);
  for (auto& m : plan.modules) decide(m, opt);
  keep_fused_groups_whole(plan);
  if (plan.quantized_count() == 0)
    throw UsageError({where, "nothing to quantize: every Linear is excluded", "at least one Linear quantized", "0",
                      "check --scope and --exclude"});
  add_kv_attention(plan, opt);
  return plan;
}

}  // namespace vlq::quant
