// `vlq quantize` after calibration: quantization plan, bit-exact ModelOpt / compressed-tensors FP8 export,
// calibration-statistics JSON, CLI summary (see include/vlq/quant/export.h).
#include "vlq/quant/export.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <unistd.h>

#include "vlq/core/error.h"
#include "vlq/formats/export_stream.h"
#include "vlq/formats/names.h"
#include "vlq/formats/patterns.h"
#include "vlq/formats/quant_layout.h"
#include "vlq/formats/runtime_profile.h"
#include "vlq/io/json.h"
#include "vlq/io/safetensors.h"
#include "vlq/io/safetensors_writer.h"
#include "vlq/ops/fp8_weight.h"
#include "vlq/formats/hf_config.h"

namespace vlq::quant {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;
using formats::Tower;

constexpr const char* kCalibSchema = "vlq.calibration/1";
// The ModelOpt release whose layout the default output reproduces.
constexpr int kModelOptDefaultMinor = 47;
// compressed-tensors release whose quantization_config schema the output reproduces.
constexpr const char* kCompressedTensorsVersion = "0.19.0";

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ---- model order -----------------------------------------------------------------------------------

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

// ---- ModelOpt exclude_modules summary ---------------------------------------------------------------

// Port of ModelOpt 0.47 `_prefix_wildcard_summarize_exclude_modules` (quant_utils.py). With
// `pair_as_star_only` false the pair {a, a.*} is emitted as both entries (older releases, doc §1.5).
std::set<std::string> summarize_exclude(const std::vector<std::string>& unquantized,
                                        const std::vector<std::string>& quantized, bool pair_as_star_only) {
  std::set<std::string> negative;
  for (const auto& q : quantized) {
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

// ---- numerics helpers ------------------------------------------------------------------------------

// f32 → the source float dtype and back (the rounding PyTorch applies to a result of that dtype).
float round_to(float v, DType dt) {
  switch (dt) {
    case DType::BF16: return bf16_to_f32(f32_to_bf16(v));
    case DType::F16: return f16_to_f32(f32_to_f16(v));
    default: return v;
  }
}

// A scalar/[1] tensor of `dt` holding v (already representable in dt).
std::vector<std::byte> scalar_bytes(float v, DType dt) {
  std::vector<std::byte> b(dtype_size(dt));
  if (dt == DType::F32) std::memcpy(b.data(), &v, 4);
  else {
    std::uint16_t h = dt == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
    std::memcpy(b.data(), &h, 2);
  }
  return b;
}

// "0.35" / "0.35.1" → 35; -1 when not a ModelOpt 0.x version.
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

bool exclude_entry_hits(const std::string& entry, const std::string& name) {
  if (formats::is_regex_entry(entry))
    return formats::regex_test(formats::regex_body(entry), name, formats::MatchMode::kRegexMatch);
  if (formats::has_wildcard(entry)) return formats::fnmatch_case(entry, name);
  return formats::in_subtree(name, entry);
}

// vlq_quantize.json: how the export was made (options, calibration counts, what was kept).
std::string provenance_json(const QuantizeOptions& opt, const CalibrationStats& stats, int mo_minor, bool kv, bool clamp_kv,
                            int quantized, const std::vector<std::string>& kept_linears) {
  const bool modelopt = opt.format == ExportFormat::kModelOpt;
  json prov = {{"producer", "vlq"},
               {"format", modelopt ? "modelopt" : "compressed-tensors"},
               {"layout_of", modelopt ? fmt::format("modelopt 0.{}", mo_minor) : fmt::format("compressed-tensors {}", kCompressedTensorsVersion)},
               {"scope", opt.scope == Scope::kVisionLanguage ? "vlm" : "lm"},
               {"exclude", opt.exclude},
               {"kv_cache", kv ? "fp8" : "none"},
               {"kv_scales_clamped_to_1", clamp_kv && kv},
               {"vision_kv_scales", opt.vision_kv == VisionKvScales::kModelOpt ? "modelopt" : "none"},
               {"weight_rounding", ops::fp8_rounding_name(opt.weight_rounding)},
               {"calibration", {{"samples", stats.samples}, {"text_tokens", stats.text_tokens}, {"image_tokens", stats.image_tokens}}},
               {"quantized_linears", quantized},
               {"kept_linears", kept_linears}};
  return prov.dump(2) + "\n";
}

}  // namespace

// ==== calibration statistics ========================================================================

json calibration_stats_to_json(const CalibrationStats& s) {
  auto m = [](const std::map<std::string, float>& x) {
    json o = json::object();
    for (const auto& [k, v] : x) o[k] = static_cast<double>(v);  // f32 → double is exact; dumped round-trip
    return o;
  };
  return json{{"schema", kCalibSchema}, {"samples", s.samples}, {"text_tokens", s.text_tokens},
              {"image_tokens", s.image_tokens}, {"input_amax", m(s.input_amax)}, {"k_amax", m(s.k_amax)},
              {"v_amax", m(s.v_amax)}};
}

CalibrationStats calibration_stats_from_json(const json& j, const std::string& file) {
  if (!j.is_object()) throw ConfigError({file, "calibration statistics must be a JSON object", "object", j.type_name(), ""});
  if (!j.contains("schema") || j["schema"] != kCalibSchema)
    throw ConfigError({file + ": schema", "not a vlq calibration file", kCalibSchema,
                       j.contains("schema") ? j["schema"].dump() : "no \"schema\" key",
                       "write it with vlq quantize --save-calib"});
  CalibrationStats s;
  auto counter = [&](const char* key, std::int64_t& out) {
    if (!j.contains(key)) return;
    if (!j[key].is_number_integer() || j[key].get<std::int64_t>() < 0)
      throw ConfigError({file + ": " + key, "counter must be a non-negative integer", "integer >= 0", j[key].dump(), ""});
    out = j[key].get<std::int64_t>();
  };
  counter("samples", s.samples);
  counter("text_tokens", s.text_tokens);
  counter("image_tokens", s.image_tokens);
  auto map = [&](const char* key, std::map<std::string, float>& out) {
    if (!j.contains(key) || !j[key].is_object())
      throw ConfigError({file + ": " + key, "missing or not an object", "{module: amax}",
                         j.contains(key) ? j[key].type_name() : "absent", ""});
    for (const auto& [k, v] : j[key].items()) {
      if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0)
        throw ConfigError({file + ": " + key + "." + k, "amax must be a finite number >= 0", "0 <= amax < inf", v.dump(),
                           "recalibrate"});
      out[k] = static_cast<float>(v.get<double>());
    }
  };
  map("input_amax", s.input_amax);
  map("k_amax", s.k_amax);
  map("v_amax", s.v_amax);
  return s;
}

void save_calibration_stats(const CalibrationStats& s, const fs::path& file) {
  io::write_text_file(file, calibration_stats_to_json(s).dump(2) + "\n");
}

CalibrationStats load_calibration_stats(const fs::path& file) {
  return calibration_stats_from_json(io::read_json_file(file), file.string());
}

// ==== plan ==========================================================================================

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
  // ---- option consistency ----
  if (opt.pad)
    throw UnsupportedError(
        {where, "--pad is not supported",
         "Linears whose K and N are multiples of 16 (others are kept BF16 and listed in the exclusions)", "--pad",
         "drop --pad: a zero-padded weight has a shape that no loader accepts (transformers, vLLM, SGLang and vlq "
         "check every tensor shape against config.json), so a padded checkpoint would not load anywhere; the "
         "misaligned Linears are kept BF16 instead"});
  if (opt.format == ExportFormat::kCompressedTensors && opt.modelopt_version_compat)
    throw UsageError({where, "--modelopt-compat applies to the ModelOpt format only", "--format modelopt",
                      "--format compressed-tensors", "drop --modelopt-compat"});
  if (opt.modelopt_version_compat) {
    const int minor = modelopt_minor(*opt.modelopt_version_compat);
    if (minor < 31 || minor > kModelOptDefaultMinor)
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
                        "they exist only to reproduce ModelOpt; leave --vision-kv at none"});
  }
  for (const auto& e : opt.exclude)
    if (formats::is_regex_entry(e))
      if (std::string err = formats::regex_error(formats::regex_body(e)); !err.empty())
        throw ConfigError({"--exclude '" + e + "'", "regular expression does not compile", "a valid re: pattern", err, ""});

  // ---- already quantized? ----
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

  QuantPlan plan;
  plan.naming = std::string(formats::naming_generation_name(formats::detect_naming(ckpt.names())));

  // ---- modules ----
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
    plan.modules.push_back(std::move(m));
  }
  std::sort(plan.modules.begin(), plan.modules.end(), model_order_before);

  const bool has_vision =
      std::any_of(plan.modules.begin(), plan.modules.end(), [](const ModulePlan& m) { return m.is_linear && m.tower == Tower::kVision; });
  if (opt.scope == Scope::kVisionLanguage && !has_vision)
    throw UsageError({where, "scope vlm needs a vision tower, and this checkpoint has no vision Linears",
                      "model.visual.* / visual.* Linears", "none",
                      "use --scope lm (language model only) or point at the full Qwen2.5-VL checkpoint"});

  // ---- exclude entries ----
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

  // ---- decide ----
  for (auto& m : plan.modules) {
    m.quantize = false;
    if (!m.is_linear) {
      m.reason = fmt::format("Conv3d patch embedding (K={}{}): kept in the source dtype as ModelOpt and llm-compressor do",
                             m.in_features, m.in_features % 16 ? ", not a multiple of 16" : "");
      continue;
    }
    if (m.tower == Tower::kHead || m.canonical_module == "lm_head") {
      m.reason = "lm_head excluded by default (as ModelOpt and llm-compressor)";
      continue;
    }
    if (opt.scope == Scope::kLanguageModel && m.tower == Tower::kVision) {
      m.reason = "scope lm: vision tower";
      continue;
    }
    std::string by;
    for (const auto& e : opt.exclude)
      if (exclude_entry_hits(e, m.canonical_module) || exclude_entry_hits(e, m.checkpoint_module)) {
        by = e;
        break;
      }
    if (!by.empty()) {
      m.reason = "--exclude '" + by + "'";
      continue;
    }
    if (m.in_features % 16 || m.out_features % 16) {
      m.reason = fmt::format("{}={} not a multiple of 16 (FP8 GEMM alignment of cuBLASLt/CUTLASS): kept in the source dtype",
                             m.in_features % 16 ? "K" : "N", m.in_features % 16 ? m.in_features : m.out_features);
      continue;
    }
    m.quantize = true;
    m.reason = "FP8 E4M3 per-tensor weight, static per-tensor input";
  }
  if (plan.quantized_count() == 0)
    throw UsageError({where, "nothing to quantize: every Linear is excluded", "at least one Linear quantized", "0",
                      "check --scope and --exclude"});

  // ---- attention modules ----
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
  return plan;
}

