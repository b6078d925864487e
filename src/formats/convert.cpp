// `vlq convert`: streams a checkpoint into the layout a target runtime loads correctly (see
// include/vlq/formats/convert.h). Plan from headers → check the planned output in memory → stream the
// tensors (dequantizing FP8 vision Linears on the way) → check the written files → rename into place.
#include "vlq/formats/convert.h"
#include "vlq/formats/export_stream.h"
#include "vlq/formats/patterns.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "vlq/core/error.h"
#include "vlq/core/numerics.h"
#include "vlq/io/safetensors.h"
#include "vlq/io/safetensors_writer.h"

namespace vlq::formats {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// How one output tensor is produced.
struct Planned {
  io::TensorSpec spec;
  enum Kind { kCopy, kDequantize } kind = kCopy;
  std::string src;                      // input tensor name
  const LinearModule* linear = nullptr;  // kDequantize: the Linear (scale names)
  std::optional<double> scalar;          // kCopy of a 1-element scale: its value (for the pre-check)
};

// Decodes a float tensor (F32/BF16/F16/F64) into f32 values.
std::vector<float> read_floats(const io::Checkpoint& ck, const std::string& name) {
  const io::TensorInfo& info = ck.info(name);
  auto bytes = ck.data(name);
  const std::size_t n = static_cast<std::size_t>(info.numel());
  std::vector<float> out(n);
  switch (info.dtype) {
    case DType::F32:
    case DType::F64:
    case DType::BF16:
    case DType::F16: decode_to_f32(info.dtype, bytes, out); break;
    default:
      throw UnsupportedError({name, "scale tensor has a dtype vlq cannot read as a scale", "F32, BF16, F16 or F64",
                              std::string(dtype_name(info.dtype)), "re-export the checkpoint with float scales"});
  }
  return out;
}

// E4M3 weight [N, K] x weight_scale → BF16 [N, K], written in row chunks (memory: one tensor).
std::vector<std::byte> dequantize_weight(const io::Checkpoint& ck, const LinearModule& m) {
  const std::string wname = m.name + ".weight";
  const io::TensorInfo& w = ck.info(wname);
  if (w.dtype != DType::F8_E4M3)
    throw UnsupportedError({wname, "only E4M3 vision weights can be dequantized", "F8_E4M3",
                            std::string(dtype_name(w.dtype)), "convert with --vision keep"});
  if (w.shape.size() != 2)
    throw UnsupportedError({wname, "weight of a Linear must be 2-D", "[N, K]", fmt::format("{} dims", w.shape.size()), ""});
  if (!m.weight_scale)
    throw FormatError({wname, "FP8 weight without weight_scale", m.name + ".weight_scale", "nothing",
                       "the checkpoint is incomplete; re-export it"});
  const std::int64_t N = w.shape[0], K = w.shape[1];
  std::vector<float> s = read_floats(ck, m.weight_scale->name);
  // Scale layouts: per-tensor ([] / [1]), per-channel ([N] / [N,1]), block grid [ceil(N/bn), ceil(K/bk)].
  std::int64_t grid_n = 1, grid_k = 1, bn = N, bk = K;
  const auto& ss = m.weight_scale->shape;
  if (s.size() == 1) {
  } else if (static_cast<std::int64_t>(s.size()) == N && (ss.size() == 1 || (ss.size() == 2 && ss[1] == 1))) {
    grid_n = N, bn = 1;
  } else if (ss.size() == 2 && m.tensors.weight == WeightQuant::kBlock && m.tensors.block_n > 0 && m.tensors.block_k > 0) {
    bn = m.tensors.block_n, bk = m.tensors.block_k;
    grid_n = (N + bn - 1) / bn, grid_k = (K + bk - 1) / bk;
    if (ss[0] != grid_n || ss[1] != grid_k)
      throw FormatError({m.weight_scale->name, "block scale grid does not match the weight",
                         fmt::format("[{}, {}]", grid_n, grid_k), fmt::format("[{}, {}]", ss[0], ss[1]), ""});
  } else {
    throw UnsupportedError({m.weight_scale->name, "weight_scale shape vlq cannot dequantize", "[], [1], [N], [N,1] or a block grid",
                            fmt::format("{} values", s.size()), "convert with --vision keep"});
  }
  auto q = ck.data(wname);
  std::vector<std::byte> out(static_cast<std::size_t>(N * K) * 2);
  for (std::int64_t r = 0; r < N; ++r) {
    for (std::int64_t c = 0; c < K; ++c) {
      const std::size_t i = static_cast<std::size_t>(r * K + c);
      const float scale = s[static_cast<std::size_t>((r / bn) * grid_k + (c / bk))];
      const float v = e4m3fn_to_f32(static_cast<std::uint8_t>(q[i])) * scale;
      const std::uint16_t b = f32_to_bf16(v);
      std::memcpy(out.data() + i * 2, &b, 2);
    }
  }
  (void)grid_n;
  return out;
}

bool is_scale_leaf(std::string_view leaf) {
  return leaf == "weight_scale" || leaf == "input_scale" || leaf == "weight_zero_point" || leaf == "input_zero_point" ||
         leaf == "weight_scale_inv" || leaf == "output_scale" || leaf == "weight_g_idx";
}

void add_unique(std::vector<std::string>& list, const std::string& e) {
  if (std::find(list.begin(), list.end(), e) == list.end()) list.push_back(e);
}

// The vision root in the checkpoint's own naming ("visual" or "model.visual").
std::string vision_root(const QuantLayout& L) {
  for (const auto& m : L.linears)
    if (m.tower == Tower::kVision) {
      if (m.name.rfind("model.visual.", 0) == 0) return "model.visual";
      if (m.name.rfind("visual.", 0) == 0) return "visual";
    }
  return L.naming == NamingGeneration::kTransformers452 ? "model.visual" : "visual";
}

// Everything convert decided before writing: the output tensors and the exclusions.
struct ConvertPlan {
  std::vector<Planned> tensors;
  std::size_t lm_kv = 0;                                  // language-model K/V scale tensors written
  std::map<std::string, const LinearModule*> vision_fp8;  // FP8 vision Linears of the input
};

// The output tensors: vision K/V scales dropped, LM K/V scales renamed to the target's spelling, FP8 vision
// Linears dequantized (vision_bf16) with their scales dropped; everything else copied.
ConvertPlan plan_tensors(const CheckpointView& view, const QuantLayout& L, KvStyle kv_style, bool vision_bf16,
                         ConvertResult& res) {
  ConvertPlan P;
  for (const auto& m : L.linears)
    if (m.tower == Tower::kVision && m.tensors.quantized()) P.vision_fp8[m.name] = &m;
  std::set<std::string> planned_names;
  auto add = [&](Planned p) {
    if (!planned_names.insert(p.spec.name).second) {
      res.actions.push_back(fmt::format("dropped {}: a scale of the same attention layer is already written as {}", p.src,
                                        p.spec.name));
      return;
    }
    if (p.kind == Planned::kCopy) p.scalar = view.scalar(p.src);
    P.tensors.push_back(std::move(p));
  };
  for (const auto& t : view.tensors()) {
    ++res.tensors_in;
    if (auto kv = parse_kv_scale_name(t.name)) {
      if (tower_of(canonical_name(kv->attention)) == Tower::kVision) {
        res.actions.push_back(fmt::format("dropped {}: vision attention K/V scale (no runtime has a parameter for it)", t.name));
        continue;
      }
      std::vector<KvKind> kinds;
      if (kv->kind == KvKind::kKV) kinds = {KvKind::kK, KvKind::kV};
      else if (kv->kind == KvKind::kK || kv->kind == KvKind::kV) kinds = {kv->kind};
      if (kinds.empty()) {  // q / prob scales: keep as they are
        add({{t.name, t.dtype, t.shape}, Planned::kCopy, t.name, nullptr});
        continue;
      }
      for (KvKind k : kinds) {
        std::string name = kv_scale_name(kv->attention, k, kv_style);
        if (name != t.name) res.actions.push_back(fmt::format("renamed {} -> {}", t.name, name));
        add({{name, t.dtype, t.shape}, Planned::kCopy, t.name, nullptr});
        ++P.lm_kv;
      }
      continue;
    }
    const std::string module(module_of(t.name));
    const std::string_view leaf = leaf_of(t.name);
    auto it = vision_bf16 ? P.vision_fp8.find(module) : P.vision_fp8.end();
    if (it != P.vision_fp8.end() && leaf == "weight") {
      res.actions.push_back(fmt::format("dequantized {} ({} -> BF16)", t.name, dtype_name(t.dtype)));
      add({{t.name, DType::BF16, t.shape}, Planned::kDequantize, t.name, it->second});
      continue;
    }
    if (it != P.vision_fp8.end() && is_scale_leaf(leaf)) {
      res.actions.push_back(fmt::format("dropped {}: the vision Linear is BF16 now", t.name));
      continue;
    }
    add({{t.name, t.dtype, t.shape}, Planned::kCopy, t.name, nullptr});
  }
  return P;
}

// Whether ModelOpt exclusion entry `e` covers module `m` as the producer tools read it (exact or fnmatch), or
// names one of its parents.
bool producer_entry_covers(const std::string& e, const std::string& m) {
  static const MatchPolicy producer = [] {
    MatchPolicy p;
    p.plain_entries = {MatchMode::kExact, MatchMode::kFnmatch};
    p.regex_entries = MatchMode::kExact;
    return p;
  }();
  return first_match({e}, m, producer) == 0 || in_subtree(m, e);
}

// ModelOpt: entries of the input's exclusions that match no module of the checkpoint are dropped (e.g.
// ModelOpt <= 0.37's "model.layers.visual*"): a runtime that honours them excludes nothing.
std::vector<std::string> drop_stale_exclusions(const CheckpointView& view, const std::vector<std::string>& exclude,
                                               ConvertResult& res) {
  std::set<std::string> modules;
  for (const auto& t : view.tensors()) {
    const std::string m(module_of(t.name));
    modules.insert(m);
    modules.insert(canonical_name(m));
  }
  std::vector<std::string> kept;
  for (const auto& e : exclude) {
    bool hit = e == "lm_head";
    for (const auto& m : modules) {
      if (hit) break;
      hit = producer_entry_covers(e, m);
    }
    if (hit) kept.push_back(e);
    else res.actions.push_back(fmt::format("dropped exclude entry '{}': it matches no module of the checkpoint", e));
  }
  return kept;
}

// The exclusions of the output: the input's (ModelOpt: stale entries dropped), plus the vision tower in the
// form the target honours when it is BF16 now, plus lm_head (ModelOpt). The action line lists each entry
// once and says why an entry that a wildcard entry already covers is there (the target's loader does not
// expand wildcards, e.g. vLLM 0.10 matches ModelOpt exclusions as substrings, so it needs "visual" while
// wildcard-matching runtimes need "visual*").
std::vector<std::string> plan_exclusions(const CheckpointView& view, const QuantLayout& L, QuantFormat format,
                                         const RuntimeProfile& prof, bool vision_now_bf16, ConvertResult& res) {
  const QuantDeclaration* primary = L.declared.primary();
  std::vector<std::string> exclude = primary ? primary->exclude : std::vector<std::string>{};
  if (format == QuantFormat::kModelOpt) exclude = drop_stale_exclusions(view, exclude, res);
  std::vector<std::string> for_target;  // entries added only for this target's matcher
  if (vision_now_bf16) {
    const std::string root = vision_root(L);
    if (format == QuantFormat::kModelOpt) {
      add_unique(exclude, root + "*");
    } else {
      for (const auto& m : L.linears)
        if (m.tower == Tower::kVision) add_unique(exclude, m.name);
    }
    for (const auto& e : prof.vision_exclude_extra) {
      if (std::find(exclude.begin(), exclude.end(), e) != exclude.end()) continue;
      exclude.push_back(e);
      for_target.push_back(e);
    }
  }
  if (format == QuantFormat::kModelOpt) add_unique(exclude, "lm_head");
  if (format == QuantFormat::kModelOpt) {
    // Every Linear that is not FP8 must stay excluded: entries dropped as stale above (ModelOpt <= 0.37's fake
    // "model.layers." prefix) may have been the only ones naming it. Such a Linear gets its own entry.
    for (const auto& m : L.linears) {
      if (m.weight_dtype == DType::F8_E4M3 || m.tower == Tower::kHead) continue;
      const bool covered = std::any_of(exclude.begin(), exclude.end(), [&](const std::string& e) {
        return producer_entry_covers(e, m.name) || producer_entry_covers(e, m.canonical);
      });
      if (!covered) add_unique(exclude, m.name);
    }
  }
  const auto& modes = (format == QuantFormat::kModelOpt ? prof.modelopt_exclusion : prof.ct_exclusion).policy.plain_entries;
  const bool substring = std::find(modes.begin(), modes.end(), MatchMode::kSubstring) != modes.end();
  const bool expands = std::find(modes.begin(), modes.end(), MatchMode::kFnmatch) != modes.end();
  if (format == QuantFormat::kModelOpt && substring && !expands) {
    // A target that reads entries as substrings and does not expand wildcards (vLLM 0.10) skips no module for
    // "visual.blocks.0.mlp*" (ModelOpt's summary of a kept MLP: the vision MLPs of width 3420 that quantize keeps
    // BF16): the entry's stem "visual.blocks.0.mlp" covers the fused gate_up_proj and down_proj it builds. Added
    // only when no FP8 Linear's name contains the stem, so nothing quantized is built BF16 by it.
    const std::vector<std::string> entries = exclude;
    for (const auto& w : entries) {
      if (w.size() < 2 || w.back() != '*' || w[w.size() - 2] == '.') continue;
      const std::string stem = w.substr(0, w.size() - 1);
      if (has_wildcard(stem) || is_regex_entry(stem)) continue;
      if (std::find(exclude.begin(), exclude.end(), stem) != exclude.end()) continue;
      const bool hits_fp8 = std::any_of(L.linears.begin(), L.linears.end(), [&](const LinearModule& m) {
        return m.weight_dtype == DType::F8_E4M3 &&
               (m.name.find(stem) != std::string::npos || m.canonical.find(stem) != std::string::npos);
      });
      if (hits_fp8) continue;
      exclude.push_back(stem);
      for_target.push_back(stem);
    }
    // Kept (non-FP8) Linears the target would still build FP8, e.g. a kept q/k/v group: its qkv_proj contains
    // none of the shard entries. Named by the fused module in checkpoint naming ("model.layers.0.self_attn.qkv_proj")
    // when the target's matcher then skips it, else by the runtime name; never when the entry would also cover
    // an FP8 Linear.
    std::vector<std::string> fp8_rt;
    for (const auto& m : L.linears)
      if (m.weight_dtype == DType::F8_E4M3) fp8_rt.push_back(runtime_module(prof, m.name, m.tower).name);
    for (const auto& m : L.linears) {
      if (m.tower == Tower::kHead || m.weight_dtype == DType::F8_E4M3) continue;
      const std::string rt = runtime_module(prof, m.name, m.tower).name;
      if (!runtime_exclusion(prof, format, exclude, rt).entry.empty()) continue;
      std::string e = std::string(module_of(m.name)) + "." + std::string(leaf_of(rt));
      if (runtime_exclusion(prof, format, {e}, rt).entry.empty()) e = rt;
      const bool hits_fp8 = std::any_of(fp8_rt.begin(), fp8_rt.end(), [&](const std::string& f) { return f.find(e) != std::string::npos; });
      if (hits_fp8 || runtime_exclusion(prof, format, {e}, rt).entry.empty()) continue;
      exclude.push_back(e);
      for_target.push_back(e);
    }
  }
  if (primary && exclude != primary->exclude) {
    std::string why;
    std::vector<std::string> stems, fused;
    for (const auto& e : for_target) {
      if (!qwen2_lm_fusion().shards_of(e).empty()) fused.push_back("'" + e + "'");
      else stems.push_back("'" + e + "'");
    }
    if (!stems.empty())
      why += fmt::format("; {} {} for {}, which {}does not expand the wildcards of the '*' entries (kept for the "
                         "runtimes that do)", fmt::join(stems, ", "), stems.size() == 1 ? "is" : "are", prof.id,
                         substring ? "matches exclusion entries as substrings and " : "");
    if (!fused.empty())
      why += fmt::format("; {} {} the fused Linear{} {} builds from kept shards (its matcher does not see the shard "
                         "entries)", fmt::join(fused, ", "), fused.size() == 1 ? "names" : "name",
                         fused.size() == 1 ? "" : "s", prof.id);
    res.actions.push_back(fmt::format("exclusions set to [{}]{}", fmt::join(exclude, ", "), why));
  }
  return exclude;
}

// Both config files from one declaration (ModelOpt), or the compressed-tensors ignore list.
void write_declaration(const CheckpointView& view, const QuantLayout& L, QuantFormat format, const RuntimeProfile& prof,
                       const std::vector<std::string>& exclude, std::size_t lm_kv, std::optional<json>& config,
                       std::optional<json>& hfq, ConvertResult& res) {
  config = view.config() ? *view.config() : json::object();
  if (format != QuantFormat::kModelOpt) {
    (*config)["quantization_config"]["ignore"] = exclude;
    return;
  }
  const QuantDeclaration* primary = L.declared.primary();
  const json kv_scheme = {{"dynamic", false}, {"num_bits", 8}, {"type", "float"}};
  const bool kv_fp8 = lm_kv > 0 || (primary && primary->declares_fp8_kv());
  const std::string algo = primary && !primary->quant_algo.empty() ? primary->quant_algo : "FP8";
  json producer = {{"name", "modelopt"}, {"version", primary && !primary->producer_version.empty() ? primary->producer_version : "unknown"}};
  if (view.hf_quant_config() && view.hf_quant_config()->contains("producer")) producer = (*view.hf_quant_config())["producer"];
  hfq = json{{"producer", producer},
             {"quantization", {{"quant_algo", algo}, {"kv_cache_quant_algo", kv_fp8 ? json("FP8") : json(nullptr)},
                               {"exclude_modules", exclude}}}};
  json qc = config->contains("quantization_config") && (*config)["quantization_config"].is_object()
                ? (*config)["quantization_config"] : json::object();
  qc["quant_method"] = "modelopt";
  qc["quant_algo"] = algo;
  if (!qc.contains("config_groups"))
    qc["config_groups"] = {{"group_0", {{"weights", kv_scheme}, {"input_activations", kv_scheme}, {"targets", {"Linear"}}}}};
  qc["ignore"] = exclude;
  if (kv_fp8) qc["kv_cache_scheme"] = kv_scheme; else qc.erase("kv_cache_scheme");
  qc["producer"] = producer;
  if (prof.write_cfgjson_exclude_modules) {
    qc["exclude_modules"] = exclude;
    qc["kv_cache_quant_algo"] = kv_fp8 ? json("FP8") : json(nullptr);
  } else {
    qc.erase("exclude_modules");
    qc.erase("kv_cache_quant_algo");
  }
  (*config)["quantization_config"] = qc;
  res.actions.push_back("wrote hf_quant_config.json and config.json quantization_config from one declaration");
}

// Reads and validates the input: a ModelOpt or compressed-tensors checkpoint with config.json.
QuantLayout open_input(const fs::path& in, const CheckpointView& view) {
  if (!view.config())
    throw FormatError({(fs::is_directory(in) ? in : in.parent_path()).string() + "/config.json", "the input checkpoint has no config.json",
                       "config.json", "nothing", "copy config.json from the model this checkpoint was made from"});
  QuantLayout L = build_quant_layout(view);
  for (const auto& f : L.findings)
    if (f.severity == Severity::kInvalid)
      throw FormatError({in.string() + (f.subject.empty() ? "" : ": " + f.subject), "the input checkpoint is invalid: " + f.message,
                         "", "", f.hint.empty() ? "run `vlq check " + in.string() + " --target vlq` for all findings" : f.hint});
  const QuantFormat format = L.declared.format();
  if (format != QuantFormat::kModelOpt && format != QuantFormat::kCompressedTensors)
    throw UsageError({in.string(), "not a ModelOpt or compressed-tensors FP8 checkpoint, nothing to convert",
                      "hf_quant_config.json or config.json quantization_config", std::string(quant_format_name(format)),
                      "vlq inspect " + in.string()});
  return L;
}

}  // namespace

