// `vlq inspect` library: summary of a Qwen2.5-VL checkpoint from its JSON files and safetensors headers
// (components, dtypes, naming generation, quantization format, scale tensors, anomalies).
#include "vlq/formats/checkpoint_summary.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <regex>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "vlq/core/error.h"
#include "vlq/core/numerics.h"
#include "vlq/formats/names.h"
#include "vlq/formats/patterns.h"
#include "vlq/formats/quant_layout.h"
#include "vlq/io/json.h"
#include "vlq/io/safetensors.h"

namespace vlq::formats {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

namespace {

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

std::string shape_class(const TensorMeta& t) {
  const auto& s = t.shape;
  if (s.empty()) return "scalar";
  if (t.numel() == 1) return "[1]";
  if (s.size() == 1 || (s.size() == 2 && s[1] == 1)) return "per-channel";
  if (s.size() == 2) return "block";
  return "other";
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string r;
  for (std::size_t i = 0; i < v.size(); ++i) r += (i ? std::string(sep) : "") + v[i];
  return r;
}

// Collects anomalies by code.
class Anomalies {
 public:
  explicit Anomalies(std::size_t max_examples) : max_(max_examples) {}
  void add(const std::string& severity, const std::string& code, const std::string& message,
           const std::string& example = "") {
    auto [it, fresh] = by_code_.try_emplace(code);
    Anomaly& a = it->second;
    if (fresh) {
      a.severity = severity;
      a.code = code;
      a.message = message;
    }
    ++a.count;
    if (!example.empty() && a.examples.size() < max_) a.examples.push_back(example);
  }
  std::vector<Anomaly> sorted() const {
    std::vector<Anomaly> v;
    for (auto& [c, a] : by_code_) v.push_back(a);
    auto rank = [](const std::string& s) { return s == "error" ? 0 : s == "warning" ? 1 : 2; };
    std::stable_sort(v.begin(), v.end(), [&](const Anomaly& x, const Anomaly& y) {
      return std::pair(rank(x.severity), x.code) < std::pair(rank(y.severity), y.code);
    });
    return v;
  }

 private:
  std::size_t max_;
  std::map<std::string, Anomaly> by_code_;
};

// ---- quantization configs ------------------------------------------------------------------------

// The declarations come from quant_layout's parser (parse_hf_quant_config / parse_quantization_config),
// the one reader of both files; this only renders them the way `vlq inspect` reports them.

// "float8 tensor static" from a compressed-tensors / ModelOpt argument dict.
std::string describe_args(const std::optional<QuantArgs>& a) {
  if (!a) return "none";
  std::string r = a->type + std::to_string(a->num_bits);
  if (!a->strategy.empty()) r += " " + a->strategy;
  return r + (a->dynamic ? " dynamic" : " static");
}

// The KV-cache algorithm a declaration states: kv_cache_quant_algo, else its kv_cache_scheme.
std::optional<std::string> kv_algo_of(const QuantDeclaration& d) {
  if (d.kv_cache_quant_algo) return d.kv_cache_quant_algo;
  if (d.kv_cache_scheme) return d.kv_cache_scheme->is_fp8() ? std::string("FP8") : describe_args(d.kv_cache_scheme);
  return std::nullopt;
}

// compressed-tensors: the scheme description and the algorithm of the groups ("FP8", "MIXED_PRECISION").
void describe_groups(const QuantDeclaration& d, QuantSummary& q, std::string& algo) {
  std::vector<std::string> parts;
  std::set<std::string> algos;
  for (const auto& g : d.groups) {
    parts.push_back(g.name + " [" + join(g.targets, ",") + "]: weights " + describe_args(g.weights) + ", input " +
                    describe_args(g.input_activations));
    if (g.weights) {
      const QuantArgs& w = *g.weights;
      algos.insert(w.is_fp8() ? "FP8" : (w.type == "int" ? "INT" : w.type) + std::to_string(w.num_bits));
    }
  }
  q.scheme = (d.compression_format.empty() ? "" : "format " + d.compression_format + "; ") + join(parts, "; ");
  algo = algos.size() == 1 ? *algos.begin() : (algos.empty() ? "" : "MIXED_PRECISION");
}

struct ParsedQuant {
  QuantSummary q;
  bool any = false;
  bool hf_present = false, qc_present = false;
  bool qc_modelopt = false;
  std::string qc_method;
  std::string hf_algo, qc_algo;
  std::optional<std::string> hf_kv, qc_kv;
  std::string hf_producer_version, qc_producer_version;
};

ParsedQuant parse_quant(const std::optional<json>& hf, const std::optional<json>& qc) {
  ParsedQuant p;
  QuantSummary& q = p.q;
  if (hf) {
    const QuantDeclaration d = parse_hf_quant_config(*hf, "hf_quant_config.json");
    p.any = p.hf_present = true;
    q.sources.push_back("hf_quant_config.json");
    q.format = "modelopt";
    q.producer_name = d.producer_name;
    q.producer_version = p.hf_producer_version = d.producer_version;
    q.quant_algo = p.hf_algo = d.quant_algo;
    q.kv_cache_quant_algo = p.hf_kv = d.kv_cache_quant_algo;
    q.exclude_modules = d.exclude_modules;
  }
  if (qc) {
    const QuantDeclaration d = parse_quantization_config(*qc, "config.json");
    p.any = p.qc_present = true;
    q.sources.push_back("config.json:quantization_config");
    p.qc_method = d.quant_method;
    p.qc_modelopt = d.format == QuantFormat::kModelOpt;
    p.qc_producer_version = d.producer_version;
    q.ignore = d.ignore;
    p.qc_algo = d.quant_algo;
    p.qc_kv = kv_algo_of(d);
    if (d.format == QuantFormat::kCompressedTensors) describe_groups(d, q, p.qc_algo);
    if (!hf) {
      q.format = d.format == QuantFormat::kModelOpt            ? "modelopt"
                 : d.format == QuantFormat::kCompressedTensors ? "compressed-tensors"
                 : d.quant_method.empty()                      ? "unknown"
                                                               : d.quant_method;
      if (d.format == QuantFormat::kModelOpt) {
        q.producer_name = d.producer_name;
        q.producer_version = d.producer_version;
      }
      q.quant_algo = p.qc_algo;
      q.kv_cache_quant_algo = p.qc_kv;
    }
  }
  return p;
}

bool entry_matches(const std::string& entry, std::string_view module, bool regex_entries) {
  if (regex_entries && entry.starts_with("re:")) {
    try {
      std::regex re(entry.substr(3));
      return std::regex_search(module.begin(), module.end(), re, std::regex_constants::match_continuous);
    } catch (const std::regex_error&) {
      return false;
    }
  }
  if (entry == module) return true;
  return entry.find_first_of("*?[") != std::string::npos && fnmatch_case(entry, module);
}


}  // namespace

// ---- classification -------------------------------------------------------------------------------

std::string_view scale_kind(std::string_view n) noexcept {
  const QuantTensorLeaf* q = quant_tensor_leaf(n);
  return q ? std::string_view(q->leaf) : std::string_view{};
}

std::uint64_t TensorMeta::numel() const {
  std::uint64_t n = 1;
  for (auto d : shape) n *= static_cast<std::uint64_t>(d);
  return n;
}

std::uint64_t CheckpointSummary::count_anomalies(std::string_view severity) const {
  std::uint64_t n = 0;
  for (const auto& a : anomalies)
    if (a.severity == severity) ++n;
  return n;
}

// ---- summary --------------------------------------------------------------------------------------

namespace {

// First pass over the tensors of one summary, then the anomaly audits on what it collected.
class Summarizer {
 public:
  Summarizer(const SummaryInput& in, const InspectOptions& opts)
      : in(in), opts(opts), an(opts.max_examples), cfg(in.files.config ? &*in.files.config : nullptr) {}

