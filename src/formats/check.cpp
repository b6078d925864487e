// `vlq check`: target-independent audits plus a generic loader model driven by a RuntimeProfile;
// see include/vlq/formats/check.h.
#include "vlq/formats/check.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "vlq/core/error.h"
#include "vlq/formats/patterns.h"
#include "vlq/io/json.h"

namespace vlq::formats {

namespace fs = std::filesystem;
using nlohmann::json;

std::string_view verdict_name(Verdict v) noexcept {
  switch (v) {
    case Verdict::kLoads: return "loads";
    case Verdict::kLoadsWithWarnings: return "loads_with_warnings";
    case Verdict::kFails: return "fails";
    case Verdict::kInvalid: return "invalid";
  }
  return "?";
}

int verdict_exit_code(Verdict v) noexcept {
  switch (v) {
    case Verdict::kLoads: return 0;
    case Verdict::kLoadsWithWarnings: return 1;
    case Verdict::kFails: return 2;
    case Verdict::kInvalid: return 3;
  }
  return 3;
}

Verdict verdict_of(const std::vector<Finding>& findings) noexcept {
  switch (max_severity(findings)) {
    case Severity::kInfo: return Verdict::kLoads;
    case Severity::kWarning: return Verdict::kLoadsWithWarnings;
    case Severity::kError: return Verdict::kFails;
    case Severity::kInvalid: return Verdict::kInvalid;
  }
  return Verdict::kInvalid;
}

const Finding* Report::first_failure() const {
  for (const auto& f : findings)
    if (f.severity >= Severity::kError) return &f;
  return nullptr;
}

std::vector<const Finding*> Report::with_code(std::string_view code) const {
  std::vector<const Finding*> out;
  for (const auto& f : findings)
    if (f.code == code) out.push_back(&f);
  return out;
}

namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}
std::string first_component(std::string_view s) {
  auto pos = s.find('.');
  return std::string(pos == std::string_view::npos ? s : s.substr(0, pos));
}

Finding make(Severity s, std::string code, std::string subject, std::string message) {
  Finding f;
  f.severity = s;
  f.code = std::move(code);
  f.subject = std::move(subject);
  f.message = std::move(message);
  return f;
}

std::string convert_cmd(const std::string& dir, const std::string& target, const std::string& extra = "") {
  std::string d = dir.empty() ? "DIR" : dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  return fmt::format("vlq convert {} {}-{} --for {}{}", d, d, target, target, extra);
}

