// The FP8 layout model: declared configs, per-Linear schemes from tensors, disagreements; see
// include/vlq/formats/quant_layout.h.
#include "vlq/formats/quant_layout.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "vlq/core/error.h"
#include "vlq/core/numerics.h"
#include "vlq/formats/patterns.h"
#include "vlq/io/json.h"
#include "vlq/io/safetensors.h"

namespace vlq::formats {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

bool is_float_scale_dtype(DType t) {
  return t == DType::F32 || t == DType::BF16 || t == DType::F16 || t == DType::F64;
}

}  // namespace

// ---- CheckpointView ------------------------------------------------------------------------------

CheckpointView CheckpointView::open(const fs::path& dir) {
  CheckpointView v;
  v.dir_ = dir;
  auto ck = std::make_shared<io::Checkpoint>(io::Checkpoint::open(dir));
  for (const auto& p : ck->shard_paths()) v.shard_files_.push_back(p.filename().string());
  for (const auto& name : ck->names()) {
    io::TensorRef r = ck->find(name);
    v.tensors_.push_back({name, r.info->dtype, r.info->shape, r.info->nbytes()});
    v.shards_.push_back(r.shard);
  }
  fs::path folder = fs::is_directory(dir) ? dir : dir.parent_path();
  // Any top-level value: parse_declared_config reports a non-object as a ConfigError naming the file.
  v.config_ = io::read_json_file_if_present(folder / "config.json", /*require_object=*/false);
  v.hf_quant_config_ = io::read_json_file_if_present(folder / "hf_quant_config.json", /*require_object=*/false);
  v.ckpt_ = std::move(ck);
  return v;
}

CheckpointView CheckpointView::from_memory(std::vector<TensorMeta> tensors, std::optional<json> config,
                                           std::optional<json> hf_quant_config,
                                           std::map<std::string, double> scalars) {
  CheckpointView v;
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  v.shard_files_.push_back(io::kSingleCheckpointFile);
  v.tensors_ = std::move(tensors);
  v.shards_.assign(v.tensors_.size(), 0);
  v.config_ = std::move(config);
  v.hf_quant_config_ = std::move(hf_quant_config);
  v.scalars_ = std::move(scalars);
  return v;
}

const TensorMeta* CheckpointView::find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorMeta& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

std::size_t CheckpointView::shard_of(const TensorMeta& t) const {
  return shards_[static_cast<std::size_t>(&t - tensors_.data())];
}

std::vector<std::string> CheckpointView::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& t : tensors_) out.push_back(t.name);
  return out;
}

std::optional<double> CheckpointView::scalar(std::string_view name) const {
  const TensorMeta* t = find(name);
  if (!t) return std::nullopt;
  std::int64_t n = 1;
  for (auto d : t->shape) n *= d;
  if (n != 1) return std::nullopt;
  if (!ckpt_) {
    auto it = scalars_.find(std::string(name));
    if (it == scalars_.end()) return std::nullopt;
    return it->second;
  }
  auto bytes = ckpt_->data(name);
  switch (t->dtype) {
    case DType::F32: {
      float f;
      std::memcpy(&f, bytes.data(), 4);
      return f;
    }
    case DType::F64: {
      double d;
      std::memcpy(&d, bytes.data(), 8);
      return d;
    }
    case DType::BF16: {
      std::uint16_t b;
      std::memcpy(&b, bytes.data(), 2);
      return bf16_to_f32(b);
    }
    case DType::F16: {
      std::uint16_t h;
      std::memcpy(&h, bytes.data(), 2);
      return f16_to_f32(h);
    }
    default: return std::nullopt;
  }
}

std::vector<const TensorMeta*> CheckpointView::iteration_order() const {
  std::vector<std::size_t> shard_order(shard_files_.size());
  for (std::size_t i = 0; i < shard_order.size(); ++i) shard_order[i] = i;
  std::sort(shard_order.begin(), shard_order.end(),
            [&](std::size_t a, std::size_t b) { return shard_files_[a] < shard_files_[b]; });
  std::vector<std::size_t> rank(shard_files_.size());
  for (std::size_t i = 0; i < shard_order.size(); ++i) rank[shard_order[i]] = i;
  std::vector<const TensorMeta*> out;
  for (const auto& t : tensors_) out.push_back(&t);
  std::stable_sort(out.begin(), out.end(), [&](const TensorMeta* a, const TensorMeta* b) {
    return rank[shard_of(*a)] < rank[shard_of(*b)];  // names are already sorted
  });
  return out;
}

// ---- declared configs ----------------------------------------------------------------------------

std::string_view quant_format_name(QuantFormat f) noexcept {
  switch (f) {
    case QuantFormat::kNone: return "none";
    case QuantFormat::kModelOpt: return "modelopt";
    case QuantFormat::kCompressedTensors: return "compressed-tensors";
    case QuantFormat::kOther: return "other";
  }
  return "?";
}