  CheckpointSummary run() {
    s.dir = in.dir;
    s.files = in.files;
    s.has_hf_quant_config = in.hf_quant_config.has_value();
    s.shards = in.shards;
    s.sharded = in.sharded;
    index_tensors();
    for (const auto& t : in.tensors) count_tensor(t);
    report_naming();
    audit_quant_configs();
    if (s.quant) {
      audit_kv_declaration();
      audit_exclusions();
      audit_modelopt_scale_layout();
    }
    audit_scales_per_module();
    audit_config_vs_tensors();
    s.anomalies = an.sorted();
    return s;
  }

 private:
  struct KvSeen { bool k = false, v = false; Component c = Component::kOther; };

  const SummaryInput& in;
  const InspectOptions& opts;
  CheckpointSummary s;
  Anomalies an;
  const formats::ModelConfig* cfg;
  std::unordered_map<std::string, const TensorMeta*> by_name;
  std::unordered_set<std::string> has_children;  // every module prefix of a non-quantization tensor
  std::set<NamingGeneration> namings;
  bool any_fp8 = false;
  std::map<std::string, KvSeen> kv_by_attention;
  std::map<std::string, std::uint64_t> kv_spellings;
  std::vector<double> kv_values;
  std::vector<const TensorMeta*> fp8_modules_weights, linear_unquantized;
  ParsedQuant pq;
  bool is_modelopt = false;

  const TensorMeta* weight_of(std::string_view module) const {
    auto it = by_name.find(std::string(module) + ".weight");
    return it == by_name.end() ? nullptr : it->second;
  }

  void index_tensors() {
    for (const auto& t : in.tensors) {
      by_name[t.name] = &t;
      if (scale_kind(t.name).empty()) {
        std::string_view m = module_of(t.name);
        while (!m.empty() && has_children.insert(std::string(m)).second) m = module_of(m);
      }
    }
  }

  // Pass 1: counts by component and dtype, naming generations, FP8 weights.
  void count_tensor(const TensorMeta& t) {
    const Component c = component_of(t.name);
    ComponentSummary& cs = s.components[static_cast<std::size_t>(c)];
    if (auto ng = naming_generation_of(t.name); ng != NamingGeneration::kUnknown) namings.insert(ng);
    if (c == Component::kOther) {
      an.add("warning", "unrecognized_tensor",
             "tensor name outside the Qwen2.5-VL layout (neither model.*, visual.* nor lm_head.*)", t.name);
    }
    const std::string dt(dtype_name(t.dtype));
    const std::string_view kind = scale_kind(t.name);
    if (!kind.empty()) {
      count_scale(t, kind, c, cs, dt);
      return;
    }
    s.weights.add(t.numel(), t.nbytes);
    cs.weights.add(t.numel(), t.nbytes);
    s.weights_by_dtype[dt].add(t.numel(), t.nbytes);
    if (leaf_of(t.name) == "weight") {
      const bool linear = t.shape.size() == 2 && c != Component::kEmbedTokens;
      if (linear) ++cs.linear_modules;
      if (is_fp8(t.dtype)) {
        ++cs.quantized_modules;
        any_fp8 = true;
        fp8_modules_weights.push_back(&t);
      } else if (linear) {
        linear_unquantized.push_back(&t);
      }
    }
  }

