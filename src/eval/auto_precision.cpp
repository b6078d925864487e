// Automatic per-layer precision: sensitivity per module group, greedy BF16 fallback under a KL and a size
// budget (see vlq/eval/auto_precision.h).
#include "vlq/eval/auto_precision.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "vlq/core/error.h"
#include "vlq/engine/messages.h"
#include "vlq/formats/names.h"
#include "vlq/io/safetensors.h"

namespace vlq::eval {

namespace {

bool is_kv_scale(const std::string& name) {
  const std::string_view leaf = formats::leaf_of(name);
  return leaf == "k_scale" || leaf == "v_scale";
}

// Tensor bytes under canonical module prefix `prefix` (KV-scale tensors excluded), or (prefix empty) of the
// KV-scale tensors of the language model.
std::uint64_t bytes_under(const EvalModel& m, const std::string& prefix) {
  const io::Checkpoint ck = io::Checkpoint::open(m.dir);
  std::uint64_t b = 0;
  for (const auto& n : ck.names()) {
    const std::string canon = formats::canonical_name(n);
    if (prefix.empty()) {
      if (is_kv_scale(n) && formats::tower_of(canon) != formats::Tower::kVision) b += ck.info(n).nbytes();
    } else if (!is_kv_scale(n) && formats::in_subtree(canon, prefix)) {
      b += ck.info(n).nbytes();
    }
  }
  return b;
}

}  // namespace

std::string group_module(const std::string& g) {
  auto starts = [&](const char* p) { return g.rfind(p, 0) == 0; };
  if (g == "lm.kv_cache") return "";
  if (g == "lm_head") return "lm_head";
  if (g == "vision.merger") return "model.visual.merger";
  if (g == "vision.patch_embed") return "model.visual.patch_embed";
  if (starts("vision.blocks.")) return "model.visual.blocks." + g.substr(14);
  if (starts("lm.layers.")) {
    const std::string rest = g.substr(10);
    const auto dot = rest.find('.');
    if (dot != std::string::npos) {
      const std::string l = rest.substr(0, dot), part = rest.substr(dot + 1);
      if (part == "attn") return "model.language_model.layers." + l + ".self_attn";
      if (part == "mlp") return "model.language_model.layers." + l + ".mlp";
    }
  }
  throw UsageError({g, "unknown module group", "vision.blocks.N, vision.merger, lm.layers.N.attn|mlp, lm_head, lm.kv_cache", g, ""});
}

std::int64_t group_bf16_extra_bytes(const EvalModel& reference, const EvalModel& candidate, const std::string& group) {
  const std::string prefix = group_module(group);
  if (prefix.empty()) return -static_cast<std::int64_t>(bytes_under(candidate, ""));
  return static_cast<std::int64_t>(bytes_under(reference, prefix)) - static_cast<std::int64_t>(bytes_under(candidate, prefix));
}

AutoPrecisionResult choose_precision(const EvalModel& reference, const EvalModel& candidate, const std::vector<EvalItem>& items,
                                     const std::vector<std::string>& texts, const AutoPrecisionOptions& o) {
  if (!(o.max_kl > 0)) throw UsageError({"--max-kl", "the KL budget must be positive", "X > 0 (nats)", fmt::format("{}", o.max_kl), ""});
  if (o.max_size_ratio && !(*o.max_size_ratio > 0 && *o.max_size_ratio <= 1))
    throw UsageError({"--max-size-ratio", "the size budget must be a fraction of the BF16 size", "0 < R <= 1",
                      fmt::format("{}", *o.max_size_ratio), ""});
  auto log = [&](const std::string& s) { if (o.log) o.log(s); };
  EvalOptions eo = o.eval;
  eo.generation = false;
  GroupProbe probe(reference, candidate, items, texts, eo);
  if (probe.inputs() == 0)
    throw UsageError({"--auto-precision", "no sensitivity data", "calibration samples or task items", "none", ""});
  AutoPrecisionResult r;
  r.reference_bytes = reference.tensor_bytes;
  const std::vector<std::string>& groups = probe.groups();
  std::map<std::string, std::int64_t> extra;
  for (const auto& g : groups) extra[g] = group_bf16_extra_bytes(reference, candidate, g);
  // 1. sensitivity of each group alone
  for (const auto& g : groups) {
    r.sensitivity.push_back(GroupScore{g, probe.fp8_linears(g), probe.score({g})});
    log(fmt::format("sensitivity {:<20} KL mean {:.3e}", g, r.sensitivity.back().logits.mean_kl()));
  }
  // 2. greedy: most sensitive first
  std::vector<const GroupScore*> order;
  for (const auto& s : r.sensitivity) order.push_back(&s);
  std::stable_sort(order.begin(), order.end(),
                   [](const GroupScore* a, const GroupScore* b) { return a->logits.mean_kl() > b->logits.mean_kl(); });
  std::set<std::string> fp8(groups.begin(), groups.end());
  std::uint64_t bytes = candidate.tensor_bytes;
  const double limit = o.max_size_ratio ? *o.max_size_ratio * static_cast<double>(r.reference_bytes) : 0;
  auto over = [&](std::uint64_t b) { return o.max_size_ratio && static_cast<double>(b) > limit; };
  if (over(bytes))
    throw UsageError({"--max-size-ratio", "even the all-FP8 export is larger than the size budget",
                      fmt::format("<= {} x {} bytes", *o.max_size_ratio, r.reference_bytes),
                      fmt::format("{} bytes ({:.4f} x BF16)", bytes, double(bytes) / double(r.reference_bytes)),
                      "raise --max-size-ratio"});
  auto measure = [&](const std::string& kept) {
    const LogitMetrics m = probe.score(fp8);
    r.steps.push_back({kept, m.mean_kl(), m.kl_max, m.top1_agreement(), bytes});
    r.tokens = m.tokens;
    log(fmt::format("{:<28} KL mean {:.3e}, size {:.2f} MB ({:.3f} x BF16)", kept.empty() ? "all FP8" : "+ BF16 " + kept,
                    m.mean_kl(), bytes / 1e6, double(bytes) / double(r.reference_bytes)));
    return m.mean_kl();
  };
  double kl = measure("");
  while (kl > o.max_kl) {
    const GroupScore* next = nullptr;
    const GroupScore* blocked = nullptr;
    for (const GroupScore* g : order) {
      if (!fp8.count(g->group)) continue;
      if (over(static_cast<std::uint64_t>(static_cast<std::int64_t>(bytes) + extra[g->group]))) {
        if (!blocked) blocked = g;
        continue;
      }
      next = g;
      break;
    }
    std::string kept_list;
    for (const auto& k : r.kept_bf16) kept_list += (kept_list.empty() ? "" : ", ") + k;
    if (!next && blocked)
      throw UsageError({"--max-kl / --max-size-ratio", "the KL and size budgets cannot both hold",
                        fmt::format("KL <= {} and size <= {} x BF16", o.max_kl, *o.max_size_ratio),
                        fmt::format("KL {:.3e} with {} in BF16 at {:.4f} x BF16; keeping {} too would give {:.4f} x BF16",
                                    kl, kept_list.empty() ? "nothing" : kept_list, double(bytes) / double(r.reference_bytes),
                                    blocked->group,
                                    double(static_cast<std::int64_t>(bytes) + extra[blocked->group]) / double(r.reference_bytes)),
                        "raise --max-kl or --max-size-ratio"});
    const bool last_linear_group = std::count_if(fp8.begin(), fp8.end(), [](const std::string& g) { return g != "lm.kv_cache"; }) == 1 &&
                                   next && next->group != "lm.kv_cache";
    if (!next || last_linear_group)
      throw UsageError({"--max-kl", "the KL budget needs the whole model in BF16", fmt::format("KL <= {}", o.max_kl),
                        fmt::format("KL {:.3e} with every group but {} in BF16", kl, next ? next->group : "none"),
                        "raise --max-kl"});
    fp8.erase(next->group);
    bytes = static_cast<std::uint64_t>(static_cast<std::int64_t>(bytes) + extra[next->group]);
    r.kept_bf16.push_back(next->group);
    kl = measure(next->group);
  }
  r.kl_mean = kl;
  r.tensor_bytes = bytes;
  for (const auto& g : r.kept_bf16) {
    if (g == "lm.kv_cache") r.kv_cache_bf16 = true;
    else r.exclude.push_back(group_module(g));
  }
  r.exclude_checkpoint = checkpoint_module_names(reference, r.exclude);
  return r;
}

std::vector<std::string> checkpoint_module_names(const EvalModel& m, const std::vector<std::string>& canonical) {
  const io::Checkpoint ck = io::Checkpoint::open(m.dir);
  std::vector<std::string> out;
  for (const auto& prefix : canonical) {
    std::string found = prefix;  // a module with no tensor keeps its canonical name
    for (const auto& n : ck.names()) {
      const std::string canon = formats::canonical_name(n);
      if (!formats::in_subtree(canon, prefix)) continue;
      const std::string rest = canon.substr(prefix.size());  // ".q_proj.weight"
      if (n.size() >= rest.size() && n.compare(n.size() - rest.size(), rest.size(), rest) == 0) {
        found = n.substr(0, n.size() - rest.size());
        break;
      }
    }
    out.push_back(found);
  }
  return out;
}

nlohmann::ordered_json AutoPrecisionResult::to_json(const AutoPrecisionOptions& o) const {
  nlohmann::ordered_json j;
  j["max_kl"] = o.max_kl;
  j["max_size_ratio"] = o.max_size_ratio ? nlohmann::ordered_json(*o.max_size_ratio) : nlohmann::ordered_json(nullptr);
  j["kept_bf16"] = kept_bf16;
  j["exclude"] = exclude;  // canonical names (say so: the written configs use the checkpoint's naming)
  j["exclude_naming"] = "canonical";
  j["exclude_checkpoint"] = exclude_checkpoint.size() == exclude.size() ? exclude_checkpoint : exclude;
  j["kv_cache"] = kv_cache_bf16 ? "none" : "fp8";
  j["kl_mean"] = kl_mean;
  j["tokens"] = tokens;
  j["tensor_bytes"] = tensor_bytes;
  j["reference_bytes"] = reference_bytes;
  j["size_ratio"] = size_ratio();
  j["sensitivity"] = nlohmann::ordered_json::array();
  for (const auto& g : sensitivity)
    j["sensitivity"].push_back({{"group", g.group}, {"fp8_linears", g.fp8_linears}, {"kl_mean", g.logits.mean_kl()},
                                {"kl_max", g.logits.kl_max}, {"top1", g.logits.top1_agreement()}});
  j["steps"] = nlohmann::ordered_json::array();
  for (const auto& s : steps)
    j["steps"].push_back({{"kept_bf16", s.kept_bf16}, {"kl_mean", s.kl_mean}, {"kl_max", s.kl_max}, {"top1", s.top1},
                          {"tensor_bytes", s.tensor_bytes}});
  return j;
}

void sensitivity_data_of(const std::vector<quant::CalibSample>& samples, std::vector<EvalItem>& items,
                         std::vector<std::string>& texts) {
  int n = 0;
  for (const auto& s : samples) {
    if (s.kind == quant::CalibKind::kText) {
      texts.push_back(s.text);
      continue;
    }
    nlohmann::ordered_json msgs = nlohmann::ordered_json::array(
        {{{"role", "user"},
          {"content", nlohmann::ordered_json::array({{{"type", "image"}, {"image", s.image_path.string()}},
                                                     {{"type", "text"}, {"text", std::string(quant::kCalibImageInstruction)}}})}}});
    EvalItem it;
    it.id = fmt::format("calib-{:04d}", n++);
    it.task = "calibration";
    it.image = s.image_path;
    it.question = std::string(quant::kCalibImageInstruction);
    it.chat = engine::parse_messages(msgs, {}, s.source);
    it.answer = s.text;
    it.source = s.source;
    items.push_back(std::move(it));
  }
}

}  // namespace vlq::eval