// Parses "0.35.0" into (0, 35); (-1, -1) if unparsable.
std::pair<int, int> major_minor(const std::string& v) {
  int a = -1, b = -1;
  if (std::sscanf(v.c_str(), "%d.%d", &a, &b) != 2) return {-1, -1};
  return {a, b};
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ==== target-independent audits ===================================================================

void audit_kv_values(const CheckpointView& v, const QuantLayout& L, std::vector<Finding>& out) {
  std::vector<const KvScaleTensor*> lm;
  for (const auto& k : L.kv_scales)
    if (k.tower != Tower::kVision && (k.kind == KvKind::kK || k.kind == KvKind::kV || k.kind == KvKind::kKV) && k.value)
      lm.push_back(&k);
  if (lm.empty()) return;
  bool all_one = std::all_of(lm.begin(), lm.end(), [](const auto* k) { return *k->value == 1.0; });
  if (!all_one) return;
  const QuantDeclaration* hf = L.declared.hf_quant_config ? &*L.declared.hf_quant_config : L.declared.primary();
  bool clamping_modelopt = false;
  if (hf && hf->producer_name == "modelopt") {
    auto [ma, mi] = major_minor(hf->producer_version);
    clamping_modelopt = ma == 0 && mi >= 0 && mi < 43;
  }
  if (clamping_modelopt) {
    Finding f = make(Severity::kInfo, "kv_scales_clamped", lm.front()->name,
                     fmt::format("all {} KV-cache scales are exactly 1.0: ModelOpt {} clamps FP8 KV scales to >= 1.0, "
                                 "so this only says every K/V amax was <= 448 (not that calibration is missing)",
                                 lm.size(), hf->producer_version));
    f.evidence = "fp8-checkpoint-formats.md §1.3; field-bug-classes.md F17";
    out.push_back(f);
    return;
  }
  Finding f = make(Severity::kWarning, "kv_scales_uncalibrated", lm.front()->name,
                   fmt::format("all {} KV-cache scales are exactly 1.0: probably never calibrated (definition: "
                               "amax/448)",
                               lm.size()));
  f.risk = "an FP8 KV cache with scale 1.0 saturates K/V values above 448 and wastes precision on small ones";
  f.hint = "recalibrate the KV cache (vlq quantize --kv-cache fp8)";
  f.evidence = "field-bug-classes.md F17";
  out.push_back(f);
}

void audit_vision(const QuantLayout& L, const std::string& dir, std::vector<Finding>& out) {
  std::vector<const KvScaleTensor*> vkv;
  for (const auto& k : L.kv_scales)
    if (k.tower == Tower::kVision) vkv.push_back(&k);
  if (!vkv.empty()) {
    Finding f = make(Severity::kWarning, "vision_kv_scales", vkv.front()->name,
                     fmt::format("{} K/V-cache scale tensors on the vision attention ({} ...): the ViT has no KV cache "
                                 "and no runtime has a parameter for them (ModelOpt files its k_bmm/v_bmm amax under a "
                                 "pseudo-child k_proj/v_proj)",
                                 vkv.size(), vkv.front()->name));
    f.hint = convert_cmd(dir, "vllm-0.10") + " (drops them)";
    f.evidence = "fp8-checkpoint-formats.md §1.3, §1.7, §2.6";
    out.push_back(f);
  }
  int n = 0;
  const LinearModule* first = nullptr;
  for (const auto& l : L.linears)
    if (l.tower == Tower::kVision && l.tensors.quantized()) {
      if (!first) first = &l;
      ++n;
    }
  if (n) {
    Finding f = make(Severity::kInfo, "vision_fp8", first->name,
                     fmt::format("{} vision Linears are FP8: a ModelOpt-format FP8 ViT is not portable across vLLM "
                                 "versions (vLLM 2026 forces `visual` unquantized)",
                                 n));
    f.hint = convert_cmd(dir, "vllm-latest") + " --vision bf16";
    f.evidence = "fp8-checkpoint-formats.md §2.8, §7.1 rule 3";
    out.push_back(f);
  }
}

// F18: q/k/v (and gate/up) shards with different per-tensor weight scales.
void audit_fused_scales(const CheckpointView& v, const QuantLayout& L, std::vector<Finding>& out) {
  std::map<std::string, std::vector<const LinearModule*>> groups;  // fused module -> shards
  for (const auto& l : L.linears) {
    if (l.tensors.weight != WeightQuant::kPerTensor || !l.weight_scale) continue;
    auto r = qwen2_lm_fusion().apply(l.name);
    if (!r) continue;
    groups[std::string(r->name)].push_back(&l);
  }
  int n = 0;
  std::string first;
  double worst = 1.0;
  for (const auto& [fused, shards] : groups) {
    if (shards.size() < 2) continue;
    double lo = INFINITY, hi = 0;
    for (const auto* s : shards) {
      auto val = v.scalar(s->weight_scale->name);
      if (!val) continue;
      lo = std::min(lo, *val);
      hi = std::max(hi, *val);
    }
    if (hi > 0 && lo > 0 && hi != lo) {
      if (first.empty()) first = fused;
      ++n;
      worst = std::max(worst, hi / lo);
    }
  }
  if (!n) return;
  Finding f = make(Severity::kInfo, "fused_scales_differ", first,
                   fmt::format("{} fused groups (q/k/v, gate/up) have shards with different per-tensor weight_scale "
                               "(largest ratio {:.3g}); runtimes with a fused qkv_proj / gate_up_proj requantize the "
                               "shards to the largest scale and keep the largest input_scale",
                               n, worst));
  f.risk = "at most one FP8 step of extra error at the larger scale on the requantized shards";
  f.evidence = "field-bug-classes.md F18; fp8-checkpoint-formats.md §2.3";
  out.push_back(f);
}

void audit_naming(const QuantLayout& L, std::vector<Finding>& out) {
  if (L.naming == NamingGeneration::kTransformers452)
    out.push_back(make(Severity::kInfo, "naming_generation", "",
                       "transformers-4.52 names (model.language_model.*, model.visual.*): vLLM < 0.9.1 (before PR "
                       "#19054) and other loaders without the 4.52 mapping fail with KeyError on them; exclusion "
                       "entries must use the same names"));
  else if (L.naming == NamingGeneration::kLegacy)
    out.push_back(make(Severity::kInfo, "naming_generation", "",
                       "legacy names (model.layers.*, visual.*): accepted by every runtime; `re:` entries written for "
                       "4.52 names (re:model.visual.*) do not match them"));
}

struct TokenField {
  std::string where;
  json value;
};

std::vector<TokenField> special_token_fields(const fs::path& dir) {
  std::vector<TokenField> f;
  auto add_ids = [&](const std::string& file, const json& j, const std::string& prefix) {
    for (const char* k : {"bos_token_id", "eos_token_id", "pad_token_id"})
      if (j.contains(k)) f.push_back({file + " " + prefix + k, j[k]});
  };
  if (auto g = io::read_json_file_if_present(dir / "generation_config.json")) add_ids("generation_config.json", *g, "");
  if (auto c = io::read_json_file_if_present(dir / "config.json")) {
    add_ids("config.json", *c, "");
    if (c->contains("text_config") && (*c)["text_config"].is_object())
      add_ids("config.json", (*c)["text_config"], "text_config.");
  }
  auto tok_str = [](const json& v) -> json {
    if (v.is_object() && v.contains("content")) return v["content"];
    return v;
  };
  for (const char* file : {"tokenizer_config.json", "special_tokens_map.json"}) {
    if (auto t = io::read_json_file_if_present(dir / file)) {
      for (const char* k : {"bos_token", "eos_token", "pad_token", "unk_token"})
        if (t->contains(k)) f.push_back({std::string(file) + " " + k, tok_str((*t)[k])});
      if (t->contains("added_tokens_decoder") && (*t)["added_tokens_decoder"].is_object()) {
        json special = json::object();
        for (const auto& [id, tok] : (*t)["added_tokens_decoder"].items())
          if (tok.is_object() && tok.value("special", false)) special[id] = tok.value("content", "");
        f.push_back({std::string(file) + " added_tokens_decoder (special)", special});
      }
    }
  }
  return f;
}

void audit_tokens(const fs::path& dir, const CheckOptions& opts, std::vector<Finding>& out) {
  if (dir.empty()) return;
  auto mine = special_token_fields(dir);
  if (opts.base_model) {
    auto base = special_token_fields(*opts.base_model);
    std::map<std::string, json> b;
    for (auto& x : base) b[x.where] = x.value;
    for (auto& x : mine) {
      auto it = b.find(x.where);
      if (it == b.end() || it->second == x.value) continue;
      Finding f = make(Severity::kWarning, "special_tokens_changed", x.where,
                       fmt::format("{} is {} in the checkpoint but {} in the base model", x.where, x.value.dump(),
                                   it->second.dump()));
      f.risk = "generation stops at the wrong token or never stops";
      f.hint = "copy the tokenizer/generation files from the base model (vlq convert keeps them byte-identical)";
      f.evidence = "field-bug-classes.md F25";
      out.push_back(f);
    }
    for (const char* file : {"chat_template.jinja", "chat_template.json"}) {
      bool a = fs::exists(dir / file), c = fs::exists(*opts.base_model / file);
      if (a && c && slurp(dir / file) != slurp(*opts.base_model / file)) {
        Finding f = make(Severity::kWarning, "special_tokens_changed", file,
                         std::string(file) + " differs from the base model's");
        f.evidence = "field-bug-classes.md F25";
        out.push_back(f);
      }
    }
    return;
  }
  // Without a base model: the released Qwen2.5-VL-Instruct ids, only for the real 151,665-token vocabulary.
  auto cfg = io::read_json_file_if_present(dir / "config.json");
  if (!cfg) return;
  std::int64_t vocab = 0;
  if (cfg->contains("vocab_size") && (*cfg)["vocab_size"].is_number_integer()) vocab = (*cfg)["vocab_size"];
  else if (cfg->contains("text_config") && (*cfg)["text_config"].contains("vocab_size"))
    vocab = (*cfg)["text_config"]["vocab_size"].get<std::int64_t>();
  if (vocab < 151665) return;
  const std::map<std::string, json> expected = {
      {"config.json eos_token_id", 151645},
      {"config.json bos_token_id", 151643},
      {"generation_config.json eos_token_id", json::array({151645, 151643})},
      {"generation_config.json pad_token_id", 151643},
      {"generation_config.json bos_token_id", 151643},
      {"tokenizer_config.json eos_token", "<|im_end|>"},
      {"tokenizer_config.json pad_token", "<|endoftext|>"},
  };
  for (auto& x : mine) {
    auto it = expected.find(x.where);
    if (it == expected.end() || it->second == x.value) continue;
    Finding f = make(Severity::kWarning, "special_tokens_changed", x.where,
                     fmt::format("{} is {}; released Qwen2.5-VL-Instruct has {}", x.where, x.value.dump(),
                                 it->second.dump()));
    f.risk = "generation stops at the wrong token or never stops";
    f.hint = "pass --base <source model> to compare with the model that was quantized";
    f.evidence = "field-bug-classes.md F25; qwen2_5_vl.md §1.1";
    out.push_back(f);
  }
}

// FP8 GEMM alignment of the Linears a runtime computes in FP8.
struct Gemm {
  std::string subject;   // checkpoint naming (first shard)
  std::string runtime;   // runtime module
  std::int64_t n = 0, k = 0;
};
void audit_alignment(const RuntimeProfile& p, const std::vector<Gemm>& gemms, const std::string& dir,
                     std::vector<Finding>& out) {
  if (p.fp8_gemm_align <= 1) return;
  std::vector<const Gemm*> bad;
  for (const auto& g : gemms)
    if (g.n % p.fp8_gemm_align || g.k % p.fp8_gemm_align) bad.push_back(&g);
  if (bad.empty()) return;
  const Gemm& g = *bad.front();
  Finding f = make(p.unaligned_severity, "fp8_gemm_alignment", g.subject,
                   fmt::format("{} FP8 Linears have K or N not a multiple of {} (first: {} as {}, N={} K={}): {}",
                               bad.size(), p.fp8_gemm_align, g.subject, g.runtime, g.n, g.k, p.unaligned_text));
  if (p.unaligned_severity >= Severity::kWarning) {
    f.risk = "assertion or kernel failure in the FP8 GEMM at the first image request, or a slow fallback";
    f.hint = convert_cmd(dir, p.id, " --vision bf16") + " (keeps these Linears in BF16)";
  }
  f.evidence = "field-bug-classes.md F19; qwen2_5_vl.md §7 (vision MLP 3420)";
  out.push_back(f);
}

// ==== the runtime model ===========================================================================

struct RtLinear {
  std::string name;  // runtime module name (full)
  Tower tower = Tower::kOther;
  std::vector<std::pair<const LinearModule*, std::string>> shards;  // HF module, shard id
  bool quantized = false;
  Scheme scheme;
  std::string why_unquantized;  // for messages
  bool bf16_weight_loaded = false;
  std::set<std::string> loaded;
};

// What the target reads from the config files.
struct RtConfig {
  const QuantDeclaration* read = nullptr;
  QuantFormat format = QuantFormat::kNone;
  std::string algo;
  std::vector<std::string> exclude;  // as the runtime sees them, before its own mapping
  bool exclude_read = true;          // false when the key it reads is absent
  bool kv_fp8 = false;
  std::string describe;
};

// The list a reader of exactly `key` ("exclude_modules" or "ignore") sees, and whether the key is there.
std::vector<std::string> list_under(const QuantDeclaration& d, const std::string& key, bool& present) {
  const bool ignore = key == "ignore";
  present = ignore ? d.has_ignore_key : d.has_exclude_modules_key;
  const auto& list = ignore ? d.ignore : d.exclude_modules;
  return list.value_or(std::vector<std::string>{});
}

RtConfig read_config(const QuantLayout& L, const RuntimeProfile& p) {
  RtConfig c;
  const auto& D = L.declared;
  const QuantDeclaration* cj = D.config_json ? &*D.config_json : nullptr;
  const QuantDeclaration* hf = D.hf_quant_config ? &*D.hf_quant_config : nullptr;
  if (cj && cj->format == QuantFormat::kModelOpt && !p.config.reads_config_json_modelopt) cj = nullptr;
  if (hf && (!p.config.reads_hf_quant_config || hf->format != QuantFormat::kModelOpt)) hf = nullptr;
  c.read = p.config.config_json_first ? (cj ? cj : hf) : (hf ? hf : cj);
  if (!c.read) {
    c.describe = "no quantization config";
    return c;
  }
  c.format = c.read->format;
  c.algo = c.read->quant_algo;
  const bool hf_style = c.read->quantization_block;
  if (c.format == QuantFormat::kModelOpt) {
    if (hf_style) {
      c.exclude = c.read->exclude;
      c.kv_fp8 = c.read->kv_cache_quant_algo && *c.read->kv_cache_quant_algo == "FP8";
      c.describe = fmt::format("{} (ModelOpt, hf_quant_config form): exclude_modules, kv_cache_quant_algo", c.read->file);
    } else {
      const std::string& key = p.config.cfgjson_exclude_key;
      c.exclude = list_under(*c.read, key, c.exclude_read);
      if (p.config.cfgjson_kv_from_scheme)
        c.kv_fp8 = (c.read->kv_cache_scheme && c.read->kv_cache_scheme->is_fp8()) ||
                   (c.read->kv_cache_quant_algo && *c.read->kv_cache_quant_algo == "FP8");
      else
        c.kv_fp8 = c.read->kv_cache_quant_algo && *c.read->kv_cache_quant_algo == "FP8";
      c.describe = fmt::format("config.json quantization_config (ModelOpt, config.json form): reads '{}' ({}) and {}",
                               key, c.exclude_read ? fmt::format("{} entries", c.exclude.size()) : "absent → none",
                               p.config.cfgjson_kv_from_scheme ? "kv_cache_scheme" : "kv_cache_quant_algo");
    }
  } else if (c.format == QuantFormat::kCompressedTensors) {
    bool present = false;
    c.exclude = list_under(*c.read, "ignore", present);
    c.kv_fp8 = c.read->kv_cache_scheme && c.read->kv_cache_scheme->is_fp8();
    c.describe = "config.json quantization_config (compressed-tensors): config_groups, ignore, kv_cache_scheme";
  } else {
    c.describe = fmt::format("{} quant_method '{}'", c.read->file, c.read->quant_method);
  }
  return c;
}

class Simulator {
 public:
  Simulator(const CheckpointView& v, const QuantLayout& L, const RuntimeProfile& p, std::string dir,
            std::vector<Finding>& out)
      : v_(v), L_(L), p_(p), dir_(std::move(dir)), out_(out) {}

  RtConfig cfg;
  std::vector<Gemm> gemms;
  std::string kv_cache;

  void run() {
    cfg = read_config(L_, p_);
    if (!config_ok()) return;
    build_modules();
    if (fatal_) return;
    load();
    if (fatal_) return;
    after_load();
  }

 private:
  const CheckpointView& v_;
  const QuantLayout& L_;
  const RuntimeProfile& p_;
  std::string dir_;
  std::vector<Finding>& out_;
  std::vector<RtLinear> rts_;
  std::map<std::string, std::size_t> rt_by_param_;  // param name -> RtLinear index
  std::set<std::string> params_;
  std::set<std::string> attention_params_;
  bool fatal_ = false;
  int more_failures_ = 0;
  std::size_t fatal_index_ = SIZE_MAX;
  std::vector<std::string> dropped_kv_;
  std::vector<std::string> bound_kv_;
  std::vector<std::string> skipped_unknown_;
  std::vector<std::string> skipped_known_;

  void fail(Finding f) {
    if (fatal_) {
      ++more_failures_;
      return;
    }
    fatal_ = true;
    f.severity = Severity::kError;
    out_.push_back(std::move(f));
    fatal_index_ = out_.size() - 1;
  }

  bool config_ok() {
    Finding info = make(Severity::kInfo, "config_read", cfg.read ? cfg.read->file : "",
                        fmt::format("{} reads {}", p_.id, cfg.describe));
    info.evidence = "fp8-checkpoint-formats.md §2.1, §2.2";
    out_.push_back(info);
    if (cfg.format == QuantFormat::kNone) return true;
    bool supported = (cfg.format == QuantFormat::kModelOpt && p_.config.supports_modelopt) ||
                     (cfg.format == QuantFormat::kCompressedTensors && p_.config.supports_compressed_tensors);
    if (cfg.format == QuantFormat::kOther) {
      Finding f = make(Severity::kWarning, "not_analysed", cfg.read->file,
                       fmt::format("quant_method '{}' is not modelled by vlq check", cfg.read->quant_method));
      out_.push_back(f);
      return false;
    }
    if (!supported) {
      Finding f = make(Severity::kError, "format_unsupported", cfg.read->file,
                       fmt::format("{} does not support {} FP8 checkpoints{}", p_.title, quant_format_name(cfg.format),
                                   p_.id == "vllm-ascend" ? " (FP8 is not supported on Ascend A2/A3 NPUs; the Ascend "
                                                            "quant-config module raises a KeyError on the first "
                                                            "vision weight)"
                                                          : ""));
      f.runtime_error = p_.config.unsupported_error;
      f.hint = "use a runtime that supports FP8 (vllm-latest, vlq) or a format this backend supports";
      f.evidence = p_.sources;
      if (p_.kind == LoaderKind::kTrtllm) {
        f.severity = Severity::kWarning;
        f.code = "not_analysed";
        f.runtime_error.clear();
      }
      out_.push_back(f);
      return false;
    }
    if (cfg.format == QuantFormat::kModelOpt &&
        std::find(p_.config.modelopt_algos.begin(), p_.config.modelopt_algos.end(), cfg.algo) ==
            p_.config.modelopt_algos.end()) {
      std::string list;
      for (const auto& a : p_.config.modelopt_algos) list += (list.empty() ? "'" : ", '") + a + "'";
      Finding f = make(Severity::kError, "quant_algo_unsupported", cfg.read->file,
                       fmt::format("quant_algo '{}' is not accepted by {}", cfg.algo, p_.id));
      f.runtime_error = fmt::format(
          "ValueError: ModelOpt currently only supports: [{}] quantizations in vLLM. Please check the "
          "`hf_quant_config.json` file for your model's quant configuration.",
          list);
      f.evidence = "fp8-checkpoint-formats.md §2.2, §2.8";
      out_.push_back(f);
      return false;
    }
    // Exclusions or KV declaration the runtime does not see.
    if (cfg.format == QuantFormat::kModelOpt && !cfg.exclude_read && !cfg.read->exclude.empty()) {
      Finding f = make(Severity::kInfo, "exclusions_not_read", cfg.read->file,
                       fmt::format("{} reads '{}' from config.json, but the file has '{}': every exclusion is lost "
                                   "({} entries)",
                                   p_.id, p_.config.cfgjson_exclude_key, cfg.read->exclude_key, cfg.read->exclude.size()));
      f.evidence = "fp8-checkpoint-formats.md §2.2, §2.7";
      f.hint = convert_cmd(dir_, p_.id) + " (writes the key this runtime reads)";
      out_.push_back(f);
    }
    return true;
  }

  bool vision_name(const std::string& rt, Tower tower) const {
    if (!p_.vision_root.empty()) return starts_with(rt, p_.vision_root + ".");
    return tower == Tower::kVision;
  }

  // The name the sub-loader sees (for error texts).
  std::string rel(const std::string& rt, bool vision) const {
    const std::string& root = vision ? p_.vision_root : p_.lm_root;
    if (!root.empty() && starts_with(rt, root + ".")) return rt.substr(root.size() + 1);
    return rt;
  }

  std::string excluded(const RtLinear& r, bool& fused_mismatch) const {
    ExclusionResult e = runtime_exclusion(p_, cfg.format, cfg.exclude, r.name);
    fused_mismatch = e.fused_mismatch;
    return e.entry;
  }

  void build_modules() {
    std::map<std::string, std::size_t> idx;
    for (const auto& m : L_.linears) {
      std::string rt = p_.prefix.apply(m.name + ".weight");
      bool vision = vision_name(rt, m.tower);
      std::string shard_id;
      if (vision) {
        std::string r = rel(rt, true);
        if (auto s = p_.vision_stacking.apply(r)) {
          shard_id = s->rule->shard_id;
          rt = (p_.vision_root.empty() ? "" : p_.vision_root + ".") + s->name;
        }
      } else if (m.tower != Tower::kHead) {
        std::string r = rel(rt, false);
        if (auto s = p_.lm_stacking.apply(r)) {
          shard_id = s->rule->shard_id;
          rt = (p_.lm_root.empty() ? "" : p_.lm_root + ".") + s->name;
        }
      }
      std::string mod(module_of(rt));
      if (vision && !p_.vision_module_renames.rules.empty()) mod = p_.vision_module_renames.apply(mod);
      auto it = idx.find(mod);
      if (it == idx.end()) {
        idx[mod] = rts_.size();
        RtLinear r;
        r.name = mod;
        r.tower = m.tower;
        rts_.push_back(r);
        it = idx.find(mod);
      }
      rts_[it->second].shards.push_back({&m, shard_id});
    }
    // shards in slot order (q, k, v / 0, 1), as the runtime fills them
    auto slot = [](const std::string& id) {
      static const std::vector<std::string> order = {"", "q", "k", "v", "0", "1"};
      return std::find(order.begin(), order.end(), id) - order.begin();
    };
    for (auto& r : rts_)
      std::stable_sort(r.shards.begin(), r.shards.end(),
                       [&](const auto& a, const auto& b) { return slot(a.second) < slot(b.second); });
    // quantization decision per runtime module
    for (auto& r : rts_) {
      const LinearModule& m0 = *r.shards.front().first;
      if (cfg.format == QuantFormat::kNone) {
        r.why_unquantized = "the runtime found no quantization config";
      } else if (r.tower == Tower::kHead && !(p_.lm_head_quantizable && cfg.format == QuantFormat::kModelOpt)) {
        r.why_unquantized = "lm_head is never quantized by this runtime";
      } else if (r.tower == Tower::kVision && !p_.vision_gets_quant_config) {
        r.why_unquantized = "the vision tower gets no quantization config";
      } else {
        bool mismatch = false;
        std::string e = excluded(r, mismatch);
        if (mismatch) {
          const bool ct = cfg.format == QuantFormat::kCompressedTensors;
          const ExclusionReading& x = ct ? p_.ct_exclusion : p_.modelopt_exclusion;
          std::string shards;
          for (const auto& fr : p_.packed_modules)
            if (leaf_of(r.name) == fr.fused) shards += (shards.empty() ? "['" : "', '") + fr.shard;
          shards += "']";
          std::string msg = x.fused_error;
          auto rep = [&](const std::string& k, const std::string& val) {
            for (auto pos = msg.find(k); pos != std::string::npos; pos = msg.find(k)) msg.replace(pos, k.size(), val);
          };
          rep("{prefix}", r.name);
          rep("{shards}", shards);
          Finding f = make(Severity::kError, "fused_exclusion_mismatch", m0.name,
                           fmt::format("the exclude list covers some but not all shards of the fused runtime Linear "
                                       "{}; {} requires one precision per fused layer",
                                       r.name, p_.id));
          f.runtime_error = msg;
          f.hint = "exclude all of q/k/v_proj (or gate/up_proj) or none";
          f.evidence = "fp8-checkpoint-formats.md §3.5; field-bug-classes.md F22";
          fail(f);
          return;
        }
        bool forced = false;
        if (cfg.format == QuantFormat::kModelOpt)
          for (const auto& s : p_.modelopt_forced_unquantized)
            if (r.name.find(s) != std::string::npos) forced = true;
        bool targeted = true;
        if (cfg.format == QuantFormat::kCompressedTensors) {
          targeted = false;
          for (const auto& sh : r.shards)
            if (!sh.first->group.empty() || sh.first->declared_excluded) targeted = true;
          // Group targets are evaluated on checkpoint names by the layout; a module excluded on checkpoint
          // names still gets the first group's scheme if the runtime does not exclude it.
        }
        if (!e.empty()) r.why_unquantized = fmt::format("excluded by '{}'", e);
        else if (forced) r.why_unquantized = "forced unquantized (vision prefix)";
        else if (!targeted) r.why_unquantized = "no config group targets it";
        else {
          r.quantized = true;
          if (cfg.format == QuantFormat::kModelOpt) r.scheme = modelopt_scheme(cfg.algo);
          else {
            for (const auto& g : cfg.read->groups)
              if (!g.targets.empty()) {
                r.scheme = group_scheme(g);
                break;
              }
            for (const auto& sh : r.shards)
              if (!sh.first->group.empty())
                for (const auto& g : cfg.read->groups)
                  if (g.name == sh.first->group) r.scheme = group_scheme(g);
          }
          if (!r.scheme.quantized()) {
            r.quantized = false;
            r.why_unquantized = "its scheme is not FP8";
          }
        }
      }
    }
    // parameters
    for (std::size_t i = 0; i < rts_.size(); ++i) {
      auto& r = rts_[i];
      auto addp = [&](const std::string& leaf) {
        params_.insert(r.name + "." + leaf);
        rt_by_param_[r.name + "." + leaf] = i;
      };
      addp("weight");
      bool bias = std::any_of(r.shards.begin(), r.shards.end(), [](const auto& s) { return s.first->has_bias; });
      if (bias) addp("bias");
      if (r.quantized) {
        addp("weight_scale");
        if (r.scheme.act == ActQuant::kStaticPerTensor) addp("input_scale");
      }
    }
    // attention KV parameters (decoder only; the ViT has no runtime Attention layer)
    if (cfg.format != QuantFormat::kNone && (p_.attention_kv_params_always || cfg.kv_fp8)) {
      for (const auto& m : L_.linears) {
        if (m.tower == Tower::kVision) continue;
        std::string_view leaf = leaf_of(m.name);
        if (leaf != "q_proj" && leaf != "k_proj" && leaf != "v_proj" && leaf != "qkv_proj") continue;
        std::string attn = p_.prefix.apply(std::string(module_of(m.name)));
        for (KvKind k : {KvKind::kK, KvKind::kV, KvKind::kQ, KvKind::kProb}) {
          const std::string param = kv_scale_name(attn, k, KvStyle::kRuntimeAttn);
          params_.insert(param);
          attention_params_.insert(param);
        }
      }
    }
    // FP8 GEMMs the runtime will run
    for (const auto& r : rts_) {
      if (!r.quantized) continue;
      std::int64_t n = 0, k = 0;
      for (const auto& s : r.shards) {
        n += s.first->weight_shape[0];
        k = s.first->weight_shape[1];
      }
      gemms.push_back({r.shards.front().first->name, r.name, n, k});
    }
    // KV cache prediction
    if (cfg.format == QuantFormat::kNone) kv_cache = "model dtype (no quantization config)";
    else if (cfg.kv_fp8 && p_.config.kv_dtype_from_checkpoint) kv_cache = "fp8 (declared by the checkpoint)";
    else if (cfg.kv_fp8) kv_cache = "model dtype; fp8 only with --kv-cache-dtype fp8 (the declaration is not used)";
    else kv_cache = "model dtype (no FP8 KV declared as this runtime reads it)";
  }

  std::optional<std::string> remap_kv(const std::string& name, bool& is_kv) const {
    is_kv = false;
    for (const auto& rule : p_.kv_remap) {
      if (!ends_with(name, rule.from)) continue;
      is_kv = true;
      std::string out = name.substr(0, name.size() - rule.from.size()) + rule.to;
      if (params_.count(out)) return out;
      return std::nullopt;
    }
    return name;
  }

  std::string unquantized_reason(const std::string& param) const {
    std::string mod(module_of(param));
    for (const auto& r : rts_)
      if (r.name == mod) return r.quantized ? "" : r.why_unquantized;
    return "";
  }

  void missing(const TensorMeta& t, const std::string& loader_name, bool vision, UnknownName how,
               const std::string& full) {
    if (how == UnknownName::kSkip) {
      skipped_known_.push_back(t.name);
      return;
    }
    if (how == UnknownName::kUnknown) {
      skipped_unknown_.push_back(t.name);
      return;
    }
    Finding f = make(Severity::kError, "runtime_key_error", t.name, "");
    f.runtime_error = fmt::format("KeyError: '{}'", loader_name);
    auto kv = parse_kv_scale_name(t.name);
    std::string why = unquantized_reason(full);
    if (kv && vision) {
      f.message = fmt::format("vision attention K/V scale: the {} vision loader has no parameter '{}' (the ViT has no "
                              "KV-cache Attention layer and its loader does not remap KV scales), so loading aborts",
                              p_.id, loader_name);
      f.hint = convert_cmd(dir_, p_.id) + " (drops the vision K/V scales)";
      f.evidence = "fp8-checkpoint-formats.md §2.5, §2.6";
    } else if (!why.empty()) {
      f.message = fmt::format("'{}' is built unquantized by {} ({}), so the checkpoint's '{}' has no parameter",
                              module_of(full), p_.id, why, leaf_of(t.name));
      f.hint = convert_cmd(dir_, p_.id, vision ? " --vision bf16" : "") +
               (vision ? " (dequantizes the ViT and excludes it)" : "");
      f.evidence = vision ? "fp8-checkpoint-formats.md §2.5, §2.8" : "fp8-checkpoint-formats.md §2.3";
    } else {
      f.message = fmt::format("{} has no parameter '{}' for this tensor", p_.id, loader_name);
      f.evidence = "fp8-checkpoint-formats.md §2.4, §2.5";
    }
    fail(f);
  }

  void load_param(const TensorMeta& t, const std::string& full, bool vision, const std::string& loader_name) {
    if (!params_.count(full)) {
      // Non-Linear tensors (norms, embeddings, Conv3d) exist in the runtime model as long as they are not
      // Linear-related or scales.
      missing(t, loader_name, vision, vision ? p_.vision_unknown : p_.lm_unknown, full);
      return;
    }
    if (attention_params_.count(full)) {
      bound_kv_.push_back(t.name);
      return;
    }
    auto it = rt_by_param_.find(full);
    if (it == rt_by_param_.end()) return;
    RtLinear& r = rts_[it->second];
    r.loaded.insert(std::string(leaf_of(full)));
    if (leaf_of(full) == "weight" && r.quantized && !is_fp8(t.dtype)) r.bf16_weight_loaded = true;
  }

  bool linear_tensor(const std::string& name) const {
    std::string mod(module_of(name));
    return L_.find_linear(mod) != nullptr;
  }

  void load() {
    for (const TensorMeta* tp : v_.iteration_order()) {
      const TensorMeta& t = *tp;
      if (fatal_ && more_failures_ > 1000) break;
      std::string rt = p_.prefix.apply(t.name);
      auto kv = parse_kv_scale_name(t.name);
      bool linear_part = linear_tensor(t.name);
      Tower tower = tower_of(canonical_name(t.name));
      // top-level dispatch
      if (!p_.top_modules.empty() &&
          std::find(p_.top_modules.begin(), p_.top_modules.end(), first_component(rt)) == p_.top_modules.end()) {
        Finding f = make(Severity::kError, "runtime_unknown_module", t.name,
                         fmt::format("{} has no top-level module '{}'", p_.top_class, first_component(rt)));
        f.runtime_error =
            fmt::format("ValueError: There is no module or parameter named '{}' in {}", rt, p_.top_class);
        fail(f);
        continue;
      }
      bool vision = vision_name(rt, tower);
      if (kv && !p_.kv_scales_bind) {
        dropped_kv_.push_back(t.name);
        continue;
      }
      if (!linear_part && !kv) continue;  // norms, embeddings, conv: assumed present
      if (vision) {
        std::string r = rel(rt, true);
        std::string name = r;
        if (auto s = p_.vision_stacking.apply(r)) name = s->name;
        std::string full = (p_.vision_root.empty() ? "" : p_.vision_root + ".") + name;
        if (!p_.vision_module_renames.rules.empty())
          full = p_.vision_module_renames.apply(std::string(module_of(full))) + "." + std::string(leaf_of(full));
        load_param(t, full, true, name);
        continue;
      }
      // lm_head (AutoWeightsLoader of the causal-LM class)
      if (!p_.lm_head.empty() && starts_with(rt, p_.lm_head + ".")) {
        if (!params_.count(rt)) {
          std::string parent(module_of(p_.lm_head));
          std::string relname = parent.empty() ? rt : rt.substr(parent.size() + 1);
          Finding f = make(Severity::kError, "runtime_unknown_module", t.name,
                           fmt::format("lm_head is not quantized by {}, so '{}' has no parameter", p_.id, relname));
          f.runtime_error = p_.lm_root.empty()
                                ? fmt::format("KeyError: '{}'", rt)
                                : fmt::format("ValueError: There is no module or parameter named '{}' in {}", relname,
                                              p_.lm_class);
          f.hint = "keep lm_head in BF16 (ModelOpt and llm-compressor exclude it by default)";
          fail(f);
        } else {
          load_param(t, rt, false, rt);
        }
        continue;
      }
      std::string r = rel(rt, false);
      auto full_of = [&](const std::string& x) { return p_.lm_root.empty() ? x : p_.lm_root + "." + x; };
      // compressed-tensors get_cache_scale (old k_proj.output_scale spelling), strict
      if (cfg.format == QuantFormat::kCompressedTensors && p_.ct_output_scale_remap) {
        auto os = parse_kv_scale_name(r);
        if (os && os->spelling->style == KvStyle::kOutputScale && (os->kind == KvKind::kK || os->kind == KvKind::kV)) {
          std::string target = kv_scale_name(os->attention, os->kind, KvStyle::kRuntimeAttn);
          load_param(t, full_of(target), false, target);
          continue;
        }
      }
      std::string name = r;
      if (auto s = p_.lm_stacking.apply(r)) {
        name = s->name;
        if (ends_with(name, ".bias") && !params_.count(full_of(name))) continue;
        if (ends_with(name, "scale")) {
          bool is_kv = false;
          auto m = remap_kv(full_of(name), is_kv);
          if (!m) {
            dropped_kv_.push_back(t.name);
            continue;
          }
          if (is_kv) {
            load_param(t, *m, false, rel(*m, false));
            continue;
          }
        }
        load_param(t, full_of(name), false, name);
        continue;
      }
      if (ends_with(name, ".bias") && !params_.count(full_of(name))) continue;
      bool is_kv = false;
      auto m = remap_kv(full_of(name), is_kv);
      if (!m) {
        dropped_kv_.push_back(t.name);
        continue;
      }
      load_param(t, *m, false, rel(*m, false));
    }
    if (fatal_index_ != SIZE_MAX && more_failures_ > 0)
      out_[fatal_index_].message += fmt::format(" ({} more tensor{} would also fail)", more_failures_,
                                             more_failures_ == 1 ? "" : "s");
  }

  void after_load() {
    // Quantized runtime Linears whose checkpoint weight is BF16: cast to FP8, scales never loaded.
    std::map<Tower, std::vector<const RtLinear*>> cast;
    for (const auto& r : rts_)
      if (r.quantized && (r.bf16_weight_loaded || !r.loaded.count("weight_scale"))) cast[r.tower].push_back(&r);
    for (const auto& [tower, list] : cast) {
      const RtLinear& r = *list.front();
      Finding f = make(Severity::kWarning, tower == Tower::kVision ? "vision_fp8_without_scales" : "fp8_without_scales",
                       r.shards.front().first->name, "");
      f.message = fmt::format(
          "{} {} runtime Linears are built FP8 by {} (no exclusion it honours covers them) but the checkpoint has "
          "{} weights without scales (first: {}{}): the weights are cast to FP8 and weight_scale/input_scale keep "
          "their unloaded value",
          list.size(), tower_name(tower), p_.id, dtype_name(r.shards.front().first->weight_dtype),
          r.shards.front().first->name, r.name == r.shards.front().first->name ? "" : " as " + r.name);
      f.risk = tower == Tower::kVision ? "image embeddings are garbage (~0% on image tasks) while text looks fine"
                                       : "garbage output";
      f.hint = convert_cmd(dir_, p_.id) + " (writes an exclusion this runtime honours)";
      f.evidence = "fp8-checkpoint-formats.md §2.7 [I]; field-bug-classes.md F05, F12, F13, F14";
      out_.push_back(f);
    }
    // KV scales
    if (!dropped_kv_.empty()) {
      Finding f = make(Severity::kWarning, "kv_scales_dropped", dropped_kv_.front(),
                       fmt::format("{} KV-cache scale tensors are not bound by {} (first: {}): an FP8 KV cache then "
                                   "runs with scale 1.0 in every layer",
                                   dropped_kv_.size(), p_.id, dropped_kv_.front()));
      f.risk = "FP8 KV cache with unit scales: accuracy loss, no error";
      f.evidence = p_.kv_scales_bind ? "fp8-checkpoint-formats.md §2.4 (maybe_remap_kv_scale_name)"
                                     : "field-bug-classes.md F01, F02";
      if (p_.kv_scales_bind) f.hint = convert_cmd(dir_, p_.id) + " (renames KV scales to the spelling it binds)";
      else f.hint = "no spelling binds in this runtime version; use --kv-cache-dtype auto, or a runtime with the fix";
      out_.push_back(f);
    }
    if (!skipped_known_.empty())
      out_.push_back(make(Severity::kInfo, "tensors_skipped", skipped_known_.front(),
                          fmt::format("{} tensors have no parameter in {} and are skipped (first: {})",
                                      skipped_known_.size(), p_.id, skipped_known_.front())));
    if (!skipped_unknown_.empty()) {
      Finding f = make(Severity::kWarning, "not_analysed", skipped_unknown_.front(),
                       fmt::format("{} tensors have no parameter in {}'s model as vlq knows it, and what the runtime "
                                   "does with them is not documented (first: {})",
                                   skipped_unknown_.size(), p_.id, skipped_unknown_.front()));
      out_.push_back(f);
    }
    Finding kvf = make(Severity::kInfo, "kv_cache", "", fmt::format("{}: KV cache {}{}", p_.id, kv_cache,
                                                                    bound_kv_.empty() ? "" : fmt::format("; {} KV scales bound", bound_kv_.size())));
    out_.push_back(kvf);
  }
};

// TensorRT-LLM 1.2.0rc0: the ViT attention is built FP8 whatever the exclusions say (F06).
void run_trtllm(const CheckpointView& v, const QuantLayout& L, const RuntimeProfile& p, const std::string& dir,
                std::vector<Finding>& out, std::vector<Gemm>& gemms, std::string& kv_cache) {
  RtConfig cfg = read_config(L, p);
  out.push_back(make(Severity::kInfo, "config_read", cfg.read ? cfg.read->file : "",
                     fmt::format("{} reads {}", p.id, cfg.describe)));
  if (cfg.format == QuantFormat::kNone) return;
  if (cfg.format != QuantFormat::kModelOpt) {
    Finding f = make(Severity::kWarning, "not_analysed", cfg.read->file, p.config.unsupported_error);
    out.push_back(f);
    return;
  }
  if (cfg.read->kv_cache_quant_algo && *cfg.read->kv_cache_quant_algo != "FP8") {
    Finding f = make(Severity::kError, "kv_algo_unsupported", cfg.read->file,
                     fmt::format("kv_cache_quant_algo '{}': only FP8 is accepted for pre-quantized checkpoints",
                                 *cfg.read->kv_cache_quant_algo));
    f.runtime_error = "ValueError: only kv_cache_quant_algo=FP8 is supported for pre-quantized checkpoints";
    f.evidence = "field-bug-classes.md F16 (TensorRT-LLM PR #3167)";
    out.push_back(f);
    return;
  }
  kv_cache = cfg.kv_fp8 ? "fp8 (declared by hf_quant_config.json)" : "model dtype";
  std::vector<std::string> missing;
  std::string first_subject;
  bool vision_fp8 = false;
  for (const auto& m : L.linears) {
    if (m.tower != Tower::kVision) {
      if (m.tensors.quantized()) gemms.push_back({m.name, m.name, m.weight_shape[0], m.weight_shape[1]});
      continue;
    }
    const std::string_view leaf = leaf_of(m.name);
    std::string rt_leaf;
    for (const auto& rn : trtllm_vision_attention_renames())
      if (leaf == rn.from) rt_leaf = rn.to;
    if (rt_leaf.empty() || leaf_of(module_of(m.name)) != "attn") continue;  // F06 names the attention Linears only
    if (!in_subtree(m.canonical, kCanonicalVisionRoot)) continue;
    std::string rt = qwen_vl_canonical_to_legacy().apply(module_of(m.canonical)) + "." + rt_leaf;
    if (m.tensors.quantized()) {
      gemms.push_back({m.name, rt, m.weight_shape[0], m.weight_shape[1]});
      vision_fp8 = true;
      continue;
    }
    if (first_subject.empty()) first_subject = m.name;
    missing.push_back("\"" + rt + ".weight_scale\"");
    missing.push_back("\"" + rt + ".input_scale\"");
  }
  if (!missing.empty()) {
    std::string list;
    for (std::size_t i = 0; i < missing.size() && i < 4; ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 4) list += ", ...";
    Finding f = make(Severity::kError, "runtime_missing_keys", first_subject,
                     fmt::format("{} builds the vision attention Linears as FP8 although the checkpoint's ViT is BF16 "
                                 "(and excluded); {} checkpoint scale keys are reported missing (runtime-derived "
                                 "buffers such as inv_input_scale are not checkpoint keys)",
                                 p.id, missing.size()));
    f.runtime_error = "RuntimeError: Error(s) in loading state_dict for Qwen2VisionModelBase: Missing key(s) in "
                      "state_dict: " + list;
    f.hint = "upgrade TensorRT-LLM past PR #8680 (vision weight loading reworked)";
    f.evidence = "field-bug-classes.md F06";
    out.push_back(f);
  }
  if (vision_fp8 && missing.empty())
    out.push_back(make(Severity::kWarning, "not_analysed", "",
                       "FP8 vision Linears with scales: TensorRT-LLM's handling is not documented in vlq's sources [U]"));
  bool vkv = std::any_of(L.kv_scales.begin(), L.kv_scales.end(), [](const auto& k) { return k.tower == Tower::kVision; });
  if (vkv && missing.empty())
    out.push_back(make(Severity::kWarning, "not_analysed", "",
                       "vision K/V scale tensors: TensorRT-LLM's handling is not documented in vlq's sources [U]"));
  (void)v;
  (void)dir;
}

// vlq's own loader: tensors are the truth.
void run_native(const QuantLayout& L, const RuntimeProfile& p, std::vector<Finding>& out, std::vector<Gemm>& gemms,
                std::string& kv_cache) {
  const QuantDeclaration* d = L.declared.primary();
  if (!d && L.any_scales()) {
    std::string first;
    for (const auto& l : L.linears) {
      if (l.weight_scale) first = first.empty() || l.weight_scale->name < first ? l.weight_scale->name : first;
      if (l.input_scale) first = first.empty() || l.input_scale->name < first ? l.input_scale->name : first;
    }
    for (const auto& k : L.kv_scales) first = first.empty() || k.name < first ? k.name : first;
    Finding f = make(Severity::kError, "no_quant_config", first,
                     "scale tensors are present but there is no quantization config: vlq refuses to guess the "
                     "scheme");
    f.runtime_error = fmt::format("vlq: error: {}: scale tensor without a quantization config", first);
    f.hint = "add hf_quant_config.json / quantization_config (vlq convert writes them)";
    f.evidence = "field-bug-classes.md F15";
    out.push_back(f);
    return;
  }
  if (d && d->format == QuantFormat::kOther) {
    Finding f = make(Severity::kError, "format_unsupported", d->file,
                     fmt::format("quant_method '{}' is not supported by vlq", d->quant_method));
    f.runtime_error = fmt::format("vlq: error: {}: quant_method '{}' not supported yet", d->file, d->quant_method);
    out.push_back(f);
    return;
  }
  for (const auto& m : L.linears)
    if (m.tensors.quantized()) gemms.push_back({m.name, m.name, m.weight_shape[0], m.weight_shape[1]});
  bool kv_decl = (L.declared.config_json && L.declared.config_json->declares_fp8_kv()) ||
                 (L.declared.hf_quant_config && L.declared.hf_quant_config->declares_fp8_kv());
  kv_cache = kv_decl ? "fp8 with the checkpoint's scales (every spelling is read)" : "model dtype";
  out.push_back(make(Severity::kInfo, "kv_cache", "", fmt::format("{}: KV cache {}", p.id, kv_cache)));
}

void order_findings(std::vector<Finding>& f) {
  std::stable_sort(f.begin(), f.end(), [](const Finding& a, const Finding& b) { return a.severity > b.severity; });
}

}  // namespace

