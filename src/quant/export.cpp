// `vlq quantize`'s export: the output tensors of a plan (FP8 weights by the one recipe, scales, KV scales,
// copies), both config declarations, streamed and checked before the rename; and the CLI summary (see
// include/vlq/quant/export.h).
#include "vlq/quant/export.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <sstream>

#include "vlq/core/error.h"
#include "vlq/formats/export_stream.h"
#include "vlq/formats/names.h"
#include "vlq/formats/runtime_profile.h"
#include "vlq/io/json.h"
#include "vlq/io/safetensors.h"
#include "vlq/io/safetensors_writer.h"
#include "vlq/ops/fp8_weight.h"
#include "vlq/quant/model_card.h"
#include "quant/recipe.h"

namespace vlq::quant {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;
using formats::Tower;
using detail::ExportRecipe;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One output tensor and how it is made.
struct Out {
  io::TensorSpec spec;
  enum Kind { kCopy, kWeight, kWeightScale, kInputScale, kKv } kind = kCopy;
  std::string src;            // input tensor (kCopy, kWeight)
  const ModulePlan* m = nullptr;
  float value = 0;            // kInputScale, kKv
};

// The plan's quantized Linears by checkpoint weight name; ConfigError listing every amax the statistics lack.
std::map<std::string, const ModulePlan*> quantized_weights(const io::Checkpoint& ck, const fs::path& folder,
                                                           const QuantPlan& plan, const CalibrationStats& stats) {
  std::map<std::string, const ModulePlan*> by_weight;
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
  return by_weight;
}

// Every input tensor in order: copied, or (a quantized Linear's weight) FP8 weight + weight_scale + input_scale.
std::vector<Out> linear_outputs(const io::Checkpoint& ck, const std::map<std::string, const ModulePlan*>& by_weight,
                                const CalibrationStats& stats, const ExportRecipe& r, ExportReport& rep) {
  std::vector<Out> outs;
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
    const DType sdt = r.scale_dtype(info.dtype);
    outs.push_back({{n, DType::F8_E4M3, info.shape}, Out::kWeight, n, &m, 0});
    outs.push_back({{m.checkpoint_module + ".weight_scale", sdt, r.scale_shape()}, Out::kWeightScale, "", &m, 0});
    const float amax = stats.input_amax.at(m.canonical_module);
    const ops::Fp8Amax a = ops::sanitize_fp8_amax(amax, "input amax", m.canonical_module);
    if (!a.warning.empty()) rep.warnings.push_back(a.warning);
    const float s = r.scale_of(a.value, info.dtype);
    outs.push_back({{m.checkpoint_module + ".input_scale", sdt, r.scale_shape()}, Out::kInputScale, "", &m, s});
    rep.input_amax.add(amax);
    rep.input_scale.add(s);
  }
  return outs;
}

// k_scale / v_scale of every attention in plan.attention_modules_with_kv, appended to `outs`.
void add_kv_outputs(const io::Checkpoint& ck, const QuantPlan& plan, const CalibrationStats& stats, const ExportRecipe& r,
                    const QuantizeOptions& opt, std::vector<Out>& outs, ExportReport& rep) {
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
      float s = r.scale_of(c.value, adt);
      if (r.clamp_kv && s < 1.0f) s = 1.0f;
      const std::string name =
          formats::kv_scale_name(ckname, kind, r.modelopt ? formats::KvStyle::kModelOpt : formats::KvStyle::kCanonical);
      outs.push_back({{name, r.scale_dtype(adt), r.scale_shape()}, Out::kKv, "", nullptr, s});
      (k ? rep.k_scale : rep.v_scale).add(s);
      ++(vision ? rep.vision_kv_scales : rep.kv_scales);
    }
  }
  if (r.clamp_kv && !plan.attention_modules_with_kv.empty())
    rep.warnings.push_back(fmt::format("KV scales clamped to >= 1.0 (--modelopt-compat {}: ModelOpt <= 0.42 behaviour)",
                                       *opt.modelopt_version_compat));
  std::set<std::string> seen;
  for (const auto& o : outs)
    if (!seen.insert(o.spec.name).second)
      throw UsageError({o.spec.name, "two output tensors would have the same name", "unique names", "a duplicate",
                        "the input has tensors named like FP8 scales; quantize the original model"});
}