  // A scale tensor: its kind, dtype, shape and value; KV scales by attention; scales without an FP8 weight.
  void count_scale(const TensorMeta& t, std::string_view kind, Component c, ComponentSummary& cs,
                   const std::string& dt) {
  s.scales.add(t.numel(), t.nbytes);
  cs.scales.add(t.numel(), t.nbytes);
  s.scales_by_dtype[dt].add(t.numel(), t.nbytes);
  ScaleKindSummary& ks = s.scale_kinds[std::string(kind)];
  ++ks.count;
  ++ks.dtypes[dt];
  ++ks.shapes[shape_class(t)];
  std::optional<double> value;
  if (opts.read_scale_values && in.read_scalar && t.numel() == 1 &&
      (t.dtype == DType::F32 || t.dtype == DType::BF16 || t.dtype == DType::F16)) {
    value = in.read_scalar(t);
  }
  if (value) {
    ++ks.values_read;
    if (std::isfinite(*value)) {
      ks.min = ks.min ? std::min(*ks.min, *value) : *value;
      ks.max = ks.max ? std::max(*ks.max, *value) : *value;
    }
    const bool zero_ok = kind == "k_bias" || kind == "v_bias" || kind.ends_with("zero_point");
    if (!std::isfinite(*value) || (!zero_ok && *value <= 0)) {
      an.add("error", "scale_not_positive",
             "scale is zero, negative, NaN or infinite (dequantization would produce garbage)",
             t.name + " = " + fmt::format("{}", *value));
    }
  }
  if (kind == "_amax") {
    an.add("warning", "quantizer_state_leftover",
           "raw quantizer state (_amax) left in the checkpoint; runtimes do not read it", t.name);
  }
  if (auto kv = parse_kv_scale_key(t.name)) {
    ++cs.kv_scales;
    ++kv_spellings[kv->spelling];
    KvSeen& seen = kv_by_attention[kv->attention];
    seen.c = c;
    if (kv->kind == 'k' || kv->kind == 'b') seen.k = true;
    if (kv->kind == 'v' || kv->kind == 'b') seen.v = true;
    if (value) kv_values.push_back(*value);
    if (c == Component::kVisionTower || c == Component::kVisionMerger) {
      an.add("error", "vision_kv_scale",
             "KV-cache scale in the vision tower: the ViT has no KV cache and no k_proj/v_proj module "
             "(vLLM 0.10.x fails with KeyError 'blocks.N.attn.k_proj.k_scale')",
             t.name);
    } else if (!has_children.count(kv->holder)) {
      an.add("error", "orphan_kv_scale",
             "KV-cache scale under a module that does not exist in the checkpoint", t.name);
    }
  }
  // A weight/input scale needs an FP8 weight next to it.
  if (kind == "weight_scale" || kind == "input_scale" || kind == "weight_scale_inv" ||
      kind == "weight_scale_2") {
    const std::string_view mod = module_of(t.name);
    const TensorMeta* w = weight_of(mod);
    if (!w) {
      an.add("error", "scale_without_weight", std::string(kind.substr(0, 1) == "w" ? "weight" : "input") +
             " scale for a module that has no weight tensor", t.name);
    } else if (is_float(w->dtype) && !is_fp8(w->dtype)) {
      an.add("error", "scale_without_fp8_weight",
             "scale next to a high-precision (" + std::string(dtype_name(w->dtype)) +
                 ") weight: the module is not quantized but a loader will treat it as FP8",
             t.name);
    }
  }
  }

  void report_naming() {
  const NamingGeneration naming = namings.size() == 1 ? *namings.begin()
                                  : namings.empty()   ? NamingGeneration::kUnknown
                                                      : NamingGeneration::kMixed;
  s.naming = std::string(naming_generation_id(naming));
  if (naming == NamingGeneration::kMixed) {
    std::string ex_legacy, ex_new;
    for (const auto& t : in.tensors) {
      auto ng = naming_generation_of(t.name);
      if (ng == NamingGeneration::kLegacy && ex_legacy.empty()) ex_legacy = t.name;
      if (ng == NamingGeneration::kTransformers452 && ex_new.empty()) ex_new = t.name;
    }
    an.add("error", "mixed_naming",
           "legacy (model.*, visual.*) and transformers >= 4.52 (model.language_model.*, model.visual.*) names "
           "in one checkpoint; loaders map one generation only",
           ex_legacy);
    an.add("error", "mixed_naming", "", ex_new);
  }
  }

  // The declared quantization: both config files against each other and against the FP8 weights.
  void audit_quant_configs() {
  std::optional<json> qc = cfg ? cfg->quantization_config : std::nullopt;
  pq = parse_quant(in.hf_quant_config, qc);
  if (pq.any || any_fp8) {
    s.quant = pq.q;
    if (!pq.any) s.quant->format = "unknown";
    s.quant->kv_spellings = kv_spellings;
  }
  is_modelopt = s.quant && s.quant->format == "modelopt";
  if (any_fp8 && !pq.any) {
    an.add("error", "quant_config_missing",
           "FP8 weights but neither hf_quant_config.json nor a quantization_config in config.json; runtimes "
           "will load the FP8 bytes as if they were unquantized",
           fp8_modules_weights.front()->name);
  }
  if (pq.any && !any_fp8 && (s.quant->quant_algo.find("FP8") != std::string::npos)) {
    an.add("warning", "no_fp8_weights", "the quantization config declares FP8 but no weight is FP8",
           s.quant->sources.front());
  }
  if (pq.hf_present && pq.qc_present) {
    auto disagree = [&](const std::string& what) {
      an.add("error", "quant_configs_disagree",
             "hf_quant_config.json and config.json quantization_config disagree (vLLM 0.10 reads the first, "
             "later versions and transformers the second)",
             what);
    };
    if (!pq.qc_modelopt)
      disagree("format: hf_quant_config.json is ModelOpt, config.json quant_method is \"" + pq.qc_method + "\"");
    if (!pq.hf_algo.empty() && !pq.qc_algo.empty() && pq.hf_algo != pq.qc_algo)
      disagree("quant_algo: " + pq.hf_algo + " vs " + pq.qc_algo);
    if (pq.qc_modelopt && pq.hf_kv != pq.qc_kv)
      disagree("kv cache: kv_cache_quant_algo " + pq.hf_kv.value_or("null") + " vs kv_cache_scheme " +
               pq.qc_kv.value_or("null"));
    const auto& ex = s.quant->exclude_modules;
    const auto& ig = s.quant->ignore;
    if (ex.has_value() != ig.has_value() ||
        (ex && std::set<std::string>(ex->begin(), ex->end()) != std::set<std::string>(ig->begin(), ig->end()))) {
      disagree("exclude_modules [" + (ex ? join(*ex, ", ") : "absent") + "] vs ignore [" +
               (ig ? join(*ig, ", ") : "absent") + "]");
    }
    if (!pq.hf_producer_version.empty() && !pq.qc_producer_version.empty() &&
        pq.hf_producer_version != pq.qc_producer_version)
      disagree("producer.version: " + pq.hf_producer_version + " vs " + pq.qc_producer_version);
  } else if (pq.hf_present && !pq.qc_present) {
    an.add("info", "modelopt_hf_quant_config_only",
           "ModelOpt layout without config.json quantization_config (ModelOpt < 0.31); transformers and newer "
           "runtimes that read config.json will not see the quantization",
           "hf_quant_config.json");
  } else if (!pq.hf_present && pq.qc_present && pq.qc_modelopt) {
    an.add("warning", "modelopt_config_json_only",
           "ModelOpt quantization_config in config.json but no hf_quant_config.json; vLLM 0.10.x detects "
           "ModelOpt through hf_quant_config.json",
           "config.json");
  }
  }

