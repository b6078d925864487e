// How one export is written: scale conventions, both formats' quantization config blocks, provenance
// (see src/quant/recipe.h).
#include "quant/recipe.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <set>

#include "vlq/core/error.h"
#include "vlq/core/numerics.h"
#include "vlq/formats/names.h"
#include "vlq/io/safetensors.h"

namespace vlq::quant::detail {

using nlohmann::json;
using nlohmann::ordered_json;

namespace {

// ---- ModelOpt exclude_modules summary ---------------------------------------------------------------

// Port of ModelOpt 0.47 `_prefix_wildcard_summarize_exclude_modules` (quant_utils.py). With
// `pair_as_star_only` false the pair {a, a.*} is emitted as both entries (older releases, doc §1.5).
// `also_quantized`: more names of quantized modules (their canonical names) whose prefixes must not become
// wildcards either: with legacy checkpoint names and the whole language model kept, ModelOpt's rule picks
// "model*", which also matches the FP8 vision Linears under transformers >= 4.52 naming (model.visual.*).
std::set<std::string> summarize_exclude(const std::vector<std::string>& unquantized,
                                        const std::vector<std::string>& quantized, bool pair_as_star_only,
                                        const std::vector<std::string>& also_quantized = {}) {
  std::set<std::string> negative;
  for (const auto* list : {&quantized, &also_quantized})
    for (const auto& q : *list) {
      negative.insert(q);
      for (std::size_t i = 0; i <= q.size(); ++i) negative.insert(q.substr(0, i) + "*");
    }
  std::set<std::string> res;
  for (const auto& name : unquantized) {
    std::vector<std::vector<std::string>> cands;
    for (std::size_t i = 0; i < name.size(); ++i)
      if (name[i] == '.') {
        cands.push_back({name.substr(0, i) + "*"});
        cands.push_back({name.substr(0, i), name.substr(0, i) + ".*"});
      }
    cands.push_back({name});
    std::vector<std::string> chosen;
    for (const auto& w : cands) {
      if (std::any_of(w.begin(), w.end(), [&](const std::string& x) { return negative.count(x) > 0; })) continue;
      if (std::all_of(w.begin(), w.end(), [&](const std::string& x) { return res.count(x) > 0; })) {
        chosen.clear();
        break;
      }
      chosen = w;
      break;
    }
    if (chosen.size() == 2 && pair_as_star_only) {
      res.insert(chosen[1]);
    } else {
      res.insert(chosen.begin(), chosen.end());
    }
  }
  return res;
}


// f32 → the source float dtype and back (the rounding PyTorch applies to a result of that dtype).
float round_to(float v, DType dt) {
  switch (dt) {
    case DType::BF16: return bf16_to_f32(f32_to_bf16(v));
    case DType::F16: return f16_to_f32(f32_to_f16(v));
    default: return v;
  }
}

// ModelOpt exclude_modules / ignore: the unquantized modules summarised with wildcards, as the release does.
std::vector<std::string> modelopt_exclude(const QuantPlan& plan, const io::Checkpoint& ck, const ExportRecipe& r) {
  std::vector<std::string> unq, q, exclude;
  if (r.old_exclude) {
    // MO <= 0.37: the pool is model.model's Linears, named "model.layers." + in-memory name minus "model.".
    for (const auto& m : plan.modules) {
      if (!m.is_linear || m.canonical_module.rfind("model.", 0) != 0) continue;
      (m.quantize ? q : unq).push_back("model.layers." + m.canonical_module.substr(6));
    }
    auto s = summarize_exclude(unq, q, false);
    exclude.assign(s.begin(), s.end());
    exclude.push_back("lm_head");
    return exclude;
  }
  // MO >= 0.39: every module with quantizers (Linears and the token embedding), checkpoint names.
  bool lm_head_listed = false;
  std::vector<std::string> q_canonical;
  for (const auto& m : plan.modules)
    if (m.is_linear) {
      (m.quantize ? q : unq).push_back(m.checkpoint_module);
      if (m.quantize && m.canonical_module != m.checkpoint_module) q_canonical.push_back(m.canonical_module);
      lm_head_listed |= !m.quantize && m.canonical_module == "lm_head";
    }
  for (const auto& n : ck.names())
    if (formats::leaf_of(n) == "weight" && formats::leaf_of(canonical_module_of(std::string(formats::module_of(n)))) == "embed_tokens")
      unq.push_back(std::string(formats::module_of(n)));
  if (!lm_head_listed) unq.push_back("lm_head");  // tied head: no tensor, but the module exists
  auto s = summarize_exclude(unq, q, true, q_canonical);
  exclude.assign(s.begin(), s.end());
  if (std::find(exclude.begin(), exclude.end(), "lm_head") == exclude.end()) exclude.push_back("lm_head");
  return exclude;
}

void write_modelopt_declaration(const QuantPlan& plan, const io::Checkpoint& ck, const ExportRecipe& r, bool kv,
                                json& config, std::optional<ordered_json>& hfq) {
  const std::vector<std::string> exclude = modelopt_exclude(plan, ck, r);
  const ordered_json producer = {{"name", "modelopt"}, {"version", fmt::format("0.{}.0", r.mo_minor)}};
  hfq = ordered_json{{"producer", producer},
                     {"quantization", {{"quant_algo", "FP8"}, {"kv_cache_quant_algo", kv ? ordered_json("FP8") : ordered_json(nullptr)},
                                       {"exclude_modules", exclude}}}};
  const json args = {{"dynamic", false}, {"num_bits", 8}, {"type", "float"}};
  json qc = {{"config_groups", {{"group_0", {{"input_activations", args}, {"weights", args}, {"targets", {"Linear"}}}}}},
             {"ignore", exclude},
             {"quant_algo", "FP8"},
             {"producer", json::parse(producer.dump())},
             {"quant_method", "modelopt"}};
  if (kv) qc["kv_cache_scheme"] = args;
  config["quantization_config"] = qc;
}

void write_compressed_tensors_declaration(const QuantPlan& plan, bool kv, json& config) {
  auto args = [](const char* observer) {
    return json{{"actorder", nullptr}, {"block_structure", nullptr}, {"dynamic", false}, {"group_size", nullptr},
                {"num_bits", 8}, {"observer", observer ? json(observer) : json(nullptr)}, {"observer_kwargs", json::object()},
                {"scale_dtype", nullptr}, {"strategy", "tensor"}, {"symmetric", true}, {"type", "float"},
                {"zp_dtype", nullptr}};
  };
  std::vector<std::string> ignore = kept_linears(plan);
  if (std::none_of(plan.modules.begin(), plan.modules.end(),
                   [](const ModulePlan& m) { return m.is_linear && !m.quantize && m.canonical_module == "lm_head"; }))
    ignore.push_back("lm_head");
  json qc = {{"config_groups",
              {{"group_0",
                {{"format", "float-quantized"}, {"input_activations", args("static_minmax")}, {"output_activations", nullptr},
                 {"targets", {"Linear"}}, {"weights", args("memoryless_minmax")}}}}},
             {"format", "float-quantized"},
             {"global_compression_ratio", nullptr},
             {"ignore", ignore},
             {"kv_cache_scheme", kv ? args(nullptr) : json(nullptr)},
             {"quant_method", "compressed-tensors"},
             {"quantization_status", "compressed"},
             {"sparsity_config", json::object()},
             {"transform_config", json::object()},
             {"version", kCompressedTensorsVersion}};
  config["quantization_config"] = qc;
}

}  // namespace

int modelopt_minor(const std::string& v) {
  if (v.rfind("0.", 0) != 0) return -1;
  std::size_t i = 2, j = i;
  while (j < v.size() && std::isdigit(static_cast<unsigned char>(v[j]))) ++j;
  if (j == i) return -1;
  if (j != v.size() && v[j] != '.') return -1;
  return std::stoi(v.substr(i, j - i));
}

std::string canonical_module_of(const std::string& checkpoint_module) {
  return std::string(formats::module_of(formats::canonical_name(checkpoint_module + ".weight")));
}

ExportRecipe ExportRecipe::of(const QuantizeOptions& opt) {
  ExportRecipe r;
  r.modelopt = opt.format == ExportFormat::kModelOpt;
  r.mo_minor = opt.modelopt_version_compat ? modelopt_minor(*opt.modelopt_version_compat) : kModelOptDefaultMinor;
  if (r.modelopt && (r.mo_minor < 31 || r.mo_minor > kModelOptDefaultMinor))
    throw UsageError({"--modelopt-compat", "unknown ModelOpt version", "0.31 ... 0.47", *opt.modelopt_version_compat, ""});
  r.clamp_kv = r.modelopt && r.mo_minor < 43;
  r.old_exclude = r.modelopt && r.mo_minor < 39;
  r.weights.rounding = opt.weight_rounding;
  r.weights.scale_in_source_dtype = !r.modelopt;  // compressed-tensors stores the scale in the weight dtype
  return r;
}

float ExportRecipe::scale_of(float amax, DType weight_dtype) const {
  return modelopt ? amax / kE4M3Max : round_to(amax / kE4M3Max, weight_dtype);
}

std::vector<std::byte> scalar_bytes(float v, DType dt) {
  std::vector<std::byte> b(dtype_size(dt));
  if (dt == DType::F32) std::memcpy(b.data(), &v, 4);
  else {
    std::uint16_t h = dt == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
    std::memcpy(b.data(), &h, 2);
  }
  return b;
}

std::vector<std::string> kept_linears(const QuantPlan& plan) {
  std::vector<std::string> kept;
  for (const auto& m : plan.modules)
    if (m.is_linear && !m.quantize) kept.push_back(m.checkpoint_module);
  return kept;
}

void write_declaration(const QuantPlan& plan, const io::Checkpoint& ck, const ExportRecipe& recipe, bool kv, json& config,
                       std::optional<ordered_json>& hfq) {
  if (recipe.modelopt) write_modelopt_declaration(plan, ck, recipe, kv, config, hfq);
  else write_compressed_tensors_declaration(plan, kv, config);
}

std::string provenance_json(const QuantizeOptions& opt, const CalibrationStats& stats, const ExportRecipe& r, bool kv,
                            int quantized, const std::vector<std::string>& kept) {
  json prov = {{"producer", "vlq"},
               {"format", r.modelopt ? "modelopt" : "compressed-tensors"},
               {"layout_of", r.modelopt ? fmt::format("modelopt 0.{}", r.mo_minor) : fmt::format("compressed-tensors {}", kCompressedTensorsVersion)},
               {"scope", opt.scope == Scope::kVisionLanguage ? "vlm" : "lm"},
               {"exclude", opt.exclude},
               {"kv_cache", kv ? "fp8" : "none"},
               {"kv_scales_clamped_to_1", r.clamp_kv && kv},
               {"vision_kv_scales", opt.vision_kv == VisionKvScales::kModelOpt ? "modelopt" : "none"},
               {"weight_rounding", ops::fp8_rounding_name(opt.weight_rounding)},
               {"act_scale", opt.act_scale},
               {"unaligned", opt.unaligned_fp8 ? "fp8" : "keep"},
               {"calibration", {{"samples", stats.samples}, {"text_tokens", stats.text_tokens}, {"image_tokens", stats.image_tokens}}},
               {"quantized_linears", quantized},
               {"kept_linears", kept}};
  if (opt.provenance_extra.is_object())
    for (const auto& [k, v] : opt.provenance_extra.items()) prov[k] = v;
  return prov.dump(2) + "\n";
}

}  // namespace vlq::quant::detail