// Writes tensor i of `outs`: a copy, a scale, or a quantized weight followed by its weight_scale (outs[i + 1]).
void write_output(std::size_t i, const std::vector<Out>& outs, const io::Checkpoint& ck, const CalibrationStats& stats,
                  const ExportRecipe& r, io::CheckpointWriter& w, ExportReport& rep) {
  const Out& o = outs[i];
  // The source tensor's mapped pages are dropped once written: page cache would otherwise count in the
  // process's resident memory for the whole input (16.6 GB for a 7B BF16 checkpoint).
  auto drop = [&] {
    const io::TensorInfo& t = ck.info(o.src);
    if (t.nbytes() >= (1u << 20)) ck.shard(ck.find(o.src).shard).advise_dontneed(t);
  };
  switch (o.kind) {
    case Out::kCopy: w.write(o.spec.name, ck.data(o.src)); drop(); return;
    case Out::kInputScale:
    case Out::kKv: w.write(o.spec.name, detail::scalar_bytes(o.value, o.spec.dtype)); return;
    case Out::kWeightScale: return;  // written right after its weight
    case Out::kWeight: break;
  }
  const DType dt = ck.info(o.src).dtype;
  const ops::Fp8Weight qw = ops::quantize_weight_fp8(ck.data(o.src), dt, dt, r.weights, o.src);
  drop();
  if (!qw.warning.empty()) rep.warnings.push_back(qw.warning);
  ModuleExport me;
  me.checkpoint_module = o.m->checkpoint_module;
  me.weight_amax = qw.amax;
  me.weight_scale = qw.scale;
  me.input_amax = stats.input_amax.at(o.m->canonical_module);
  me.input_scale = outs[i + 2].value;
  me.saturated = qw.saturated;
  rep.modules.push_back(me);
  rep.weight_amax.add(qw.amax);
  rep.weight_scale.add(qw.scale);
  w.write(o.spec.name, std::as_bytes(std::span<const std::uint8_t>(qw.codes)));
  w.write(outs[i + 1].spec.name, detail::scalar_bytes(qw.scale, outs[i + 1].spec.dtype));
  ++rep.quantized;
}

// The input folder's entries that are not copied (the tensors, index and configs the export writes are not
// listed: they are replaced, not dropped).
std::vector<std::string> files_not_copied(const fs::path& folder) {
  static const std::set<std::string> kWritten = {"config.json", "hf_quant_config.json", io::kCheckpointIndexFile,
                                                 "vlq_quantize.json"};
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(folder)) {
    const std::string n = e.path().filename().string();
    if (kWritten.count(n) || (e.path().extension() == ".safetensors" && !e.is_directory())) continue;
    if (e.is_directory()) out.push_back(n + "/");
    else if (!is_kept_model_file(n)) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The output's README.md when the input has one: vlq's note, then the source card unchanged (quantized_model_card).
std::optional<std::string> model_card(const fs::path& folder, const QuantizeOptions& opt) {
  const fs::path card = folder / "README.md";
  if (!fs::is_regular_file(card)) return std::nullopt;
  std::ifstream f(card, std::ios::binary);
  if (!f) throw IoError({card.string(), "cannot read the model card", "a readable file", "open failed", "check its permissions"});
  std::ostringstream text;
  text << f.rdbuf();
  const std::string recipe = fmt::format("{} FP8: {}{}", opt.format == ExportFormat::kModelOpt ? "ModelOpt" : "compressed-tensors",
                                         opt.scope == Scope::kVisionLanguage ? "language model and vision tower" : "language model only",
                                         opt.kv_cache_fp8 ? ", FP8 KV cache" : "");
  return quantized_model_card(text.str(), fs::weakly_canonical(folder).filename().string(), recipe);
}

// The stream plan: the tensors (scales known now for the pre-check), both config files, vlq_quantize.json, the
// model card with vlq's note.
formats::StreamPlan stream_plan(const fs::path& folder, const fs::path& out_dir, const std::vector<Out>& outs,
                                const json& config, const std::optional<ordered_json>& hfq, std::string provenance,
                                const QuantizeOptions& opt) {
  formats::StreamPlan sp;
  sp.input_dir = folder;
  sp.out = out_dir;
  for (const auto& o : outs)
    sp.tensors.push_back({o.spec, o.kind == Out::kInputScale || o.kind == Out::kKv ? std::optional<double>(o.value) : std::nullopt});
  sp.config = config;
  if (hfq) sp.hf_quant_config = json::parse(hfq->dump());
  sp.files.emplace_back("config.json", config.dump(2) + "\n");
  if (hfq) sp.files.emplace_back("hf_quant_config.json", hfq->dump(4));
  sp.files.emplace_back("vlq_quantize.json", std::move(provenance));
  if (auto card = model_card(folder, opt)) sp.files.emplace_back("README.md", std::move(*card));
  sp.skip_files = {"hf_quant_config.json"};
  for (const auto& n : files_not_copied(folder)) sp.skip_files.insert(n);
  sp.force = opt.force;
  sp.fsync = opt.fsync;
  sp.max_shard_bytes = opt.max_shard_bytes;
  return sp;
}

// check_planned (before) or check_written (after streaming) for every --for target; ConfigError on a failure.
void check_targets(const formats::CheckpointStream& stream, bool written, const QuantizeOptions& opt,
                   const fs::path& out_dir, ExportReport& rep) {
  for (const auto& target : opt.check_targets) {
    const formats::RuntimeProfile& prof = formats::find_profile(target);
    formats::Report r = written ? stream.check_written(prof) : stream.check_planned(prof);
    if (formats::verdict_fails(r.verdict) || formats::predicts_wrong_output(r))
      throw ConfigError({out_dir.string(), fmt::format("the quantized checkpoint would not load on {} (or would give wrong output)", target), "loads",
                         std::string(formats::verdict_name(r.verdict)) + ": " + formats::failure_summary(r),
                         "nothing was written; change --layout (portable writes the exclusions vLLM 0.10 reads)/--scope/"
                         "--vision-kv-scales/--format, or drop --for " + target});
    if (written) rep.checks.push_back(std::move(r));
  }
}

}  // namespace