  void audit_kv_declaration() {
  const bool kv_declared = s.quant->kv_cache_quant_algo.has_value();
  if (!kv_by_attention.empty() && !kv_declared) {
    an.add("warning", "kv_scales_without_kv_config",
           "KV-cache scales present but the config declares no KV-cache quantization", kv_by_attention.begin()->first);
  }
  if (kv_declared && kv_by_attention.empty()) {
    an.add("info", "kv_config_without_kv_scales",
           "FP8 KV cache declared but no k/v scales stored (runtimes use 1.0; ModelOpt >= 0.43 fp8_cast does this)",
           "kv_cache_quant_algo");
  }
  }

  // Exclusion lists against the tensors.
  void audit_exclusions() {
  const bool ct = s.quant->format == "compressed-tensors";
  const std::optional<std::vector<std::string>>& list =
      s.quant->exclude_modules ? s.quant->exclude_modules : s.quant->ignore;
  const std::string list_name = s.quant->exclude_modules ? "exclude_modules" : "ignore";
  if (list && any_fp8) {
    std::vector<bool> used(list->size(), false);
    auto match = [&](std::string_view module) {
      bool hit = false;
      for (std::size_t i = 0; i < list->size(); ++i)
        if (entry_matches((*list)[i], module, ct)) { used[i] = true; hit = true; }
      return hit;
    };
    for (const TensorMeta* w : fp8_modules_weights) {
      if (match(module_of(w->name))) {
        an.add("error", "excluded_but_quantized",
               "module listed in " + list_name + " but its weight is FP8", std::string(module_of(w->name)));
      }
    }
    for (const TensorMeta* w : linear_unquantized) {
      if (!match(module_of(w->name))) {
        an.add("warning", "unquantized_not_excluded",
               "unquantized Linear not covered by " + list_name +
                   " (a loader that trusts the list builds it as FP8 and finds no scales)",
               std::string(module_of(w->name)));
      }
    }
    // Entries that match no module at all (module names from every tensor).
    std::set<std::string> modules;
    for (const auto& t : in.tensors) modules.insert(std::string(module_of(t.name)));
    for (std::size_t i = 0; i < list->size(); ++i) {
      if (used[i]) continue;
      bool hit = false;
      const std::string& e = (*list)[i];
      for (const auto& m : modules)  // a parent module's name (e.g. `visual`, vLLM 0.10's tower entry) counts
        if (entry_matches(e, m, ct) || (m.size() > e.size() && m.compare(0, e.size(), e) == 0 && m[e.size()] == '.')) {
          hit = true;
          break;
        }
      // "<parent>.qkv_proj" / "<parent>.gate_up_proj" with that parent's shards present: the fused runtime module
      // vlq writes for vLLM 0.10 (check: ignore_names_fused_module), not a stale entry.
      if (!hit)
        for (const auto& sh : qwen2_lm_fusion().shards_of(e))
          if (modules.count(sh)) {
            hit = true;
            break;
          }
      if (!hit) {
        an.add("warning", "exclude_entry_matches_nothing",
               list_name + " entry matches no module of the checkpoint (written for another naming?)",
               (*list)[i]);
      }
    }
  }
  }

  void audit_modelopt_scale_layout() {
  if (is_modelopt && s.quant->quant_algo == "FP8") {
    for (const auto& [kind, ks] : s.scale_kinds) {
      if (kind != "weight_scale" && kind != "input_scale" && kind != "k_scale" && kind != "v_scale") continue;
      for (const auto& [dt, n] : ks.dtypes)
        if (dt != "F32")
          an.add("warning", "scale_dtype_unexpected", "ModelOpt FP8 writes float32 scales", kind + ": " + dt);
      for (const auto& [sh, n] : ks.shapes)
        if (sh != "scalar" && sh != "[1]")
          an.add("warning", "scale_shape_unexpected",
                 "ModelOpt FP8 (per-tensor) writes 0-dim scales", kind + ": " + sh);
    }
  }
  }

  // FP8 weights without their scales, incomplete K/V pairs, KV scales all 1.0.
  void audit_scales_per_module() {
  for (const TensorMeta* w : fp8_modules_weights) {
    const std::string mod(module_of(w->name));
    if (!by_name.count(mod + ".weight_scale") && !by_name.count(mod + ".weight_scale_inv")) {
      an.add("error", "fp8_weight_without_weight_scale",
             "FP8 weight without weight_scale: it cannot be dequantized", w->name);
    }
    if (is_modelopt && s.quant->quant_algo == "FP8" && !by_name.count(mod + ".input_scale")) {
      an.add("warning", "fp8_weight_without_input_scale",
             "FP8 weight without input_scale (ModelOpt FP8 uses static per-tensor activation scales)", w->name);
    }
  }
  for (const auto& [att, seen] : kv_by_attention) {
    if (seen.k != seen.v)
      an.add("warning", "kv_scale_pair_incomplete", "attention module with only one of k_scale / v_scale", att);
  }
  if (!kv_values.empty() &&
      std::all_of(kv_values.begin(), kv_values.end(), [](double v) { return v == 1.0; })) {
    an.add("info", "kv_scales_all_one",
           "every KV-cache scale is exactly 1.0: uncalibrated, or clamped by ModelOpt <= 0.42 (amax/448 to >= 1), "
           "which makes the two indistinguishable; recalibrate with vlq quantize --kv-cache fp8",
           std::to_string(kv_values.size()) + " scales");
  }
  }