Report check_view(const CheckpointView& view, const RuntimeProfile& target, const CheckOptions& opts) {
  Report r;
  r.checkpoint = view.dir().string();
  r.target = target.id;
  r.target_title = target.title;
  QuantLayout L = build_quant_layout(view);
  std::vector<Finding> F = L.findings;
  const std::string dir = view.dir().string();

  // Audits every target runs.
  audit_naming(L, F);
  audit_kv_values(view, L, F);
  audit_vision(L, dir, F);
  audit_fused_scales(view, L, F);
  audit_tokens(view.dir(), opts, F);

  // The target's loader model.
  std::vector<Gemm> gemms;
  std::string kv_cache;
  std::string config_read;
  // The loader models describe the Qwen2-VL / Qwen2.5-VL model classes of each runtime.
  std::string arch;
  if (view.config() && view.config()->is_object() && view.config()->contains("architectures") &&
      (*view.config())["architectures"].is_array())
    for (const auto& a : (*view.config())["architectures"])
      if (a.is_string()) arch += (arch.empty() ? "" : ", ") + a.get<std::string>();
  const bool qwen_vl = arch.empty() || arch.find("Qwen2_5_VL") != std::string::npos ||
                       arch.find("Qwen2VL") != std::string::npos;
  if (!qwen_vl && target.kind != LoaderKind::kNative) {
    Finding f = make(Severity::kWarning, "not_analysed", "config.json",
                     fmt::format("architecture {}: the {} profile models the Qwen2-VL / Qwen2.5-VL loader only; "
                                 "only the target-independent audits ran",
                                 arch, target.id));
    F.push_back(f);
  } else if (target.kind == LoaderKind::kVllmFamily) {
    Simulator sim(view, L, target, dir, F);
    sim.run();
    gemms = sim.gemms;
    kv_cache = sim.kv_cache;
    config_read = sim.cfg.describe;
  } else if (target.kind == LoaderKind::kTrtllm) {
    run_trtllm(view, L, target, dir, F, gemms, kv_cache);
    config_read = read_config(L, target).describe;
  } else {
    run_native(L, target, F, gemms, kv_cache);
    const QuantDeclaration* d = L.declared.primary();
    config_read = d ? fmt::format("{} ({}) and the tensors", d->file, quant_format_name(d->format)) : "the tensors";
  }
  audit_alignment(target, gemms, dir, F);

  order_findings(F);
  r.findings = std::move(F);
  r.verdict = verdict_of(r.findings);
  r.summary.format = std::string(quant_format_name(L.declared.format()));
  r.summary.naming = std::string(naming_generation_name(L.naming));
  if (L.declared.config_json) r.summary.config_files.push_back("config.json quantization_config");
  if (L.declared.hf_quant_config) r.summary.config_files.push_back("hf_quant_config.json");
  r.summary.config_read = config_read;
  r.summary.kv_cache = kv_cache;
  for (const auto& l : L.linears) {
    ++r.summary.linears;
    if (l.tensors.quantized()) {
      ++r.summary.fp8_linears;
      if (l.tower == Tower::kVision) ++r.summary.vision_fp8_linears;
    }
  }
  r.summary.kv_scales = static_cast<int>(L.kv_scales.size());
  return r;
}