ConvertResult convert_checkpoint(const fs::path& in, const fs::path& out, const ConvertOptions& opts) {
  const RuntimeProfile& prof = find_profile(opts.target);
  std::error_code ec;
  if (!fs::exists(in, ec))  // before the output guard, which would otherwise judge OUT against in's parent
    throw IoError({in.string(), "input checkpoint not found", "a checkpoint folder or .safetensors file",
                   "no such file or folder", "check the path (vlq inspect DIR shows what a folder holds)"});
  const fs::path folder = fs::is_directory(in) ? in : in.parent_path();
  io::require_new_output(out, {folder}, opts.force);
  CheckpointView view = CheckpointView::open(in);
  const QuantLayout L = open_input(in, view);
  const io::Checkpoint& ck = *view.checkpoint();
  const QuantFormat format = L.declared.format();
  const bool vision_bf16 = opts.vision == VisionMode::kBf16 ||
                           (opts.vision == VisionMode::kDefault && prof.default_vision == "bf16");
  ConvertResult res;
  res.out = out;

  const KvStyle kv_style = format == QuantFormat::kCompressedTensors ? prof.ct_kv_style : prof.modelopt_kv_style;
  const ConvertPlan P = plan_tensors(view, L, kv_style, vision_bf16, res);
  const std::vector<std::string> exclude =
      plan_exclusions(view, L, format, prof, vision_bf16 || P.vision_fp8.empty(), res);
  StreamPlan sp;
  write_declaration(view, L, format, prof, exclude, P.lm_kv, sp.config, sp.hf_quant_config, res);
  sp.input_dir = folder;
  sp.out = out;
  for (const auto& p : P.tensors) sp.tensors.push_back({p.spec, p.scalar});
  sp.files.emplace_back("config.json", sp.config->dump(2) + "\n");
  if (sp.hf_quant_config) sp.files.emplace_back("hf_quant_config.json", sp.hf_quant_config->dump(4) + "\n");
  sp.skip_files = {"hf_quant_config.json"};
  sp.force = opts.force;
  sp.fsync = opts.fsync;
  sp.max_shard_bytes = opts.max_shard_bytes;
  CheckpointStream stream(std::move(sp));

  // Check the planned output before writing a byte, stream, check what was written, rename into place.
  const Report pre = stream.check_planned(prof);
  if (verdict_fails(pre.verdict))
    throw ConfigError({in.string(), fmt::format("converting for {} cannot make a checkpoint it loads", prof.id), "loads",
                       failure_summary(pre, 600),
                       opts.vision == VisionMode::kKeep ? "try --vision bf16" : "report this checkpoint layout to vlq"});
  stream.write([&](std::size_t i, io::CheckpointWriter& w) {
    const Planned& p = P.tensors[i];
    if (p.kind == Planned::kDequantize) w.write(p.spec.name, dequantize_weight(ck, *p.linear));
    else w.write(p.spec.name, ck.data(p.src));
    if (const io::TensorInfo& t = ck.info(p.src); t.nbytes() >= (1u << 20))  // keep the input out of resident memory
      ck.shard(ck.find(p.src).shard).advise_dontneed(t);
  });
  res.check = stream.check_written(prof);
  if (verdict_fails(res.check.verdict))
    throw ConfigError({out.string(), fmt::format("the converted checkpoint still does not load on {}", prof.id), "loads",
                       failure_summary(res.check, 600), "nothing was written; report this checkpoint layout to vlq"});
  res.tensors_out = P.tensors.size();
  res.bytes_out = stream.commit();
  return res;
}

}  // namespace vlq::formats