  // config.json against the tensors: tied lm_head, layer and block counts, embedding shapes.
  void audit_config_vs_tensors() {
  const TensorMeta* lm_head = weight_of("lm_head");
  if (!cfg) {
    s.lm_head = "unknown";
    an.add("error", "no_config",
           "no config.json: architecture, sizes and tied embeddings are unknown; runtimes cannot load this folder "
           "(vlq check: invalid)",
           "config.json");
  } else {
    const auto& t = cfg->text;
    if (t.tie_word_embeddings) {
      s.lm_head = lm_head ? "tied+stored" : "tied";
      if (lm_head)
        an.add("warning", "tied_lm_head_stored",
               "tie_word_embeddings is true but lm_head.weight is stored too (loaders ignore one of them)",
               "lm_head.weight");
    } else {
      s.lm_head = lm_head ? "separate" : "missing";
      if (!lm_head)
        an.add("error", "lm_head_missing", "tie_word_embeddings is false but there is no lm_head.weight",
               "lm_head.weight");
    }
    auto mismatch = [&](const std::string& what) {
      an.add("error", "config_tensor_mismatch", "config.json and the tensors disagree", what);
    };
    std::set<long> layers, blocks;
    for (const auto& tm : in.tensors) {
      const Component c = component_of(tm.name);
      std::string_view key = c == Component::kLanguageModel ? ".layers." : c == Component::kVisionTower ? ".blocks." : "";
      if (key.empty()) continue;
      auto p = tm.name.find(key);
      if (p == std::string::npos) continue;
      const char* b = tm.name.c_str() + p + key.size();
      char* e = nullptr;
      long idx = std::strtol(b, &e, 10);
      if (e == b || *e != '.') continue;
      (c == Component::kLanguageModel ? layers : blocks).insert(idx);
    }
    if (!layers.empty() && (static_cast<std::int64_t>(layers.size()) != t.num_hidden_layers ||
                            *layers.rbegin() + 1 != t.num_hidden_layers))
      mismatch(fmt::format("num_hidden_layers {} but the tensors have {} decoder layers (max index {})",
                           t.num_hidden_layers, layers.size(), *layers.rbegin()));
    if (!blocks.empty() && (static_cast<std::int64_t>(blocks.size()) != cfg->vision.depth ||
                            *blocks.rbegin() + 1 != cfg->vision.depth))
      mismatch(fmt::format("vision_config.depth {} but the tensors have {} ViT blocks (max index {})",
                           cfg->vision.depth, blocks.size(), *blocks.rbegin()));
    const std::vector<std::int64_t> emb_shape{t.vocab_size, t.hidden_size};
    for (const std::string& want : {std::string(kCanonicalLanguageRoot) + ".embed_tokens.weight",
                                    std::string(kLmHeadRoot) + ".weight"})
      for (const auto& tm : in.tensors)
        if (canonical_name(tm.name) == want && tm.shape != emb_shape)
          mismatch(fmt::format("{} has shape {}, config says [vocab_size {}, hidden_size {}]", tm.name,
                               shape_str(tm.shape), t.vocab_size, t.hidden_size));
  }
  }
};

}  // namespace

CheckpointSummary summarize(const SummaryInput& in, const InspectOptions& opts) { return Summarizer(in, opts).run(); }

CheckpointSummary summarize_checkpoint(const fs::path& dir_or_file, const InspectOptions& opts) {
  std::error_code ec;
  if (!fs::exists(dir_or_file, ec)) {
    throw IoError({dir_or_file.string(), "no such file or directory", "a checkpoint folder or .safetensors file",
                   "nothing", "check the path"});
  }
  const bool is_dir = fs::is_directory(dir_or_file, ec);
  const fs::path dir = is_dir ? dir_or_file : dir_or_file.parent_path().empty() ? fs::path(".") : dir_or_file.parent_path();
  SummaryInput in;
  in.dir = dir_or_file;
  in.files = formats::load_hf_model_files(dir);
  in.hf_quant_config = io::read_json_file_if_present(dir / "hf_quant_config.json");
  io::Checkpoint ck = io::Checkpoint::open(dir_or_file);
  for (const auto& p : ck.shard_paths()) in.shards.push_back(p.filename().string());
  in.sharded = ck.sharded();
  for (const auto& h : ck.shard_headers()) {
    for (const auto& t : h.tensors) {
      in.tensors.push_back(TensorMeta{t.name, t.dtype, t.shape, t.nbytes()});
    }
  }
  std::sort(in.tensors.begin(), in.tensors.end(), [](const TensorMeta& a, const TensorMeta& b) { return a.name < b.name; });
  in.read_scalar = [&ck](const TensorMeta& t) -> std::optional<double> {
    auto bytes = ck.data(t.name);
    if (t.dtype == DType::F32 && bytes.size() == 4) {
      float f;
      std::memcpy(&f, bytes.data(), 4);
      return f;
    }
    if ((t.dtype == DType::BF16 || t.dtype == DType::F16) && bytes.size() == 2) {
      std::uint16_t u;
      std::memcpy(&u, bytes.data(), 2);
      return t.dtype == DType::BF16 ? static_cast<double>(bf16_to_f32(u)) : static_cast<double>(f16_to_f32(u));
    }
    return std::nullopt;
  };
  return summarize(in, opts);
}

// ---- JSON -----------------------------------------------------------------------------------------

namespace {
ordered_json counts_json(const Counts& c) {
  return ordered_json{{"tensors", c.tensors}, {"params", c.params}, {"bytes", c.bytes}};
}
template <class T>
ordered_json opt_json(const std::optional<T>& v) {
  return v ? ordered_json(*v) : ordered_json(nullptr);
}
ordered_json str_or_null(const std::string& v) { return v.empty() ? ordered_json(nullptr) : ordered_json(v); }

// "files": which of the checkpoint's JSON / tokenizer files are present, the shards, the chat template.
ordered_json files_json(const CheckpointSummary& s) {
  const auto& f = s.files;
  const auto& tk = f.tokenizer;
  ordered_json j = {
      {"config", f.config.has_value()},
      {"generation_config", f.generation.has_value()},
      {"preprocessor_config", str_or_null(f.preprocessor_file)},
      {"hf_quant_config", s.has_hf_quant_config},
      {"safetensors_index", s.sharded},
      {"shards", s.shards},
      {"tokenizer",
       {{"tokenizer.json", !tk.tokenizer_json.empty()},
        {"tokenizer_config.json", !tk.tokenizer_config_json.empty()},
        {"vocab.json", !tk.vocab_json.empty()},
        {"merges.txt", !tk.merges_txt.empty()},
        {"special_tokens_map.json", !tk.special_tokens_map_json.empty()},
        {"added_tokens.json", !tk.added_tokens_json.empty()},
        {"chat_template.jinja", !tk.chat_template_jinja.empty()},
        {"chat_template.json", !tk.chat_template_json.empty()}}},
      {"chat_template", str_or_null(tk.chat_template_source)},
  };
  return j;
}

// "model": config.json as read (text and vision towers, token ids, the keys that were defaulted).
ordered_json model_json(const ModelConfig& c) {
  const auto& t = c.text;
  const auto& v = c.vision;
  const auto& k = c.tokens;
  ordered_json j = {
      {"architectures", c.architectures},
      {"model_type", c.model_type},
      {"config_form", formats::config_form_name(c.form)},
      {"transformers_version", str_or_null(c.transformers_version)},
      {"dtype", str_or_null(t.dtype)},
      {"text",
       {{"hidden_size", t.hidden_size}, {"intermediate_size", t.intermediate_size},
        {"num_hidden_layers", t.num_hidden_layers}, {"num_attention_heads", t.num_attention_heads},
        {"num_key_value_heads", t.num_key_value_heads}, {"head_dim", t.head_dim}, {"vocab_size", t.vocab_size},
        {"max_position_embeddings", t.max_position_embeddings}, {"rms_norm_eps", t.rms_norm_eps},
        {"rope_theta", t.rope_theta}, {"mrope_section", t.mrope_section},
        {"tie_word_embeddings", t.tie_word_embeddings}, {"qkv_bias", t.qkv_bias},
        {"hidden_act", t.hidden_act}, {"use_sliding_window", t.use_sliding_window}}},
      {"vision",
       {{"depth", v.depth}, {"hidden_size", v.hidden_size}, {"intermediate_size", v.intermediate_size},
        {"num_heads", v.num_heads}, {"patch_size", v.patch_size}, {"spatial_merge_size", v.spatial_merge_size},
        {"temporal_patch_size", v.temporal_patch_size}, {"window_size", v.window_size},
        {"fullatt_block_indexes", v.fullatt_block_indexes}, {"out_hidden_size", v.out_hidden_size},
        {"in_chans", v.in_chans}, {"tokens_per_second", v.tokens_per_second}}},
      {"token_ids",
       {{"image_token_id", k.image_token_id}, {"video_token_id", k.video_token_id},
        {"vision_start_token_id", k.vision_start_token_id}, {"vision_end_token_id", k.vision_end_token_id},
        {"vision_token_id", opt_json(k.vision_token_id)}, {"bos_token_id", opt_json(k.bos_token_id)},
        {"eos_token_ids", k.eos_token_ids}, {"pad_token_id", opt_json(k.pad_token_id)}}},
      {"defaulted", c.defaulted},
  };
  return j;
}

// "generation": generation_config.json as read.
ordered_json generation_json(const GenerationConfig& g) {
  ordered_json j = {{"bos_token_id", opt_json(g.bos_token_id)}, {"eos_token_ids", g.eos_token_ids},
                    {"pad_token_id", opt_json(g.pad_token_id)}, {"do_sample", opt_json(g.do_sample)},
                    {"temperature", opt_json(g.temperature)}, {"top_p", opt_json(g.top_p)},
                    {"top_k", opt_json(g.top_k)}, {"repetition_penalty", opt_json(g.repetition_penalty)},
                    {"max_new_tokens", opt_json(g.max_new_tokens)}, {"max_length", opt_json(g.max_length)}};
  return j;
}

// "preprocessor": the image processor settings as read.
ordered_json preprocessor_json(const PreprocessorConfig& p) {
  ordered_json j = {{"min_pixels", p.min_pixels}, {"max_pixels", p.max_pixels},
                    {"pixels_source", p.pixels_source}, {"patch_size", p.patch_size},
                    {"temporal_patch_size", p.temporal_patch_size}, {"merge_size", p.merge_size},
                    {"image_mean", p.image_mean}, {"image_std", p.image_std},
                    {"rescale_factor", p.rescale_factor}, {"resample", p.resample},
                    {"defaulted", p.defaulted}};
  return j;
}

// "totals": weights and scales over the whole checkpoint.
ordered_json totals_json(const CheckpointSummary& s) {
  ordered_json j = {{"tensors", s.weights.tensors + s.scales.tensors},
                    {"params", s.weights.params},
                    {"bytes", s.weights.bytes},
                    {"weight_tensors", s.weights.tensors},
                    {"scale_tensors", s.scales.tensors},
                    {"scale_params", s.scales.params},
                    {"scale_bytes", s.scales.bytes}};
  return j;
}

// "components": per component (every one, in kAllComponents order) weights, scales and module counts.
ordered_json components_json(const CheckpointSummary& s) {
  ordered_json comps = ordered_json::object();
  for (Component c : kAllComponents) {
    const auto& cs = s.components[static_cast<std::size_t>(c)];
    comps[std::string(component_name(c))] = {
        {"tensors", cs.weights.tensors}, {"params", cs.weights.params}, {"bytes", cs.weights.bytes},
        {"scale_tensors", cs.scales.tensors}, {"scale_params", cs.scales.params}, {"scale_bytes", cs.scales.bytes},
        {"linear_modules", cs.linear_modules}, {"quantized_modules", cs.quantized_modules},
        {"kv_scales", cs.kv_scales}};
  }
  return comps;
}

// dtype name -> counts ("by_dtype", "scales.by_dtype").
ordered_json dtype_counts_json(const std::map<std::string, Counts>& by_dtype) {
  ordered_json j = ordered_json::object();
  for (const auto& [d, c] : by_dtype) j[d] = counts_json(c);
  return j;
}

// "scales": quantization tensors in total, by dtype and by kind (with the values read).
ordered_json scales_json(const CheckpointSummary& s) {
  ordered_json sk = ordered_json::object();
  for (const auto& [k, ks] : s.scale_kinds) {
    sk[k] = {{"count", ks.count}, {"dtypes", ks.dtypes}, {"shapes", ks.shapes}, {"values_read", ks.values_read},
             {"min", opt_json(ks.min)}, {"max", opt_json(ks.max)}};
  }
  ordered_json j = {{"tensors", s.scales.tensors}, {"params", s.scales.params}, {"bytes", s.scales.bytes},
                    {"by_dtype", dtype_counts_json(s.scales_by_dtype)}, {"by_kind", sk}};
  return j;
}

// "quantization": the declared format plus the quantized modules and KV scales found per component.
ordered_json quantization_json(const CheckpointSummary& s, const QuantSummary& q) {
  ordered_json qm = ordered_json::object();
  ordered_json kvc = ordered_json::object();
  std::uint64_t total = 0, kv_total = 0;
  for (Component c : kAllComponents) {
    const auto& cs = s.components[static_cast<std::size_t>(c)];
    qm[std::string(component_name(c))] = cs.quantized_modules;
    kvc[std::string(component_name(c))] = cs.kv_scales;
    total += cs.quantized_modules;
    kv_total += cs.kv_scales;
  }
  qm["total"] = total;
  ordered_json j = {
      {"format", q.format},
      {"sources", q.sources},
      {"quant_algo", str_or_null(q.quant_algo)},
      {"kv_cache_quant_algo", opt_json(q.kv_cache_quant_algo)},
      {"producer", {{"name", str_or_null(q.producer_name)}, {"version", str_or_null(q.producer_version)}}},
      {"exclude_modules", opt_json(q.exclude_modules)},
      {"ignore", opt_json(q.ignore)},
      {"scheme", str_or_null(q.scheme)},
      {"quantized_modules", qm},
      {"kv_scales", {{"total", kv_total}, {"spellings", q.kv_spellings}, {"by_component", kvc}}},
  };
  return j;
}

// "anomalies": the list, in the summary's order.
ordered_json anomalies_json(const CheckpointSummary& s) {
  ordered_json an = ordered_json::array();
  for (const auto& a : s.anomalies) {
    an.push_back({{"severity", a.severity}, {"code", a.code}, {"message", a.message}, {"count", a.count},
                  {"examples", a.examples}});
  }
  return an;
}
}  // namespace

ordered_json summary_to_json(const CheckpointSummary& s) {
  const auto& f = s.files;
  ordered_json j;
  j["schema"] = "vlq.inspect/1";
  j["path"] = s.dir.string();
  j["files"] = files_json(s);
  j["model"] = f.config ? model_json(*f.config) : ordered_json(nullptr);
  j["generation"] = f.generation ? generation_json(*f.generation) : ordered_json(nullptr);
  j["preprocessor"] = f.preprocessor ? preprocessor_json(*f.preprocessor) : ordered_json(nullptr);
  j["naming"] = s.naming;
  j["totals"] = totals_json(s);
  j["components"] = components_json(s);
  j["by_dtype"] = dtype_counts_json(s.weights_by_dtype);
  j["scales"] = scales_json(s);
  j["lm_head"] = s.lm_head;
  j["tie_word_embeddings"] = f.config ? ordered_json(f.config->text.tie_word_embeddings) : ordered_json(nullptr);
  j["quantization"] = s.quant ? quantization_json(s, *s.quant) : ordered_json(nullptr);
  j["anomalies"] = anomalies_json(s);
  j["anomaly_counts"] = {{"error", s.count_anomalies("error")},
                         {"warning", s.count_anomalies("warning")},
                         {"info", s.count_anomalies("info")}};
  return j;
}

// ---- table ----------------------------------------------------------------------------------------

namespace {
std::string human_bytes(std::uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) { v /= 1024; ++u; }
  return u == 0 ? fmt::format("{} B", b) : fmt::format("{:.2f} {}", v, units[u]);
}
std::string group3(std::uint64_t n) {
  std::string s = std::to_string(n), r;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) r += ',';
    r += s[i];
  }
  return r;
}
std::string ints(const std::vector<std::int64_t>& v) {
  std::string r = "[";
  for (std::size_t i = 0; i < v.size(); ++i) r += (i ? "," : "") + std::to_string(v[i]);
  return r + "]";
}