Report check_checkpoint(const fs::path& dir, std::string_view target, const CheckOptions& opts) {
  const RuntimeProfile& p = find_profile(target);
  try {
    CheckpointView v = CheckpointView::open(dir);
    Report r = check_view(v, p, opts);
    if (!v.config()) {
      // No runtime loads a model folder without config.json (transformers, vLLM, SGLang, TRT-LLM all
      // start from it), whatever the tensors say.
      const fs::path folder = fs::is_directory(dir) ? dir : dir.parent_path();
      Finding f = make(Severity::kInvalid, "no_config", (folder / "config.json").string(),
                       "the checkpoint has no config.json: no runtime can build the model");
      f.hint = "copy config.json from the model this checkpoint was made from";
      r.findings.insert(r.findings.begin(), f);
      r.verdict = verdict_of(r.findings);
    }
    return r;
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    Report r;
    r.checkpoint = dir.string();
    r.target = p.id;
    r.target_title = p.title;
    ErrorInfo msg = e.info();
    msg.where.clear();  // the subject already names it
    msg.hint.clear();   // kept in f.hint
    Finding f = make(Severity::kInvalid, "unreadable", e.info().where, format_error_message(msg));
    f.hint = e.info().hint;
    r.findings.push_back(f);
    r.verdict = Verdict::kInvalid;
    return r;
  }
}