namespace {

[[noreturn]] void bad_key(const std::string& file, const std::string& key, const std::string& expected,
                          const json& found) {
  throw ConfigError({file + ": " + key, "unexpected value in the quantization config", expected,
                     found.dump().substr(0, 120), "repair the quantization config or re-export the checkpoint"});
}

std::vector<std::string> string_list(const json& j, const std::string& file, const std::string& key) {
  if (j.is_null()) return {};
  if (!j.is_array()) bad_key(file, key, "a list of strings", j);
  std::vector<std::string> out;
  for (const auto& e : j) {
    if (!e.is_string()) bad_key(file, key, "a list of strings", j);
    out.push_back(e.get<std::string>());
  }
  return out;
}

std::optional<QuantArgs> parse_args(const json& j, const std::string& file, const std::string& key) {
  if (j.is_null()) return std::nullopt;
  if (!j.is_object()) bad_key(file, key, "an object or null", j);
  QuantArgs a;
  if (auto it = j.find("num_bits"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer()) bad_key(file, key + ".num_bits", "an integer", *it);
    a.num_bits = it->get<int>();
  }
  if (auto it = j.find("type"); it != j.end() && it->is_string()) a.type = it->get<std::string>();
  if (auto it = j.find("strategy"); it != j.end() && it->is_string()) a.strategy = it->get<std::string>();
  if (auto it = j.find("dynamic"); it != j.end()) {
    if (it->is_boolean()) a.dynamic = it->get<bool>();
    else if (it->is_string()) a.dynamic = it->get<std::string>() != "false";  // "local" = dynamic
  }
  if (auto it = j.find("symmetric"); it != j.end() && it->is_boolean()) a.symmetric = it->get<bool>();
  if (auto it = j.find("group_size"); it != j.end() && it->is_number_integer()) a.group_size = it->get<std::int64_t>();
  if (auto it = j.find("block_structure"); it != j.end() && !it->is_null()) {
    if (it->is_array()) {
      for (const auto& d : *it)
        if (d.is_number_integer()) a.block_structure.push_back(d.get<std::int64_t>());
    } else if (it->is_string()) {  // older compressed-tensors: "128x128"
      std::string s = it->get<std::string>();
      auto x = s.find('x');
      if (x != std::string::npos) {
        try {
          a.block_structure = {std::stoll(s.substr(0, x)), std::stoll(s.substr(x + 1))};
        } catch (...) {
          bad_key(file, key + ".block_structure", "[bn, bk] or \"BNxBK\"", *it);
        }
      }
    }
    if (a.block_structure.size() != 2) bad_key(file, key + ".block_structure", "[bn, bk]", *it);
  }
  return a;
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

void parse_producer(const json& j, QuantDeclaration& d) {
  if (auto it = j.find("producer"); it != j.end() && it->is_object()) {
    if (auto n = it->find("name"); n != it->end() && n->is_string()) d.producer_name = n->get<std::string>();
    if (auto v = it->find("version"); v != it->end() && v->is_string()) d.producer_version = v->get<std::string>();
  }
}

// quant_algo, kv_cache_quant_algo, exclude_modules of a ModelOpt block (hf_quant_config.json `quantization`,
// or config.json `quantization_config` itself); `path` names the block in errors.
void parse_modelopt_quantization(const json& q, const std::string& file, const std::string& path,
                                 QuantDeclaration& d) {
  if (!q.is_object()) bad_key(file, path, "an object", q);
  if (auto it = q.find("quant_algo"); it != q.end() && it->is_string()) d.quant_algo = upper(it->get<std::string>());
  if (auto it = q.find("kv_cache_quant_algo"); it != q.end() && !it->is_null()) {
    if (!it->is_string()) bad_key(file, path + ".kv_cache_quant_algo", "a string or null", *it);
    d.kv_cache_quant_algo = upper(it->get<std::string>());
  }
  if (auto it = q.find("exclude_modules"); it != q.end()) {
    d.exclude = string_list(*it, file, path + ".exclude_modules");
    if (!it->is_null()) d.exclude_modules = d.exclude;
    d.exclude_key = "exclude_modules";
    d.has_exclude_modules_key = true;
  }
}

// `ignore` of config.json quantization_config; merged into `exclude` when exclude_modules is there too.
void parse_ignore(const json& qc, const std::string& file, const std::string& path, QuantDeclaration& d) {
  auto it = qc.find("ignore");
  if (it == qc.end()) return;
  auto ig = string_list(*it, file, path + ".ignore");
  d.has_ignore_key = true;
  if (!it->is_null()) d.ignore = ig;
  if (!d.has_exclude_modules_key) {
    d.exclude = std::move(ig);
    d.exclude_key = "ignore";
  } else {
    // Both keys: keep the union in `exclude` (what a reader of either key could see).
    for (auto& e : ig)
      if (std::find(d.exclude.begin(), d.exclude.end(), e) == d.exclude.end()) d.exclude.push_back(e);
    d.exclude_key = "exclude_modules+ignore";
  }
}

void parse_config_groups(const json& qc, const std::string& file, const std::string& path, QuantDeclaration& d) {
  auto it = qc.find("config_groups");
  if (it == qc.end() || it->is_null()) return;
  if (!it->is_object()) bad_key(file, path + ".config_groups", "an object of named groups", *it);
  for (const auto& [name, g] : it->items()) {
    const std::string gp = path + ".config_groups." + name;
    if (!g.is_object()) bad_key(file, gp, "an object", g);
    ConfigGroup cg;
    cg.name = name;
    if (auto t = g.find("targets"); t != g.end()) cg.targets = string_list(*t, file, gp + ".targets");
    if (auto w = g.find("weights"); w != g.end()) cg.weights = parse_args(*w, file, gp + ".weights");
    if (auto a = g.find("input_activations"); a != g.end())
      cg.input_activations = parse_args(*a, file, gp + ".input_activations");
    if (auto o = g.find("output_activations"); o != g.end())
      cg.output_activations = parse_args(*o, file, gp + ".output_activations");
    d.groups.push_back(std::move(cg));
  }
}

}  // namespace

bool QuantDeclaration::declares_fp8_kv() const {
  if (kv_cache_quant_algo && *kv_cache_quant_algo == "FP8") return true;
  return kv_cache_scheme && kv_cache_scheme->is_fp8();
}

QuantDeclaration parse_hf_quant_config(const json& j, const std::string& file) {
  QuantDeclaration d;
  d.file = file;
  d.raw = j;
  if (!j.is_object()) bad_key(file, "(root)", "a JSON object", j);
  parse_producer(j, d);
  d.quant_method = d.producer_name;
  d.format = lower(d.producer_name) == "modelopt" ? QuantFormat::kModelOpt : QuantFormat::kOther;
  auto it = j.find("quantization");
  if (it == j.end()) bad_key(file, "quantization", "an object with quant_algo", json(nullptr));
  d.quantization_block = true;
  parse_modelopt_quantization(*it, file, "quantization", d);
  return d;
}

QuantDeclaration parse_quantization_config(const json& qc, const std::string& file) {
  QuantDeclaration d;
  d.file = file;
  d.raw = qc;
  if (!qc.is_object()) bad_key(file, "quantization_config", "a JSON object", qc);
  if (auto it = qc.find("quant_method"); it != qc.end() && it->is_string()) d.quant_method = it->get<std::string>();
  std::string m = lower(d.quant_method);
  parse_producer(qc, d);
  if (m.rfind("modelopt", 0) == 0) d.format = QuantFormat::kModelOpt;
  else if (m == "compressed-tensors" || m == "compressed_tensors") d.format = QuantFormat::kCompressedTensors;
  else d.format = QuantFormat::kOther;
  const std::string P = "quantization_config";
  if (auto it = qc.find("quantization"); it != qc.end() && d.format == QuantFormat::kModelOpt) {
    // hf_quant_config.json contents attached under quantization_config (the ModelOpt <= 0.29 layout).
    d.quantization_block = true;
    parse_modelopt_quantization(*it, file, P + ".quantization", d);
  } else {
    parse_modelopt_quantization(qc, file, P, d);
    parse_ignore(qc, file, P, d);
  }
  // Other methods (e.g. transformers' fbgemm/finegrained FP8) may name the format in "fmt".
  if (auto it = qc.find("fmt"); d.quant_algo.empty() && it != qc.end() && it->is_string())
    d.quant_algo = upper(it->get<std::string>());
  if (auto it = qc.find("format"); it != qc.end() && it->is_string()) d.compression_format = it->get<std::string>();
  if (auto it = qc.find("kv_cache_scheme"); it != qc.end())
    d.kv_cache_scheme = parse_args(*it, file, P + ".kv_cache_scheme");
  if (auto it = qc.find("weight_block_size"); it != qc.end() && it->is_array()) {
    std::vector<std::int64_t> b;
    for (const auto& x : *it)
      if (x.is_number_integer()) b.push_back(x.get<std::int64_t>());
    if (b.size() == 2) d.weight_block_size = b;
  }
  parse_config_groups(qc, file, P, d);
  return d;
}

const QuantDeclaration* DeclaredConfig::primary() const {
  if (config_json) return &*config_json;
  if (hf_quant_config) return &*hf_quant_config;
  return nullptr;
}

QuantFormat DeclaredConfig::format() const {
  const QuantDeclaration* p = primary();
  return p ? p->format : QuantFormat::kNone;
}

DeclaredConfig parse_declared_config(const std::optional<json>& config, const std::optional<json>& hf_quant) {
  DeclaredConfig d;
  if (config) {
    if (!config->is_object()) bad_key("config.json", "(root)", "a JSON object", *config);
    if (auto it = config->find("quantization_config"); it != config->end() && !it->is_null())
      d.config_json = parse_quantization_config(*it, "config.json");
    else if (auto tc = config->find("text_config"); tc != config->end() && tc->is_object()) {
      if (auto it2 = tc->find("quantization_config"); it2 != tc->end() && !it2->is_null())
        d.config_json = parse_quantization_config(*it2, "config.json");
    }
  }
  if (hf_quant) d.hf_quant_config = parse_hf_quant_config(*hf_quant, "hf_quant_config.json");
  return d;
}

// ---- schemes -------------------------------------------------------------------------------------

std::string Scheme::name() const {
  switch (weight) {
    case WeightQuant::kNone: return "BF16";
    case WeightQuant::kPerTensor:
      return act == ActQuant::kStaticPerTensor ? "FP8 per-tensor static"
             : act == ActQuant::kDynamic     ? "FP8 dynamic per-token"
                                             : "FP8 per-tensor weight-only";
    case WeightQuant::kPerChannel:
      return act == ActQuant::kStaticPerTensor ? "FP8 per-channel (static activations)"
             : act == ActQuant::kDynamic     ? "FP8 per-channel"
                                             : "FP8 per-channel weight-only";
    case WeightQuant::kBlock:
      return fmt::format("FP8 block {}x{}{}", block_n, block_k, act == ActQuant::kNone ? " weight-only" : "");
  }
  return "?";
}

Scheme modelopt_scheme(std::string_view algo) {
  if (algo == "FP8") return {WeightQuant::kPerTensor, ActQuant::kStaticPerTensor, 0, 0};
  if (algo == "FP8_PER_CHANNEL_PER_TOKEN") return {WeightQuant::kPerChannel, ActQuant::kDynamic, 0, 0};
  if (algo == "FP8_PB_WO") return {WeightQuant::kBlock, ActQuant::kNone, 128, 128};
  return {};
}

Scheme group_scheme(const ConfigGroup& g) {
  Scheme s;
  if (!g.weights || !g.weights->is_fp8()) return s;
  const auto& w = *g.weights;
  if (w.strategy == "channel") s.weight = WeightQuant::kPerChannel;
  else if (w.strategy == "block") {
    s.weight = WeightQuant::kBlock;
    s.block_n = w.block_structure.size() == 2 ? w.block_structure[0] : 128;
    s.block_k = w.block_structure.size() == 2 ? w.block_structure[1] : 128;
  } else s.weight = WeightQuant::kPerTensor;
  if (!g.input_activations) s.act = ActQuant::kNone;
  else if (g.input_activations->dynamic) s.act = ActQuant::kDynamic;
  else s.act = ActQuant::kStaticPerTensor;
  return s;
}

// ---- layout --------------------------------------------------------------------------------------

const LinearModule* QuantLayout::find_linear(std::string_view name) const {
  for (const auto& l : linears)
    if (l.name == name) return &l;
  return nullptr;
}

bool QuantLayout::has_fp8_weights() const {
  for (const auto& l : linears)
    if (is_fp8(l.weight_dtype)) return true;
  return false;
}

bool QuantLayout::any_scales() const {
  if (!kv_scales.empty()) return true;
  for (const auto& l : linears)
    if (l.weight_scale || l.input_scale) return true;
  return false;
}

namespace {

// ModelOpt has no `re:` convention; its entries are fnmatch wildcards (exact names are wildcards too).
const MatchPolicy kModelOptDeclared{MatchMode::kExact, {MatchMode::kExact, MatchMode::kFnmatch}, false};
// compressed-tensors: exact or re.match.
const MatchPolicy kCtDeclared{MatchMode::kRegexMatch, {MatchMode::kExact}, false};

const MatchPolicy& declared_policy(const QuantDeclaration& d) {
  return d.format == QuantFormat::kCompressedTensors ? kCtDeclared : kModelOptDeclared;
}

bool is_embedding_module(std::string_view module) {
  std::string_view leaf = leaf_of(module);
  return leaf.find("embed") != std::string_view::npos || leaf == "wte" || leaf == "wpe";
}

bool targets_module(const ConfigGroup& g, const LinearModule& m) {
  for (const auto& t : g.targets) {
    if (t == "Linear" || t == "nn.Linear" || t == "torch.nn.Linear") return true;
    if (is_regex_entry(t)) {
      try {
        if (entry_matches(t, m.name, MatchMode::kRegexMatch) || entry_matches(t, m.canonical, MatchMode::kRegexMatch))
          return true;
      } catch (const ConfigError&) {
      }
    } else if (t == m.name || t == m.canonical) {
      return true;
    }
  }
  return false;
}

void add(std::vector<Finding>& out, Severity s, std::string code, std::string subject, std::string message,
         std::string hint = {}, std::string evidence = {}) {
  Finding f;
  f.severity = s;
  f.code = std::move(code);
  f.subject = std::move(subject);
  f.message = std::move(message);
  f.hint = std::move(hint);
  f.evidence = std::move(evidence);
  out.push_back(std::move(f));
}

// Groups modules of one disagreement kind into a single finding naming the first and the count.
void add_grouped(std::vector<Finding>& out, Severity s, const std::string& code,
                 const std::vector<const LinearModule*>& mods, const std::string& what, const std::string& hint) {
  if (mods.empty()) return;
  std::string msg = fmt::format("{} ({} module{}; first: {})", what, mods.size(), mods.size() == 1 ? "" : "s",
                                mods.front()->name);
  add(out, s, code, mods.front()->name, msg, hint);
}

// Does a producer-side entry match any module/tensor of the checkpoint?
bool entry_matches_anything(const std::string& entry, const QuantDeclaration& d,
                            const std::vector<LinearModule>& linears, const std::vector<std::string>& names) {
  const MatchPolicy& pol = declared_policy(d);
  std::vector<std::string> one{entry};
  for (const auto& l : linears)
    if (first_match(one, l.name, pol) >= 0 || first_match(one, l.canonical, pol) >= 0) return true;
  // An exact entry may name a non-Linear module (a subtree): accept any tensor under it.
  if (!is_regex_entry(entry) && !has_wildcard(entry))
    for (const auto& n : names)
      if (in_subtree(n, entry) || in_subtree(canonical_name(n), entry)) return true;
  return false;
}

std::string closest_module(const std::string& entry, const std::vector<LinearModule>& linears) {
  // Longest common prefix first (a misspelt leaf keeps its parent path), then edit distance.
  std::string body(regex_body(entry));
  while (!body.empty() && (body.back() == '*' || body.back() == '.')) body.pop_back();
  std::string best;
  std::size_t best_lcp = 0, best_d = SIZE_MAX;
  for (const auto& l : linears) {
    for (const std::string* n : {&l.name, &l.canonical}) {
      std::size_t lcp = 0;
      while (lcp < body.size() && lcp < n->size() && body[lcp] == (*n)[lcp]) ++lcp;
      std::size_t d = edit_distance(body, *n);
      if (lcp > best_lcp || (lcp == best_lcp && d < best_d)) {
        best_lcp = lcp;
        best_d = d;
        best = *n;
      }
    }
  }
  return best;
}

}  // namespace

std::string declared_exclusion(const QuantDeclaration& d, const LinearModule& m) {
  const MatchPolicy& pol = declared_policy(d);
  int i = first_match(d.exclude, m.name, pol);
  if (i < 0) i = first_match(d.exclude, m.canonical, pol);
  return i < 0 ? std::string{} : d.exclude[static_cast<std::size_t>(i)];
}

namespace {

// Tensors by role: Linear weights, Linear scales by module and leaf; K/V scales go straight into L.
struct TensorClasses {
  std::map<std::string, const TensorMeta*> weights;                          // module -> .weight
  std::map<std::string, std::map<std::string, const TensorMeta*>> scales;  // module -> leaf -> tensor
};

TensorClasses classify_tensors(const CheckpointView& view, QuantLayout& L) {
  TensorClasses c;
  auto& weights = c.weights;
  auto& scales = c.scales;
  for (const auto& t : view.tensors()) {
    if (auto kv = parse_kv_scale_name(t.name)) {
      KvScaleTensor k;
      k.name = t.name;
      k.attention = kv->attention;
      k.kind = kv->kind;
      k.style = kv->spelling->style;
      k.canonical = kv_scale_name(canonical_name(kv->attention), kv->kind, KvStyle::kCanonical);
      k.dtype = t.dtype;
      k.shape = t.shape;
      k.tower = tower_of(canonical_name(kv->attention));
      k.value = view.scalar(t.name);
      L.kv_scales.push_back(std::move(k));
      continue;
    }
    std::string_view leaf = leaf_of(t.name);
    std::string module(module_of(t.name));
    if (leaf == "weight") weights[module] = &t;
    else if (const QuantTensorLeaf* q = quant_tensor_leaf(t.name); q && q->role == QuantTensorRole::kLinearScale)
      scales[module][std::string(leaf)] = &t;
  }
  return c;
}

// The weight scheme of an FP8 Linear from its weight_scale: [] / [1] per-tensor; [N] / [N,1] per-channel;
// [ceil(N/bn), ceil(K/bk)] block.
void resolve_weight_scheme(QuantLayout& L, LinearModule& m, const TensorMeta* w, const TensorMeta* ws) {
  auto& F = L.findings;
  const std::int64_t N = w->shape[0], K = w->shape[1];
  if (!ws) {
    add(F, Severity::kInvalid, "fp8_weight_without_scale", w->name,
        "FP8 weight without a weight_scale: it cannot be dequantized",
        "re-export the checkpoint; every FP8 weight needs <module>.weight_scale");
    m.tensors.weight = WeightQuant::kPerTensor;
  } else {
    const auto& s = ws->shape;
    std::int64_t n = 1;
    for (auto d : s) n *= d;
    std::vector<std::int64_t> blk{128, 128};
    if (const auto* p = L.declared.primary()) {
      if (p->weight_block_size) blk = *p->weight_block_size;
      for (const auto& g : p->groups)
        if (g.weights && g.weights->block_structure.size() == 2) blk = g.weights->block_structure;
    }
    const std::int64_t gn = (N + blk[0] - 1) / blk[0], gk = (K + blk[1] - 1) / blk[1];
    if (!is_float_scale_dtype(ws->dtype)) {
      add(F, Severity::kInvalid, "scale_dtype", ws->name,
          fmt::format("weight_scale has dtype {}; expected F32, BF16 or F16", dtype_name(ws->dtype)),
          "re-export with float scales");
    }
    if (n == 1 && s.size() <= 2) m.tensors.weight = WeightQuant::kPerTensor;
    else if ((s.size() == 1 && s[0] == N) || (s.size() == 2 && s[0] == N && s[1] == 1))
      m.tensors.weight = WeightQuant::kPerChannel;
    else if (s.size() == 2 && s[0] == gn && s[1] == gk) {
      m.tensors.weight = WeightQuant::kBlock;
      m.tensors.block_n = blk[0];
      m.tensors.block_k = blk[1];
    } else {
      Finding f;
      f.severity = Severity::kInvalid;
      f.code = "scale_shape";
      f.subject = ws->name;
      f.message = fmt::format(
          "weight_scale of a [{}, {}] FP8 weight has shape {}; expected [] or [1] (per-tensor), [{}] or [{},1] "
          "(per-channel) or [{},{}] (block {}x{})",
          N, K, shape_str(s), N, N, gn, gk, blk[0], blk[1]);
      f.hint = "re-export the checkpoint; no runtime accepts this scale shape";
      F.push_back(f);
      m.tensors.weight = WeightQuant::kPerTensor;
    }
  }
}

// The scheme of an FP8 Linear: weight from weight_scale, activations from input_scale (or its absence).
void resolve_fp8_scheme(QuantLayout& L, LinearModule& m, const TensorMeta& weight, const TensorMeta* ws,
                        const TensorMeta* is) {
  auto& F = L.findings;
  resolve_weight_scheme(L, m, &weight, ws);
  if (is) {
    std::int64_t n = 1;
    for (auto d : is->shape) n *= d;
    if (n == 1 && is->shape.size() <= 2) m.tensors.act = ActQuant::kStaticPerTensor;
    else {
      add(F, Severity::kInvalid, "scale_shape", is->name,
          fmt::format("input_scale has shape {}; expected [] or [1] (static per-tensor activation scale)",
                      shape_str(is->shape)),
          "re-export the checkpoint");
      m.tensors.act = ActQuant::kStaticPerTensor;
    }
  } else {
    m.tensors.act = m.tensors.weight == WeightQuant::kBlock && L.declared.primary() &&
                            L.declared.primary()->quant_algo == "FP8_PB_WO"
                        ? ActQuant::kNone
                        : ActQuant::kDynamic;
  }
}

// Scale tensors next to a weight that is not FP8.
void audit_scales_of_unquantized(QuantLayout& L, const TensorMeta& weight, const TensorMeta* ws, const TensorMeta* is) {
  auto& F = L.findings;
  const TensorMeta* w = &weight;
  if (ws || is) {
    if (w->dtype == DType::I8 || w->dtype == DType::U8 || w->dtype == DType::I32)
      add(F, Severity::kInvalid, "unsupported_weight_dtype", w->name,
          fmt::format("quantized weight of dtype {} (integer quantization); vlq handles FP8 checkpoints only",
                      dtype_name(w->dtype)),
          "use an FP8 checkpoint");
    else
      add(F, Severity::kInvalid, "scale_on_unquantized_weight", (ws ? ws : is)->name,
          fmt::format("scale tensor next to a {} weight (not FP8): a loader would apply a scale to an "
                      "unquantized weight",
                      dtype_name(w->dtype)),
          "remove the scale tensors of BF16 modules");
  }
}

// The Linear modules with the scheme their tensors have (step 2).
void build_linears(const CheckpointView& view, QuantLayout& L, TensorClasses& c) {
  auto& F = L.findings;
  auto& scales = c.scales;
  for (const auto& [module, w] : c.weights) {
    bool fp8 = is_fp8(w->dtype);
    if (w->shape.size() != 2 || is_embedding_module(module)) {
      if (fp8)
        add(F, Severity::kInvalid, "fp8_non_linear", w->name,
            fmt::format("FP8 weight of a non-Linear module (shape {}); no runtime loads FP8 convolutions or embeddings",
                        shape_str(w->shape)),
            "keep this module in BF16");
      if (scales.count(module))
        add(F, Severity::kInvalid, "orphan_scale", scales[module].begin()->second->name,
            "scale tensor on a module that is not a Linear", "remove the scale tensor");
      continue;
    }
    LinearModule m;
    m.name = module;
    m.canonical = canonical_name(module);
    m.tower = tower_of(m.canonical);
    m.weight_dtype = w->dtype;
    m.weight_shape = w->shape;
    m.has_bias = view.find(module + ".bias") != nullptr;
    auto sit = scales.find(module);
    const TensorMeta* ws = nullptr;
    const TensorMeta* is = nullptr;
    if (sit != scales.end()) {
      auto& s = sit->second;
      if (s.count("weight_scale")) ws = s["weight_scale"];
      else if (s.count("weight_scale_inv")) ws = s["weight_scale_inv"];
      if (s.count("input_scale")) is = s["input_scale"];
      for (const auto& [leaf, t] : s)
        if (leaf != "weight_scale" && leaf != "weight_scale_inv" && leaf != "input_scale")
          add(F, Severity::kInvalid, "unsupported_scale", t->name,
              fmt::format("scale tensor '{}' belongs to a scheme vlq does not support (FP8 uses weight_scale and "
                          "input_scale only)", leaf),
              "re-export as FP8 (ModelOpt FP8 or compressed-tensors FP8/FP8_DYNAMIC)");
    }
    if (ws) m.weight_scale = ScaleTensor{ws->name, ws->dtype, ws->shape};
    if (is) m.input_scale = ScaleTensor{is->name, is->dtype, is->shape};
    if (fp8) resolve_fp8_scheme(L, m, *w, ws, is);
    else audit_scales_of_unquantized(L, *w, ws, is);
    L.linears.push_back(std::move(m));
  }
  // scale tensors without any weight
  for (const auto& [module, s] : scales)
    if (!c.weights.count(module))
      for (const auto& [leaf, t] : s)
        add(F, Severity::kInvalid, "orphan_scale", t->name,
            fmt::format("'{}' has no '{}.weight' next to it", leaf, module), "remove the tensor or re-export");
}

// K/V scales: shape, dtype, value (step 3).
void audit_kv_scale_tensors(QuantLayout& L) {
  auto& F = L.findings;
  for (const auto& k : L.kv_scales) {
    std::int64_t n = 1;
    for (auto d : k.shape) n *= d;
    if (n != 1 || k.shape.size() > 1) {
      add(F, Severity::kInvalid, "scale_shape", k.name,
          fmt::format("KV-cache scale has shape {}; expected [] or [1] (one per-tensor scale per attention layer)",
                      shape_str(k.shape)),
          "re-export with per-tensor KV-cache scales");
      continue;
    }
    if (!is_float_scale_dtype(k.dtype)) {
      add(F, Severity::kInvalid, "scale_dtype", k.name,
          fmt::format("KV-cache scale has dtype {}; expected F32 or BF16", dtype_name(k.dtype)), "re-export");
      continue;
    }
    if (k.value && (!std::isfinite(*k.value) || *k.value <= 0.0)) {
      Finding f;
      f.severity = Severity::kInvalid;
      f.code = "kv_scale_value";
      f.subject = k.name;
      f.message = fmt::format("KV-cache scale is {}; a scale must be finite and > 0 (definition: amax/448)", *k.value);
      f.risk = "runtimes either replace it by 1.0 or produce NaN/Inf attention";
      f.hint = "recalibrate the KV cache (vlq quantize) or drop the KV scales";
      f.evidence = "field-bug-classes.md F17";
      F.push_back(f);
    }
  }
}

// The declared scheme per Linear, and where the config and the tensors disagree (step 4).
void resolve_declared(QuantLayout& L) {
  auto& F = L.findings;
  const QuantDeclaration* P = L.declared.primary();
  std::vector<const LinearModule*> excluded_with_scales, bf16_not_excluded, quantized_undeclared, scheme_differs;
  for (auto& m : L.linears) {
    if (!P) {
      m.declared = m.tensors;
      continue;
    }
    m.excluded_by = declared_exclusion(*P, m);
    m.declared_excluded = !m.excluded_by.empty();
    if (P->format == QuantFormat::kModelOpt) {
      m.declared = m.declared_excluded ? Scheme{} : modelopt_scheme(P->quant_algo);
    } else if (P->format == QuantFormat::kCompressedTensors) {
      if (!m.declared_excluded)
        for (const auto& g : P->groups)
          if (targets_module(g, m)) {
            m.group = g.name;
            m.declared = group_scheme(g);
            break;
          }
    } else {
      m.declared = m.tensors;
      continue;
    }
    if (m.tensors.quantized() && m.declared_excluded) excluded_with_scales.push_back(&m);
    else if (!m.tensors.quantized() && m.declared.quantized()) bf16_not_excluded.push_back(&m);
    else if (m.tensors.quantized() && !m.declared.quantized()) quantized_undeclared.push_back(&m);
    else if (m.tensors.quantized() && m.declared.quantized() &&
             (m.tensors.weight != m.declared.weight ||
              (m.tensors.act == ActQuant::kStaticPerTensor) != (m.declared.act == ActQuant::kStaticPerTensor)))
      scheme_differs.push_back(&m);
  }
  if (P) {
    const std::string key = P->file + " " + (P->exclude_key.empty() ? "exclude list" : P->exclude_key);
    if (!excluded_with_scales.empty()) {
      const auto* m = excluded_with_scales.front();
      add_grouped(F, Severity::kWarning, "excluded_module_has_scales", excluded_with_scales,
                  fmt::format("module is FP8 with scales, but {} excludes it ('{}')", key, m->excluded_by),
                  "fix the exclude list, or run `vlq convert --vision bf16` to make the tensors match it");
    }
    add_grouped(F, Severity::kWarning, "bf16_not_excluded", bf16_not_excluded,
                fmt::format("BF16 weight without scales that no exclusion in {} covers: a runtime that follows the "
                            "config builds it as FP8 (load error or garbage output)",
                            key),
                "add the module to the exclude list (vlq convert writes a consistent one)");
    add_grouped(F, Severity::kWarning, "quantized_not_declared", quantized_undeclared,
                fmt::format("FP8 module that no config group of {} targets", P->file),
                "re-export; the config must describe every quantized module");
    if (!scheme_differs.empty()) {
      const auto* m = scheme_differs.front();
      add_grouped(F, Severity::kWarning, "declared_vs_tensors", scheme_differs,
                  fmt::format("tensors say '{}' but {} declares '{}'", m->tensors.name(), P->file, m->declared.name()),
                  "re-export the checkpoint or fix quantization_config");
    }
  }
}

// True when `e` is "<parent>.qkv_proj" / "<parent>.gate_up_proj" and the checkpoint has that parent's q/k/v or
// gate/up shards, none of them FP8 (what vlq convert writes for vLLM 0.10 when a fused group is kept).
bool names_fused_module_of_kept_shards(const std::string& e, const std::vector<LinearModule>& linears) {
  const std::vector<std::string> shards = qwen2_lm_fusion().shards_of(e);
  int found = 0;
  for (const auto& m : linears)
    for (const auto& sh : shards)
      if (m.name == sh || m.canonical == sh) {
        if (m.weight_dtype == DType::F8_E4M3) return false;
        ++found;
      }
  return found > 0;
}

// Exclude entries that match nothing, in each file; an entry reported once (step 5).
void audit_stale_exclusions(QuantLayout& L, const std::vector<std::string>& names) {
  auto& F = L.findings;
  std::set<std::string> reported;
  bool has_lm_head = std::any_of(L.linears.begin(), L.linears.end(), [](const auto& l) { return l.name == "lm_head"; });
  for (const QuantDeclaration* d : {L.declared.config_json ? &*L.declared.config_json : nullptr,
                                    L.declared.hf_quant_config ? &*L.declared.hf_quant_config : nullptr}) {
    if (!d) continue;
    for (const auto& e : d->exclude) {
      if (reported.count(e)) continue;
      if (is_regex_entry(e)) {
        std::string err = regex_error(regex_body(e));
        if (!err.empty()) {
          reported.insert(e);
          add(F, Severity::kWarning, "pattern_unsupported", e,
              fmt::format("{} entry '{}' is not a regular expression vlq can evaluate: {}", d->file, e, err),
              "use plain ECMAScript/Python-compatible syntax");
          continue;
        }
      }
      if (entry_matches_anything(e, *d, L.linears, names)) continue;
      reported.insert(e);
      if (names_fused_module_of_kept_shards(e, L.linears)) {
        add(F, Severity::kInfo, "ignore_names_fused_module", e,
            fmt::format("{} entry '{}' names the fused module runtimes build from its kept shards (vLLM's qkv_proj / "
                        "gate_up_proj), for loaders that match entries as substrings (vLLM 0.10); others ignore it",
                        d->file, e));
        continue;
      }
      if (e == "lm_head" && !has_lm_head) {
        add(F, Severity::kInfo, "ignore_matches_nothing", e,
            fmt::format("{} lists 'lm_head' but the checkpoint has no lm_head tensor (tied embeddings)", d->file));
        continue;
      }
      Finding f;
      f.severity = Severity::kWarning;
      f.code = "ignore_matches_nothing";
      f.subject = e;
      std::string closest = closest_module(e, L.linears);
      f.message = fmt::format("{} {} entry '{}' matches no module of the checkpoint{}", d->file, d->exclude_key, e,
                              closest.empty() ? "" : "; closest module: " + closest);
      if (e.rfind("model.layers.", 0) == 0 && d->format == QuantFormat::kModelOpt)
        f.message += " (ModelOpt <= 0.37 prefixes every excluded name with a fake 'model.layers.'; "
                     "fp8-checkpoint-formats.md §1.5)";
      f.risk = "modules the entry was meant to exclude are treated as quantized by runtimes that follow the config";
      f.hint = "fix the entry (vlq convert rewrites the exclude list for the target)";
      f.evidence = "field-bug-classes.md F12, F14";
      F.push_back(f);
    }
  }
}

// The two config files against each other, F16 (step 6).
void audit_config_files(QuantLayout& L) {
  auto& F = L.findings;
  if (L.declared.config_json && L.declared.hf_quant_config) {
    const auto& a = *L.declared.hf_quant_config;
    const auto& b = *L.declared.config_json;
    if (b.format != QuantFormat::kModelOpt) {
      add(F, Severity::kWarning, "config_files_disagree", "quantization_config",
          fmt::format("hf_quant_config.json (ModelOpt) and config.json quantization_config ({}) describe different "
                      "formats; vLLM reads config.json first, hf_quant_config.json-only readers see ModelOpt",
                      b.quant_method),
          "remove one of the two or make them agree (vlq convert writes both consistently)",
          "fp8-checkpoint-formats.md §2.1; field-bug-classes.md F16");
    } else {
      if (a.quant_algo != b.quant_algo)
        add(F, Severity::kWarning, "config_files_disagree", "quant_algo",
            fmt::format("quant_algo is '{}' in hf_quant_config.json but '{}' in config.json", a.quant_algo, b.quant_algo),
            "make both files agree", "field-bug-classes.md F16");
      if (a.declares_fp8_kv() != b.declares_fp8_kv())
        add(F, Severity::kWarning, "config_files_disagree", "kv_cache",
            fmt::format("FP8 KV cache declared in {} only (hf_quant_config.json kv_cache_quant_algo: {}, config.json "
                        "kv_cache_scheme: {}); the KV-cache dtype then depends on which file a runtime reads",
                        a.declares_fp8_kv() ? "hf_quant_config.json" : "config.json",
                        a.kv_cache_quant_algo ? *a.kv_cache_quant_algo : "null",
                        b.kv_cache_scheme ? "8-bit float" : "absent"),
            "make both files agree", "field-bug-classes.md F16");
      std::set<std::string> ea(a.exclude.begin(), a.exclude.end()), eb(b.exclude.begin(), b.exclude.end());
      if (ea != eb)
        add(F, Severity::kWarning, "config_files_disagree", "exclude_modules",
            "hf_quant_config.json exclude_modules and config.json ignore/exclude_modules differ", "make both files agree",
            "field-bug-classes.md F16");
    }
  }
}

// FP8 KV declared vs K/V scales present (language model), scales without any config (step 7).
void audit_kv_declaration(const CheckpointView& view, QuantLayout& L) {
  auto& F = L.findings;
  const QuantDeclaration* P = L.declared.primary();
  bool lm_kv = std::any_of(L.kv_scales.begin(), L.kv_scales.end(), [](const auto& k) { return k.tower != Tower::kVision; });
  bool any_decl_kv = (L.declared.config_json && L.declared.config_json->declares_fp8_kv()) ||
                     (L.declared.hf_quant_config && L.declared.hf_quant_config->declares_fp8_kv());
  if (any_decl_kv && !lm_kv && L.has_fp8_weights())
    add(F, Severity::kWarning, "kv_scales_missing", "",
        "an FP8 KV cache is declared but the checkpoint has no KV-cache scales: runtimes use 1.0 for every layer",
        "calibrate the KV cache (vlq quantize --kv-cache fp8) or drop the KV declaration",
        "field-bug-classes.md F03");
  if (lm_kv && !any_decl_kv && P)
    add(F, Severity::kWarning, "kv_scales_undeclared", L.kv_scales.front().name,
        "KV-cache scales are present but neither config file declares an FP8 KV cache; runtimes that follow the "
        "config ignore them",
        "declare kv_cache_quant_algo / kv_cache_scheme (vlq convert writes it)");
  if (!P && L.any_scales()) {
    std::string first;
    for (const auto& t : view.tensors()) {
      std::string_view leaf = leaf_of(t.name);
      if (leaf.find("scale") != std::string_view::npos) {
        first = t.name;
        break;
      }
    }
    add(F, Severity::kWarning, "scales_without_config", first,
        "scale tensors are present but neither config.json quantization_config nor hf_quant_config.json exists",
        "add the quantization config (vlq convert writes it)", "field-bug-classes.md F15");
  }
}

}  // namespace

QuantLayout build_quant_layout(const CheckpointView& view) {
  QuantLayout L;
  const std::vector<std::string> names = view.names();
  L.naming = detect_naming(names);
  L.declared = parse_declared_config(view.config(), view.hf_quant_config());
  if (L.naming == NamingGeneration::kMixed)
    add(L.findings, Severity::kWarning, "naming_mixed", "",
        "the checkpoint mixes legacy names (model.layers.*, visual.*) with transformers-4.52 names "
        "(model.language_model.*, model.visual.*)",
        "re-save the checkpoint with one transformers version");
  TensorClasses tensors = classify_tensors(view, L);
  build_linears(view, L, tensors);
  audit_kv_scale_tensors(L);
  resolve_declared(L);
  audit_stale_exclusions(L, names);
  audit_config_files(L);
  audit_kv_declaration(view, L);
  return L;
}

}  // namespace vlq::formats