// The table under construction, one line at a time.
struct TableOut {
  std::string o;
  void line(const std::string& l) { o += l + "\n"; }
};

// Model / Text / Vision / Token ids / Defaulted lines, from config.json.
void table_model(TableOut& out, const HfModelFiles& f) {
  if (!f.config) {
    out.line("Model        (no config.json)");
    return;
  }
  const auto& c = *f.config;
  const auto& t = c.text;
  const auto& v = c.vision;
  out.line(fmt::format("Model        {} ({}), config {}{}, dtype {}", join(c.architectures, ","), c.model_type,
                       formats::config_form_name(c.form),
                       c.transformers_version.empty() ? "" : " (transformers " + c.transformers_version + ")",
                       t.dtype.empty() ? "?" : t.dtype));
  out.line(fmt::format("Text         hidden {}, intermediate {}, layers {}, heads {} (kv {}, head_dim {}), vocab {}, "
                       "rope_theta {:g}, mrope {}, rms_norm_eps {:g}, tie_word_embeddings {}",
                       t.hidden_size, t.intermediate_size, t.num_hidden_layers, t.num_attention_heads,
                       t.num_key_value_heads, t.head_dim, t.vocab_size, t.rope_theta, ints(t.mrope_section),
                       t.rms_norm_eps, t.tie_word_embeddings));
  out.line(fmt::format("Vision       depth {}, hidden {}, intermediate {}, heads {}, patch {}, merge {}, temporal {}, "
                       "window {}, full-attention blocks {}, out_hidden {}",
                       v.depth, v.hidden_size, v.intermediate_size, v.num_heads, v.patch_size, v.spatial_merge_size,
                       v.temporal_patch_size, v.window_size, ints(v.fullatt_block_indexes), v.out_hidden_size));
  const auto& k = c.tokens;
  out.line(fmt::format("Token ids    image {}, video {}, vision_start {}, vision_end {}, bos {}, eos {}",
                       k.image_token_id, k.video_token_id, k.vision_start_token_id, k.vision_end_token_id,
                       k.bos_token_id ? std::to_string(*k.bos_token_id) : "-", ints(k.eos_token_ids)));
  if (!c.defaulted.empty()) out.line("Defaulted    " + join(c.defaulted, ", ") + " (absent from config.json)");
}