// ---- rendering -----------------------------------------------------------------------------------

json report_to_json(const Report& r) {
  json j;
  j["schema"] = "vlq.check/1";
  j["checkpoint"] = r.checkpoint;
  j["target"] = {{"id", r.target}, {"title", r.target_title}};
  j["verdict"] = std::string(verdict_name(r.verdict));
  j["exit_code"] = verdict_exit_code(r.verdict);
  j["layout"] = {{"format", r.summary.format},
                 {"naming", r.summary.naming},
                 {"config_files", r.summary.config_files},
                 {"config_read", r.summary.config_read},
                 {"kv_cache", r.summary.kv_cache},
                 {"linears", r.summary.linears},
                 {"fp8_linears", r.summary.fp8_linears},
                 {"vision_fp8_linears", r.summary.vision_fp8_linears},
                 {"kv_scales", r.summary.kv_scales}};
  json fs = json::array();
  for (const auto& f : r.findings) {
    json x = {{"severity", std::string(severity_name(f.severity))}, {"code", f.code}, {"subject", f.subject},
              {"message", f.message}};
    if (!f.runtime_error.empty()) x["runtime_error"] = f.runtime_error;
    if (!f.risk.empty()) x["risk"] = f.risk;
    if (!f.hint.empty()) x["hint"] = f.hint;
    if (!f.evidence.empty()) x["evidence"] = f.evidence;
    fs.push_back(std::move(x));
  }
  j["findings"] = std::move(fs);
  return j;
}