// ==== export ========================================================================================

void ScaleRange::add(float v) {
  if (count == 0) min = max = v;
  min = std::min(min, v);
  max = std::max(max, v);
  ++count;
}

ExportReport export_quantized(const fs::path& model_dir, const fs::path& out_dir, const QuantPlan& plan,
                              const CalibrationStats& stats, const QuantizeOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  ExportReport rep;
  rep.out = out_dir;
  const bool modelopt = opt.format == ExportFormat::kModelOpt;
  const int mo_minor = opt.modelopt_version_compat ? modelopt_minor(*opt.modelopt_version_compat) : kModelOptDefaultMinor;
  if (modelopt && (mo_minor < 31 || mo_minor > kModelOptDefaultMinor))
    throw UsageError({"--modelopt-compat", "unknown ModelOpt version", "0.31 ... 0.47", *opt.modelopt_version_compat, ""});
  const bool clamp_kv = modelopt && mo_minor < 43;
  const bool old_exclude = modelopt && mo_minor < 39;

  const fs::path folder = fs::is_directory(model_dir) ? model_dir : model_dir.parent_path();
  io::require_new_output(out_dir, {folder}, opt.force);
  io::Checkpoint ck = io::Checkpoint::open(model_dir);
  json config = io::read_json_file(folder / "config.json");

  // ---- resolve amax for everything written ----
  std::map<std::string, const ModulePlan*> by_weight;  // checkpoint weight name → plan
  std::vector<std::string> missing;
  for (const auto& m : plan.modules) {
    if (!m.quantize) continue;
    const std::string w = m.checkpoint_module + ".weight";
    if (!ck.find(w).info)
      throw UsageError({w, "the plan names a Linear this checkpoint does not have", "a plan made from " + folder.string(),
                        "no such tensor", "call plan_quantization on the same checkpoint"});
    by_weight[w] = &m;
    if (!stats.input_amax.count(m.canonical_module)) missing.push_back("input_amax[" + m.canonical_module + "]");
  }
  for (const auto& a : plan.attention_modules_with_kv) {
    if (!stats.k_amax.count(a)) missing.push_back("k_amax[" + a + "]");
    if (!stats.v_amax.count(a)) missing.push_back("v_amax[" + a + "]");
  }
  if (!missing.empty()) {
    std::string list;
    for (std::size_t i = 0; i < missing.size() && i < 6; ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 6) list += fmt::format(", ... ({} in all)", missing.size());
    throw ConfigError({missing.front(), "calibration statistics lack the amax of modules to be quantized",
                       "an amax for every quantized Linear and every KV attention module", list,
                       "recalibrate with the same --scope/--exclude/--kv-cache, or exclude these modules"});
  }

  // ---- output tensors ----
  struct Out {
    io::TensorSpec spec;
    enum Kind { kCopy, kWeight, kWeightScale, kInputScale, kKv } kind = kCopy;
    std::string src;            // input tensor (kCopy, kWeight)
    const ModulePlan* m = nullptr;
    float value = 0;            // kInputScale, kKv
  };
  std::vector<Out> outs;
  std::map<std::string, std::size_t> weight_scale_index;  // module → index in outs
  for (const auto& n : ck.names()) {
    const auto& info = ck.info(n);
    ++rep.tensors_in;
    rep.bytes_in += info.nbytes();
    auto it = by_weight.find(n);
    if (it == by_weight.end()) {
      outs.push_back({{n, info.dtype, info.shape}, Out::kCopy, n, nullptr, 0});
      continue;
    }
    const ModulePlan& m = *it->second;
    const DType sdt = modelopt ? DType::F32 : info.dtype;
    const std::vector<std::int64_t> sshape = modelopt ? std::vector<std::int64_t>{} : std::vector<std::int64_t>{1};
    outs.push_back({{n, DType::F8_E4M3, info.shape}, Out::kWeight, n, &m, 0});
    weight_scale_index[m.checkpoint_module] = outs.size();
    outs.push_back({{m.checkpoint_module + ".weight_scale", sdt, sshape}, Out::kWeightScale, "", &m, 0});
    const ops::Fp8Amax a = ops::sanitize_fp8_amax(stats.input_amax.at(m.canonical_module), "input amax", m.canonical_module);
    if (!a.warning.empty()) rep.warnings.push_back(a.warning);
    const float s = modelopt ? a.value / kE4M3Max : round_to(a.value / kE4M3Max, info.dtype);
    outs.push_back({{m.checkpoint_module + ".input_scale", sdt, sshape}, Out::kInputScale, "", &m, s});
    rep.input_amax.add(stats.input_amax.at(m.canonical_module));
    rep.input_scale.add(s);
  }
  for (const auto& a : plan.attention_modules_with_kv) {
    const std::string& ckname = plan.attention_checkpoint_names.at(a);
    const bool vision = formats::tower_of(a) == Tower::kVision;
    // dtype of the attention's parameters (compressed-tensors): its Linears' weight dtype.
    DType adt = DType::BF16;
    for (const auto& m : plan.modules)
      if (m.is_linear && formats::in_subtree(m.checkpoint_module, ckname)) {
        adt = ck.info(m.checkpoint_module + ".weight").dtype;
        break;
      }
    for (formats::KvKind kind : {formats::KvKind::kK, formats::KvKind::kV}) {
      const bool k = kind == formats::KvKind::kK;
      const ops::Fp8Amax c = ops::sanitize_fp8_amax(k ? stats.k_amax.at(a) : stats.v_amax.at(a), k ? "K amax" : "V amax", a);
      if (!c.warning.empty()) rep.warnings.push_back(c.warning);
      float s = modelopt ? c.value / kE4M3Max : round_to(c.value / kE4M3Max, adt);
      if (clamp_kv && s < 1.0f) s = 1.0f;
      const std::string name =
          formats::kv_scale_name(ckname, kind, modelopt ? formats::KvStyle::kModelOpt : formats::KvStyle::kCanonical);
      outs.push_back({{name, modelopt ? DType::F32 : adt, modelopt ? std::vector<std::int64_t>{} : std::vector<std::int64_t>{1}},
                      Out::kKv, "", nullptr, s});
      (k ? rep.k_scale : rep.v_scale).add(s);
      ++(vision ? rep.vision_kv_scales : rep.kv_scales);
    }
  }
  if (clamp_kv && !plan.attention_modules_with_kv.empty())
    rep.warnings.push_back(fmt::format("KV scales clamped to >= 1.0 (--modelopt-compat {}: ModelOpt <= 0.42 behaviour)",
                                       *opt.modelopt_version_compat));
  {
    std::set<std::string> seen;
    for (const auto& o : outs)
      if (!seen.insert(o.spec.name).second)
        throw UsageError({o.spec.name, "two output tensors would have the same name", "unique names", "a duplicate",
                          "the input has tensors named like FP8 scales; quantize the original model"});
  }

  // ---- configs ----
  std::vector<std::string> kept_linears;  // checkpoint names, model order
  bool lm_head_listed = false;
  for (const auto& m : plan.modules)
    if (m.is_linear && !m.quantize) {
      kept_linears.push_back(m.checkpoint_module);
      lm_head_listed |= m.canonical_module == "lm_head";
    }
  std::optional<ordered_json> hfq;
  const bool kv = opt.kv_cache_fp8 && !plan.attention_modules_with_kv.empty();
  if (modelopt) {
    std::vector<std::string> exclude;
    if (old_exclude) {
      // MO <= 0.37: the pool is model.model's Linears, named "model.layers." + in-memory name minus "model.".
      std::vector<std::string> unq, q;
      for (const auto& m : plan.modules) {
        if (!m.is_linear || m.canonical_module.rfind("model.", 0) != 0) continue;
        (m.quantize ? q : unq).push_back("model.layers." + m.canonical_module.substr(6));
      }
      auto s = summarize_exclude(unq, q, false);
      exclude.assign(s.begin(), s.end());
      exclude.push_back("lm_head");
    } else {
      // MO >= 0.39: every module with quantizers (Linears and the token embedding), checkpoint names.
      std::vector<std::string> unq, q;
      for (const auto& m : plan.modules)
        if (m.is_linear) (m.quantize ? q : unq).push_back(m.checkpoint_module);
      for (const auto& n : ck.names())
        if (formats::leaf_of(n) == "weight" && formats::leaf_of(canonical_module_of(std::string(formats::module_of(n)))) == "embed_tokens")
          unq.push_back(std::string(formats::module_of(n)));
      if (!lm_head_listed) unq.push_back("lm_head");  // tied head: no tensor, but the module exists
      auto s = summarize_exclude(unq, q, true);
      exclude.assign(s.begin(), s.end());
      if (std::find(exclude.begin(), exclude.end(), "lm_head") == exclude.end()) exclude.push_back("lm_head");
    }
    const ordered_json producer = {{"name", "modelopt"}, {"version", fmt::format("0.{}.0", mo_minor)}};
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
  } else {
    auto args = [](const char* observer) {
      return json{{"actorder", nullptr}, {"block_structure", nullptr}, {"dynamic", false}, {"group_size", nullptr},
                  {"num_bits", 8}, {"observer", observer ? json(observer) : json(nullptr)}, {"observer_kwargs", json::object()},
                  {"scale_dtype", nullptr}, {"strategy", "tensor"}, {"symmetric", true}, {"type", "float"},
                  {"zp_dtype", nullptr}};
    };
    std::vector<std::string> ignore = kept_linears;
    if (!lm_head_listed) ignore.push_back("lm_head");
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
  const std::optional<json> hfq_json = hfq ? std::optional<json>(json::parse(hfq->dump())) : std::nullopt;

  // ---- check the planned layout before computing anything ----
  formats::StreamPlan sp;
  sp.input_dir = folder;
  sp.out = out_dir;
  for (const auto& o : outs)
    sp.tensors.push_back({o.spec, o.kind == Out::kInputScale || o.kind == Out::kKv ? std::optional<double>(o.value) : std::nullopt});
  sp.config = config;
  sp.hf_quant_config = hfq_json;
  sp.files.emplace_back("config.json", config.dump(2) + "\n");
  if (hfq) sp.files.emplace_back("hf_quant_config.json", hfq->dump(4));
  sp.files.emplace_back("vlq_quantize.json", provenance_json(opt, stats, mo_minor, kv, clamp_kv, plan.quantized_count(), kept_linears));
  sp.skip_files = {"hf_quant_config.json"};
  sp.force = opt.force;
  sp.fsync = opt.fsync;
  sp.max_shard_bytes = opt.max_shard_bytes;
  formats::CheckpointStream stream(std::move(sp));
  const auto t_check0 = std::chrono::steady_clock::now();
  for (const auto& target : opt.check_targets) {
    const formats::Report pre = stream.check_planned(formats::find_profile(target));
    if (formats::verdict_fails(pre.verdict))
      throw ConfigError({out_dir.string(), fmt::format("the quantized checkpoint would not load on {}", target), "loads",
                         std::string(formats::verdict_name(pre.verdict)) + ": " + formats::failure_summary(pre),
                         "change --scope/--vision-kv/--format, or drop --check " + target + "; nothing was written"});
  }
  rep.seconds_check += seconds_since(t_check0);
  rep.seconds_prepare = seconds_since(t0) - rep.seconds_check;

  // ---- stream ----
  const auto t_write0 = std::chrono::steady_clock::now();
  stream.write([&](std::size_t i, io::CheckpointWriter& w) {
    Out& o = outs[i];
    switch (o.kind) {
      case Out::kCopy: w.write(o.spec.name, ck.data(o.src)); break;
      case Out::kInputScale:
      case Out::kKv: w.write(o.spec.name, scalar_bytes(o.value, o.spec.dtype)); break;
      case Out::kWeightScale: break;  // written right after its weight
      case Out::kWeight: {
        const auto& info = ck.info(o.src);
        ops::Fp8WeightRecipe recipe;
        recipe.rounding = opt.weight_rounding;
        recipe.scale_in_source_dtype = !modelopt;  // compressed-tensors stores the scale in the weight dtype
        const ops::Fp8Weight qw = ops::quantize_weight_fp8(ck.data(o.src), info.dtype, info.dtype, recipe, o.src);
        if (!qw.warning.empty()) rep.warnings.push_back(qw.warning);
        const float s = qw.scale;
        ModuleExport me;
        me.checkpoint_module = o.m->checkpoint_module;
        me.weight_amax = qw.amax;
        me.weight_scale = s;
        me.input_amax = stats.input_amax.at(o.m->canonical_module);
        me.input_scale = outs[i + 2].value;
        me.saturated = qw.saturated;
        rep.modules.push_back(me);
        rep.weight_amax.add(qw.amax);
        rep.weight_scale.add(s);
        w.write(o.spec.name, std::as_bytes(std::span<const std::uint8_t>(qw.codes)));
        const Out& so = outs[weight_scale_index.at(o.m->checkpoint_module)];
        w.write(so.spec.name, scalar_bytes(s, so.spec.dtype));
        ++rep.quantized;
        break;
      }
    }
  });
  rep.kept = static_cast<int>(std::count_if(plan.modules.begin(), plan.modules.end(), [](const ModulePlan& m) { return m.is_linear && !m.quantize; }));
  rep.seconds_write = seconds_since(t_write0);

  // ---- check what was written, then rename into place ----
  const auto t_check1 = std::chrono::steady_clock::now();
  for (const auto& target : opt.check_targets) {
    formats::Report r = stream.check_written(formats::find_profile(target));
    if (formats::verdict_fails(r.verdict))
      throw ConfigError({out_dir.string(), fmt::format("the quantized checkpoint would not load on {}", target), "loads",
                         std::string(formats::verdict_name(r.verdict)) + ": " + formats::failure_summary(r),
                         "nothing was written; change --scope/--vision-kv/--format, or drop --check " + target});
    rep.checks.push_back(std::move(r));
  }
  rep.seconds_check += seconds_since(t_check1);
  const auto t_commit = std::chrono::steady_clock::now();
  rep.tensors_out = outs.size();
  rep.bytes_out = stream.commit();
  rep.seconds_commit = seconds_since(t_commit);
  return rep;
}

// ==== summary =======================================================================================

std::string format_summary(const QuantPlan& plan, const ExportReport& r) {
  std::ostringstream o;
  o << fmt::format("quantized {} Linears to FP8, kept {} in the source dtype; {} KV-scale tensors{}\n", r.quantized, r.kept,
                   r.kv_scales, r.vision_kv_scales ? fmt::format(" + {} vision K/V orphans (ModelOpt layout)", r.vision_kv_scales) : "");
  // Group modules by reason.
  std::map<std::string, std::vector<const ModulePlan*>> groups;
  std::vector<std::string> order;
  for (const auto& m : plan.modules) {
    const std::string key = (m.quantize ? "FP8  " : "kept ") + m.reason;
    if (!groups.count(key)) order.push_back(key);
    groups[key].push_back(&m);
  }
  o << "\n  modules                                                   count  decision / reason\n";
  for (const auto& k : order) {
    const auto& g = groups[k];
    std::string ex = g.front()->checkpoint_module;
    if (g.size() > 1) ex += fmt::format(" ... {}", g.back()->checkpoint_module);
    if (ex.size() > 56) ex = ex.substr(0, 53) + "...";
    o << fmt::format("  {:<56}  {:>5}  {}\n", ex, g.size(), k);
  }
  for (const auto& [e, n] : plan.exclude_matches) o << fmt::format("  --exclude '{}' matched {} module(s)\n", e, n);
  auto range = [&](const char* what, const ScaleRange& s) {
    if (s.count) o << fmt::format("  {:<13} {:>12.6g} .. {:<12.6g} ({} values)\n", what, s.min, s.max, s.count);
  };
  o << "\n";
  range("weight amax", r.weight_amax);
  range("weight_scale", r.weight_scale);
  range("input amax", r.input_amax);
  range("input_scale", r.input_scale);
  range("k_scale", r.k_scale);
  range("v_scale", r.v_scale);
  std::uint64_t sat = 0;
  for (const auto& m : r.modules) sat += m.saturated;
  if (sat) o << fmt::format("  {} weight elements saturated at +-448\n", sat);
  for (const auto& w : r.warnings) o << "  warning: " << w << "\n";
  for (const auto& c : r.checks) o << fmt::format("  check {}: {}\n", c.target, formats::verdict_name(c.verdict));
  o << fmt::format("\n  {} tensors, {:.1f} MB -> {} tensors, {:.1f} MB in {}\n", r.tensors_in, r.bytes_in / 1e6, r.tensors_out,
                   r.bytes_out / 1e6, r.out.string());
  o << fmt::format("  time: prepare {:.2f}s, quantize+write {:.2f}s, check {:.2f}s, commit {:.2f}s\n", r.seconds_prepare,
                   r.seconds_write, r.seconds_check, r.seconds_commit);
  return o.str();
}

}  // namespace vlq::quant