void ScaleRange::add(float v) {
  if (count == 0) min = max = v;
  min = std::min(min, v);
  max = std::max(max, v);
  ++count;
}

bool is_kept_model_file(const std::string& n) {
  static const std::set<std::string> kKept = {
      "generation_config.json", "preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json",
      "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
      "tokenizer.model", "chat_template.jinja", "chat_template.json", "README.md"};
  return kKept.count(n) > 0 || n.rfind("LICENSE", 0) == 0 || n.rfind("NOTICE", 0) == 0;
}

ExportReport export_quantized(const fs::path& model_dir, const fs::path& out_dir, const QuantPlan& plan,
                              const CalibrationStats& stats, const QuantizeOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  ExportReport rep;
  rep.out = out_dir;
  const ExportRecipe recipe = ExportRecipe::of(opt);
  const fs::path folder = fs::is_directory(model_dir) ? model_dir : model_dir.parent_path();
  io::require_new_output(out_dir, {folder}, opt.force);
  const io::Checkpoint ck = io::Checkpoint::open(model_dir);
  json config = io::read_json_file(folder / "config.json");

  std::vector<Out> outs = linear_outputs(ck, quantized_weights(ck, folder, plan, stats), stats, recipe, rep);
  add_kv_outputs(ck, plan, stats, recipe, opt, outs, rep);
  const bool kv = opt.kv_cache_fp8 && !plan.attention_modules_with_kv.empty();
  std::optional<ordered_json> hfq;
  detail::write_declaration(plan, ck, recipe, kv, config, hfq);
  const std::vector<std::string> kept = detail::kept_linears(plan);
  rep.not_copied = files_not_copied(folder);
  QuantizeOptions popt = opt;  // the provenance also names the input files left out
  if (!popt.provenance_extra.is_object()) popt.provenance_extra = json::object();
  popt.provenance_extra["input_files_not_copied"] = rep.not_copied;
  formats::CheckpointStream stream(stream_plan(
      folder, out_dir, outs, config, hfq, detail::provenance_json(popt, stats, recipe, kv, plan.quantized_count(), kept), opt));

  const auto t_check0 = std::chrono::steady_clock::now();
  check_targets(stream, false, opt, out_dir, rep);  // the planned layout, before computing anything
  rep.seconds_check += seconds_since(t_check0);
  rep.seconds_prepare = seconds_since(t0) - rep.seconds_check;

  const auto t_write0 = std::chrono::steady_clock::now();
  stream.write([&](std::size_t i, io::CheckpointWriter& w) { write_output(i, outs, ck, stats, recipe, w, rep); });
  rep.kept = static_cast<int>(kept.size());
  rep.seconds_write = seconds_since(t_write0);

  const auto t_check1 = std::chrono::steady_clock::now();
  check_targets(stream, true, opt, out_dir, rep);  // what was written, then rename into place
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
  const bool conv = std::any_of(plan.modules.begin(), plan.modules.end(), [](const ModulePlan& m) { return !m.is_linear; });
  o << fmt::format("quantized {} Linears to FP8, kept {}{} in the source dtype; {} KV-scale tensors{}\n", r.quantized,
                   r.kept, conv ? " (and the Conv3d patch embedding)" : "", r.kv_scales,
                   r.vision_kv_scales ? fmt::format(" + {} vision K/V orphans (ModelOpt layout)", r.vision_kv_scales) : "");
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
  if (!r.not_copied.empty()) {
    std::string names;
    for (const auto& n : r.not_copied) names += (names.empty() ? "" : ", ") + n;
    o << fmt::format("  not copied from the input (they describe the source model; only tokenizer, processor, chat-template "
                     "and generation-config files, README.md and LICENSE/NOTICE are kept): {}\n", names);
  }
  o << fmt::format("\n  {} tensors, {:.1f} MB -> {} tensors, {:.1f} MB in {}\n", r.tensors_in, r.bytes_in / 1e6, r.tensors_out,
                   r.bytes_out / 1e6, r.out.string());
  o << fmt::format("  time: prepare {:.2f}s, quantize+write {:.2f}s, check {:.2f}s, commit {:.2f}s\n", r.seconds_prepare,
                   r.seconds_write, r.seconds_check, r.seconds_commit);
  return o.str();
}

}  // namespace vlq::quant