// Files / Generation / Images / Naming / lm_head lines.
void table_files(TableOut& out, const CheckpointSummary& s) {
  const auto& f = s.files;
  std::vector<std::string> files;
  files.push_back(s.sharded ? fmt::format("{} shards + index", s.shards.size()) : join(s.shards, ", "));
  if (f.config) files.push_back("config.json");
  if (s.has_hf_quant_config) files.push_back("hf_quant_config.json");
  if (f.generation) files.push_back("generation_config.json");
  if (!f.preprocessor_file.empty()) files.push_back(f.preprocessor_file);
  if (!f.tokenizer.tokenizer_json.empty()) files.push_back("tokenizer.json");
  if (!f.tokenizer.vocab_json.empty()) files.push_back("vocab.json+merges.txt");
  if (!f.tokenizer.chat_template_source.empty()) files.push_back("chat template: " + f.tokenizer.chat_template_source);
  out.line("Files        " + join(files, ", "));
  if (f.generation) {
    const auto& g = *f.generation;
    std::vector<std::string> p;
    if (g.do_sample) p.push_back(fmt::format("do_sample {}", *g.do_sample));
    if (g.temperature) p.push_back(fmt::format("temperature {:g}", *g.temperature));
    if (g.top_p) p.push_back(fmt::format("top_p {:g}", *g.top_p));
    if (g.top_k) p.push_back(fmt::format("top_k {}", *g.top_k));
    if (g.repetition_penalty) p.push_back(fmt::format("repetition_penalty {:g}", *g.repetition_penalty));
    if (!g.eos_token_ids.empty()) p.push_back("eos " + ints(g.eos_token_ids));
    out.line("Generation   " + join(p, ", "));
  }
  if (f.preprocessor) {
    const auto& p = *f.preprocessor;
    out.line(fmt::format("Images       pixels [{}, {}] (from {}), patch {}, merge {}, temporal {}", p.min_pixels,
                         p.max_pixels, p.pixels_source, p.patch_size, p.merge_size, p.temporal_patch_size));
  }
  std::string naming = s.naming == "legacy"    ? "legacy (model.*, visual.*)"
                       : s.naming == "hf-4.52" ? "transformers >= 4.52 (model.language_model.*, model.visual.*)"
                                               : s.naming;
  out.line("Naming       " + naming);
  out.line("lm_head      " + s.lm_head);
}