std::string report_to_text(const Report& r) {
  std::string s = fmt::format("{} on {} ({}): {}\n", r.checkpoint, r.target, r.target_title, verdict_name(r.verdict));
  if (!r.summary.format.empty())  // empty when the checkpoint could not be read
    s += fmt::format("  layout: {} FP8, {}; {} Linears, {} FP8 ({} vision), {} KV scales\n", r.summary.format,
                     r.summary.naming, r.summary.linears, r.summary.fp8_linears, r.summary.vision_fp8_linears,
                     r.summary.kv_scales);
  if (!r.summary.config_read.empty()) s += "  reads: " + r.summary.config_read + "\n";
  if (!r.summary.kv_cache.empty()) s += "  KV cache: " + r.summary.kv_cache + "\n";
  for (const auto& f : r.findings) {
    s += fmt::format("  [{}] {}{}: {}\n", severity_name(f.severity), f.code, f.subject.empty() ? "" : " " + f.subject,
                     f.message);
    if (!f.runtime_error.empty()) s += "      runtime error: " + f.runtime_error + "\n";
    if (!f.risk.empty()) s += "      risk: " + f.risk + "\n";
    if (!f.hint.empty()) s += "      fix: " + f.hint + "\n";
  }
  return s;
}

std::string compatibility_matrix_markdown(const std::vector<fs::path>& dirs, const std::vector<std::string>& targets,
                                          const CheckOptions& opts) {
  std::string s = "| checkpoint | layout |";
  for (const auto& t : targets) s += " " + t + " |";
  s += "\n|---|---|";
  for (std::size_t i = 0; i < targets.size(); ++i) s += "---|";
  s += "\n";
  auto cell = [](const Report& r) {
    std::string c = std::string(verdict_name(r.verdict));
    const Finding* f = r.first_failure();
    if (!f)
      for (const auto& x : r.findings)
        if (x.severity == Severity::kWarning) {
          f = &x;
          break;
        }
    if (f) {
      std::string detail = !f->runtime_error.empty() ? f->runtime_error : f->code;
      if (detail.size() > 90) detail = detail.substr(0, 87) + "...";
      for (auto& ch : detail)
        if (ch == '|') ch = '/';
      c += ": `" + detail + "`";
    }
    return c;
  };
  for (const auto& d : dirs) {
    std::string layout;
    std::vector<Report> reps;
    for (const auto& t : targets) reps.push_back(check_checkpoint(d, t, opts));
    if (!reps.empty()) {
      const auto& sm = reps.front().summary;
      layout = fmt::format("{}; {} FP8 Linears ({} vision); {} KV scales", sm.format, sm.fp8_linears,
                           sm.vision_fp8_linears, sm.kv_scales);
    }
    s += "| " + d.filename().string() + (d.filename().empty() ? d.parent_path().filename().string() : "") + " | " +
         layout + " |";
    for (const auto& r : reps) s += " " + cell(r) + " |";
    s += "\n";
  }
  return s;
}

}  // namespace vlq::formats
