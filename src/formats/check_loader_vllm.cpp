// The vLLM-family loader simulation of `vlq check` (vllm-0.10, vllm-latest, sglang, vllm-ascend): the
// runtime modules a profile builds, their quantization, the parameters, then every checkpoint tensor
// through the profile's weight loader (fp8-checkpoint-formats.md §2).
#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "check_internal.h"

namespace vlq::formats::check_detail {

namespace {

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
    Finding info = make_finding(Severity::kInfo, "config_read", cfg.read ? cfg.read->file : "",
                        fmt::format("{} reads {}", p_.id, cfg.describe));
    info.evidence = "fp8-checkpoint-formats.md §2.1, §2.2";
    out_.push_back(info);
    if (cfg.format == QuantFormat::kNone) return true;
    bool supported = (cfg.format == QuantFormat::kModelOpt && p_.config.supports_modelopt) ||
                     (cfg.format == QuantFormat::kCompressedTensors && p_.config.supports_compressed_tensors);
    if (cfg.format == QuantFormat::kOther) {
      Finding f = make_finding(Severity::kWarning, "not_analysed", cfg.read->file,
                       fmt::format("quant_method '{}' is not modelled by vlq check", cfg.read->quant_method));
      out_.push_back(f);
      return false;
    }
    if (!supported) {
      Finding f = make_finding(Severity::kError, "format_unsupported", cfg.read->file,
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
      Finding f = make_finding(Severity::kError, "quant_algo_unsupported", cfg.read->file,
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
      Finding f = make_finding(Severity::kInfo, "exclusions_not_read", cfg.read->file,
                       fmt::format("{} reads '{}' from config.json, but the file has '{}': every exclusion is lost "
                                   "({} entries)",
                                   p_.id, p_.config.cfgjson_exclude_key, cfg.read->exclude_key, cfg.read->exclude.size()));
      f.evidence = "fp8-checkpoint-formats.md §2.2, §2.7";
      f.hint = convert_cmd(dir_, p_.id) + " (writes the key this runtime reads)";
      out_.push_back(f);
    }
    return true;
  }

  bool vision_name(const std::string& rt, Tower tower) const { return runtime_vision_name(p_, rt, tower); }

  // The name the sub-loader sees (for error texts).
  std::string rel(const std::string& rt, bool vision) const { return runtime_loader_name(p_, rt, vision); }

  std::string excluded(const RtLinear& r, bool& fused_mismatch) const {
    ExclusionResult e = runtime_exclusion(p_, cfg.format, cfg.exclude, r.name);
    fused_mismatch = e.fused_mismatch;
    return e.entry;
  }

  void build_modules() {
    collect_modules();
    for (auto& r : rts_) {
      decide_quantization(r);
      if (fatal_) return;
    }
    add_linear_params();
    add_attention_kv_params();
    predict_gemms_and_kv_cache();
  }

  // The runtime Linears: checkpoint Linears mapped to runtime modules (runtime_module), shards in slot order.
  void collect_modules() {
    std::map<std::string, std::size_t> idx;
    for (const auto& m : L_.linears) {
      RuntimeModule rm = runtime_module(p_, m.name, m.tower);
      auto it = idx.find(rm.name);
      if (it == idx.end()) {
        idx[rm.name] = rts_.size();
        RtLinear r;
        r.name = rm.name;
        r.tower = m.tower;
        rts_.push_back(r);
        it = idx.find(rm.name);
      }
      rts_[it->second].shards.push_back({&m, rm.shard_id});
    }
    // shards in slot order (q, k, v / 0, 1), as the runtime fills them
    auto slot = [](const std::string& id) {
      static const std::vector<std::string> order = {"", "q", "k", "v", "0", "1"};
      return std::find(order.begin(), order.end(), id) - order.begin();
    };
    for (auto& r : rts_)
      std::stable_sort(r.shards.begin(), r.shards.end(),
                       [&](const auto& a, const auto& b) { return slot(a.second) < slot(b.second); });
  }

  // The quantization decision of one runtime module (quantized, scheme, or why not).
  void decide_quantization(RtLinear& r) {
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
        fail(fused_mismatch_finding(r, m0));
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

  // The ValueError of a fused runtime Linear whose shards the exclusions split.
  Finding fused_mismatch_finding(const RtLinear& r, const LinearModule& m0) const {
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
    Finding f = make_finding(Severity::kError, "fused_exclusion_mismatch", m0.name,
                     fmt::format("the exclude list covers some but not all shards of the fused runtime Linear "
                                 "{}; {} requires one precision per fused layer",
                                 r.name, p_.id));
    f.runtime_error = msg;
    f.hint = "exclude all of q/k/v_proj (or gate/up_proj) or none";
    f.evidence = "fp8-checkpoint-formats.md §3.5; field-bug-classes.md F22";
    return f;
  }

  // weight, bias, weight_scale, input_scale of every runtime Linear.
  void add_linear_params() {
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
  }

  // Attention KV parameters (decoder only; the ViT has no runtime Attention layer).
  void add_attention_kv_params() {
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
  }

  // The FP8 GEMMs the runtime will run, and its KV-cache dtype.
  void predict_gemms_and_kv_cache() {
    for (const auto& r : rts_) {
      if (!r.quantized) continue;
      std::int64_t n = 0, k = 0;
      bool stored_fp8 = true;
      for (const auto& s : r.shards) {
        n += s.first->weight_shape[0];
        k = s.first->weight_shape[1];
        stored_fp8 = stored_fp8 && s.first->weight_dtype == DType::F8_E4M3;
      }
      gemms.push_back({r.shards.front().first->name, r.name, n, k, r.tower == Tower::kVision, stored_fp8});
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
      if (!name.ends_with(rule.from)) continue;
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
    Finding f = make_finding(Severity::kError, "runtime_key_error", t.name, "");
    f.runtime_error = fmt::format("KeyError: '{}'", loader_name);
    auto kv = parse_kv_scale_name(t.name);
    std::string why = unquantized_reason(full);
    if (kv && vision) {
      f.message = fmt::format("vision attention K/V scale: the {} vision loader has no parameter '{}' (the ViT has no "
                              "KV-cache Attention layer and its loader does not remap KV scales), so loading aborts",
                              p_.id, loader_name);
      f.hint = convert_cmd(dir_, p_.id) + " " + vision_kv_fix();
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

  // Whether this runtime builds FP8 vision Linears (so `vlq convert --vision keep` is a fix too).
  bool loads_fp8_vision() const {
    if (!p_.vision_gets_quant_config) return false;
    if (cfg.format == QuantFormat::kModelOpt)
      for (const auto& r : rts_)
        for (const auto& s : p_.modelopt_forced_unquantized)
          if (r.tower == Tower::kVision && r.name.find(s) != std::string::npos) return false;
    return true;
  }

  // What the default `vlq convert --for <this target>` does about orphan vision K/V scales, in words.
  std::string vision_kv_fix() const {
    const std::size_t n = vision_fp8_linears(L_).size();
    if (p_.default_vision != "bf16" || n == 0) return "(drops the vision K/V scales)";
    std::string s = fmt::format("(dequantizes the {} FP8 vision Linear{} to BF16 and drops the vision K/V scales", n,
                                n == 1 ? "" : "s");
    if (loads_fp8_vision()) s += "; --vision keep keeps them FP8 and only drops the vision K/V scales";
    return s + ")";
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
      if (fatal_ && more_failures_ > 1000) break;
      load_tensor(*tp);
    }
    if (fatal_index_ != SIZE_MAX && more_failures_ > 0)
      out_[fatal_index_].message += fmt::format(" ({} more tensor{} would also fail)", more_failures_,
                                             more_failures_ == 1 ? "" : "s");
  }

  // The top-level dispatch of one checkpoint tensor: unknown module, dropped KV scale, vision tower,
  // lm_head or decoder.
  void load_tensor(const TensorMeta& t) {
    std::string rt = p_.prefix.apply(t.name);
    auto kv = parse_kv_scale_name(t.name);
    bool linear_part = linear_tensor(t.name);
    Tower tower = tower_of(canonical_name(t.name));
    const std::string top = first_component(rt);
    if (!p_.top_modules.empty() && std::find(p_.top_modules.begin(), p_.top_modules.end(), top) == p_.top_modules.end()) {
      Finding f = make_finding(Severity::kError, "runtime_unknown_module", t.name,
                               fmt::format("{} has no top-level module '{}'", p_.top_class, top));
      f.runtime_error = fmt::format("ValueError: There is no module or parameter named '{}' in {}", rt, p_.top_class);
      fail(f);
      return;
    }
    bool vision = vision_name(rt, tower);
    if (kv && !p_.kv_scales_bind) {
      dropped_kv_.push_back(t.name);
      return;
    }
    if (!linear_part && !kv) return;  // norms, embeddings, conv: assumed present
    if (vision) {
      std::string r = rel(rt, true);
      std::string name = r;
      if (auto s = p_.vision_stacking.apply(r)) name = s->name;
      std::string full = (p_.vision_root.empty() ? "" : p_.vision_root + ".") + name;
      if (!p_.vision_module_renames.rules.empty())
        full = p_.vision_module_renames.apply(std::string(module_of(full))) + "." + std::string(leaf_of(full));
      load_param(t, full, true, name);
      return;
    }
    if (!p_.lm_head.empty() && rt.starts_with(p_.lm_head + ".")) load_lm_head(t, rt);
    else load_decoder_tensor(t, rt);
  }

  static std::string first_component(std::string_view s) {
    auto pos = s.find('.');
    return std::string(pos == std::string_view::npos ? s : s.substr(0, pos));
  }

  // lm_head (AutoWeightsLoader of the causal-LM class).
  void load_lm_head(const TensorMeta& t, const std::string& rt) {
    if (params_.count(rt)) {
      load_param(t, rt, false, rt);
      return;
    }
    std::string parent(module_of(p_.lm_head));
    std::string relname = parent.empty() ? rt : rt.substr(parent.size() + 1);
    Finding f = make_finding(Severity::kError, "runtime_unknown_module", t.name,
                             fmt::format("lm_head is not quantized by {}, so '{}' has no parameter", p_.id, relname));
    f.runtime_error = p_.lm_root.empty() ? fmt::format("KeyError: '{}'", rt)
                                         : fmt::format("ValueError: There is no module or parameter named '{}' in {}",
                                                       relname, p_.lm_class);
    f.hint = "keep lm_head in BF16 (ModelOpt and llm-compressor exclude it by default)";
    fail(f);
  }

  // A decoder tensor: the compressed-tensors output_scale remap, stacking, then the KV-scale remap.
  void load_decoder_tensor(const TensorMeta& t, const std::string& rt) {
    std::string r = rel(rt, false);
    auto full_of = [&](const std::string& x) { return p_.lm_root.empty() ? x : p_.lm_root + "." + x; };
    // compressed-tensors get_cache_scale (old k_proj.output_scale spelling), strict
    if (cfg.format == QuantFormat::kCompressedTensors && p_.ct_output_scale_remap) {
      auto os = parse_kv_scale_name(r);
      if (os && os->spelling->style == KvStyle::kOutputScale && (os->kind == KvKind::kK || os->kind == KvKind::kV)) {
        std::string target = kv_scale_name(os->attention, os->kind, KvStyle::kRuntimeAttn);
        load_param(t, full_of(target), false, target);
        return;
      }
    }
    std::string name = r;
    bool stacked = false;
    if (auto s = p_.lm_stacking.apply(r)) {
      name = s->name;
      stacked = true;
    }
    if (name.ends_with(".bias") && !params_.count(full_of(name))) return;
    if (stacked && !name.ends_with("scale")) {
      load_param(t, full_of(name), false, name);
      return;
    }
    bool is_kv = false;
    auto m = remap_kv(full_of(name), is_kv);
    if (!m) {
      dropped_kv_.push_back(t.name);
      return;
    }
    if (stacked && !is_kv) load_param(t, full_of(name), false, name);
    else load_param(t, *m, false, rel(*m, false));
  }

  void after_load() {
    // Quantized runtime Linears whose checkpoint weight is BF16: cast to FP8, scales never loaded.
    std::map<Tower, std::vector<const RtLinear*>> cast;
    for (const auto& r : rts_)
      if (r.quantized && (r.bf16_weight_loaded || !r.loaded.count("weight_scale"))) cast[r.tower].push_back(&r);
    for (const auto& [tower, list] : cast) {
      const RtLinear& r = *list.front();
      Finding f = make_finding(Severity::kWarning, tower == Tower::kVision ? "vision_fp8_without_scales" : "fp8_without_scales",
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
      Finding f = make_finding(Severity::kWarning, "kv_scales_dropped", dropped_kv_.front(),
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
      out_.push_back(make_finding(Severity::kInfo, "tensors_skipped", skipped_known_.front(),
                          fmt::format("{} tensors have no parameter in {} and are skipped (first: {})",
                                      skipped_known_.size(), p_.id, skipped_known_.front())));
    if (!skipped_unknown_.empty()) {
      Finding f = make_finding(Severity::kWarning, "not_analysed", skipped_unknown_.front(),
                       fmt::format("{} tensors have no parameter in {}'s model as vlq knows it, and what the runtime "
                                   "does with them is not documented (first: {})",
                                   skipped_unknown_.size(), p_.id, skipped_unknown_.front()));
      out_.push_back(f);
    }
    Finding kvf = make_finding(Severity::kInfo, "kv_cache", "", fmt::format("{}: KV cache {}{}", p_.id, kv_cache,
                                                                    bound_kv_.empty() ? "" : fmt::format("; {} KV scales bound", bound_kv_.size())));
    out_.push_back(kvf);
  }
};

}  // namespace

LoaderResult run_vllm(const CheckpointView& v, const QuantLayout& L, const RuntimeProfile& p, const std::string& dir,
                      std::vector<Finding>& out) {
  Simulator sim(v, L, p, dir, out);
  sim.run();
  return {sim.gemms, sim.kv_cache, sim.cfg.describe};
}

}  // namespace vlq::formats::check_detail