// The per-component table (blank line first), then the per-dtype weight and scale lines.
void table_components(TableOut& out, const CheckpointSummary& s) {
  constexpr const char* kRow = "{:<16}{:>9}{:>16}{:>13}{:>10}{:>12}{:>8}";
  out.line("");
  out.line(fmt::format(kRow, "component", "tensors", "params", "bytes", "linears", "quantized", "scales"));
  for (Component c : kAllComponents) {
    const auto& cs = s.components[static_cast<std::size_t>(c)];
    if (c == Component::kOther && cs.weights.tensors == 0 && cs.scales.tensors == 0) continue;
    out.line(fmt::format(kRow, component_name(c), cs.weights.tensors, group3(cs.weights.params),
                         human_bytes(cs.weights.bytes), cs.linear_modules, cs.quantized_modules, cs.scales.tensors));
  }
  out.line(fmt::format(kRow, "total", s.weights.tensors, group3(s.weights.params), human_bytes(s.weights.bytes), "",
                       "", s.scales.tensors));
  out.line("");
  for (const auto& [d, c] : s.weights_by_dtype)
    out.line(fmt::format("dtype {:<10}{:>9} tensors {:>16} params {:>13}", d, c.tensors, group3(c.params),
                         human_bytes(c.bytes)));
  for (const auto& [d, c] : s.scales_by_dtype)
    out.line(fmt::format("scales {:<9}{:>9} tensors {:>16} params {:>13}", d, c.tensors, group3(c.params),
                         human_bytes(c.bytes)));
}

// The Quantization block (blank line first): declaration, FP8 modules, scale kinds, KV scale spellings.
void table_quantization(TableOut& out, const CheckpointSummary& s) {
  out.line("");
  if (!s.quant) {
    out.line("Quantization none (no quantization config, no FP8 tensor)");
    return;
  }
  const auto& q = *s.quant;
  out.line(fmt::format("Quantization {} (from {}), quant_algo {}, kv_cache {}{}", q.format,
                       q.sources.empty() ? "tensors only" : join(q.sources, " + "),
                       q.quant_algo.empty() ? "?" : q.quant_algo, q.kv_cache_quant_algo.value_or("none"),
                       q.producer_name.empty() ? "" : ", producer " + q.producer_name + " " + q.producer_version));
  if (q.exclude_modules) out.line("  exclude_modules  [" + join(*q.exclude_modules, ", ") + "]");
  if (q.ignore) out.line("  ignore           [" + join(*q.ignore, ", ") + "]");
  if (!q.scheme.empty()) out.line("  scheme           " + q.scheme);
  std::vector<std::string> per;
  for (Component c : kAllComponents) {
    const auto& cs = s.components[static_cast<std::size_t>(c)];
    if (cs.linear_modules || cs.quantized_modules)
      per.push_back(fmt::format("{} {}/{}", component_name(c), cs.quantized_modules, cs.linear_modules));
  }
  out.line("  FP8 modules      " + join(per, ", ") + " (quantized/linear)");
  for (const auto& [k, ks] : s.scale_kinds) {
    std::vector<std::string> d;
    for (const auto& [dt, n] : ks.dtypes) d.push_back(fmt::format("{} {}", dt, n));
    for (const auto& [sh, n] : ks.shapes) d.push_back(fmt::format("{} {}", sh, n));
    std::string range = ks.min ? fmt::format(", values [{:.6g}, {:.6g}]", *ks.min, *ks.max) : "";
    out.line(fmt::format("  {:<17}{:>5} ({}){}", k, ks.count, join(d, ", "), range));
  }
  if (!q.kv_spellings.empty()) {
    std::vector<std::string> sp;
    for (const auto& [k, n] : q.kv_spellings) sp.push_back(fmt::format("{} x{}", k, n));
    out.line("  KV scale keys    " + join(sp, ", "));
  }
}

// The Anomalies block (blank line first): counts by severity, then each with its examples.
void table_anomalies(TableOut& out, const CheckpointSummary& s) {
  out.line("");
  if (s.anomalies.empty()) {
    out.line("Anomalies    none");
    return;
  }
  out.line(fmt::format("Anomalies    {} error(s), {} warning(s), {} info", s.count_anomalies("error"),
                       s.count_anomalies("warning"), s.count_anomalies("info")));
  for (const auto& a : s.anomalies) {
    out.line(fmt::format("  [{}] {} (x{}): {}", a.severity, a.code, a.count, a.message));
    for (const auto& e : a.examples) out.line("      " + e);
    if (a.count > a.examples.size() && !a.examples.empty())
      out.line(fmt::format("      ... and {} more", a.count - a.examples.size()));
  }
}
}  // namespace

std::string summary_to_table(const CheckpointSummary& s) {
  TableOut out;
  out.line("Checkpoint   " + s.dir.string());
  table_model(out, s.files);
  table_files(out, s);
  table_components(out, s);
  table_quantization(out, s);
  table_anomalies(out, s);
  return out.o;
}

}  // namespace vlq::formats
