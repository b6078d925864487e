// Target-independent checkpoint audits of `vlq check`: naming generation, KV-scale values (F17), vision
// K/V scales and FP8 vision Linears, fused-shard scales (F18), FP8 GEMM alignment (F19).
#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "check_internal.h"

namespace vlq::formats::check_detail {

std::vector<const LinearModule*> vision_fp8_linears(const QuantLayout& L) {
  std::vector<const LinearModule*> out;
  for (const auto& l : L.linears)
    if (l.tower == Tower::kVision && l.tensors.quantized()) out.push_back(&l);
  return out;
}

void audit_naming(const QuantLayout& L, std::vector<Finding>& out) {
  if (L.naming == NamingGeneration::kTransformers452)
    out.push_back(make_finding(Severity::kInfo, "naming_generation", "",
                       "transformers-4.52 names (model.language_model.*, model.visual.*): vLLM < 0.9.1 (before PR "
                       "#19054) and other loaders without the 4.52 mapping fail with KeyError on them; exclusion "
                       "entries must use the same names"));
  else if (L.naming == NamingGeneration::kLegacy)
    out.push_back(make_finding(Severity::kInfo, "naming_generation", "",
                       "legacy names (model.layers.*, visual.*): accepted by every runtime; `re:` entries written for "
                       "4.52 names (re:model.visual.*) do not match them"));
}

void audit_kv_values(const QuantLayout& L, std::vector<Finding>& out) {
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
  std::string message = fmt::format("all {} KV-cache scales are exactly 1.0: ", lm.size());
  if (clamping_modelopt)
    message += fmt::format("ModelOpt {} clamps FP8 KV scales to >= 1.0, so a scale of 1.0 is indistinguishable from "
                           "uncalibrated (every K/V amax <= 448 gives 1.0, and so does a missing calibration)",
                           hf->producer_version);
  else
    message += "probably never calibrated (definition: amax/448)";
  Finding f = make_finding(Severity::kWarning, "kv_scales_uncalibrated", lm.front()->name, message);
  f.risk = "an FP8 KV cache with scale 1.0 saturates K/V values above 448 and wastes precision on small ones";
  f.hint = "recalibrate the KV cache (vlq quantize --kv-cache fp8)";
  if (clamping_modelopt) f.hint += ", which writes amax/448 without the clamp";
  f.evidence = clamping_modelopt ? "fp8-checkpoint-formats.md §1.3; field-bug-classes.md F17" : "field-bug-classes.md F17";
  out.push_back(f);
}


void audit_vision(const QuantLayout& L, const std::string& dir, std::vector<Finding>& out) {
  std::vector<const KvScaleTensor*> vkv;
  for (const auto& k : L.kv_scales)
    if (k.tower == Tower::kVision) vkv.push_back(&k);
  if (!vkv.empty()) {
    Finding f = make_finding(Severity::kWarning, "vision_kv_scales", vkv.front()->name,
                     fmt::format("{} K/V-cache scale tensors on the vision attention ({} ...): the ViT has no KV cache "
                                 "and no runtime has a parameter for them (ModelOpt files its k_bmm/v_bmm amax under a "
                                 "pseudo-child k_proj/v_proj)",
                                 vkv.size(), vkv.front()->name));
    f.hint = convert_cmd(dir, "vllm-0.10") + " (drops them)";
    f.evidence = "fp8-checkpoint-formats.md §1.3, §1.7, §2.6";
    out.push_back(f);
  }
  const std::vector<const LinearModule*> fp8 = vision_fp8_linears(L);
  if (!fp8.empty()) {
    const std::size_t n = fp8.size();
    Finding f = make_finding(Severity::kInfo, "vision_fp8", fp8.front()->name,
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
  Finding f = make_finding(Severity::kInfo, "fused_scales_differ", first,
                   fmt::format("{} fused groups (q/k/v, gate/up) have shards with different per-tensor weight_scale "
                               "(largest ratio {:.3g}); runtimes with a fused qkv_proj / gate_up_proj requantize the "
                               "shards to the largest scale and keep the largest input_scale",
                               n, worst));
  f.risk = "at most one FP8 step of extra error at the larger scale on the requantized shards";
  f.evidence = "field-bug-classes.md F18; fp8-checkpoint-formats.md §2.3";
  out.push_back(f);
}

void audit_alignment(const RuntimeProfile& p, const std::vector<Gemm>& gemms, const std::string& dir,
                     std::vector<Finding>& out) {
  if (p.fp8_gemm_align <= 1 && p.unaligned_text.empty()) return;
  const std::int64_t align = p.fp8_gemm_align > 1 ? p.fp8_gemm_align : 16;  // align 1: report, for information
  std::vector<const Gemm*> bad;
  for (const auto& g : gemms)
    if (g.n % align || g.k % align) bad.push_back(&g);
  if (bad.empty()) return;
  const Gemm& g = *bad.front();
  Finding f = make_finding(p.fp8_gemm_align > 1 ? p.unaligned_severity : Severity::kInfo, "fp8_gemm_alignment", g.subject,
                   fmt::format("{} FP8 Linears have K or N not a multiple of {} (first: {} as {}, N={} K={}): {}",
                               bad.size(), align, g.subject, g.runtime, g.n, g.k, p.unaligned_text));
  if (p.fp8_gemm_align > 1 && p.unaligned_severity >= Severity::kWarning) {
    f.risk = g.vision ? "assertion or kernel failure in the FP8 GEMM at the first image request, or a slow fallback"
                      : "assertion or kernel failure in the FP8 GEMM at load or the first request, or a slow fallback";
    if (!g.stored_fp8)  // BF16 in the checkpoint: the runtime builds it FP8 because no exclusion it honours covers it
      f.hint = convert_cmd(dir, p.id) + " (writes an exclusion this runtime honours: these Linears are BF16 in the checkpoint)";
    else if (g.vision)
      f.hint = convert_cmd(dir, p.id, " --vision bf16") + " (keeps these Linears in BF16)";
    else
      f.hint = "re-quantize with `vlq quantize ... --unaligned keep` (keeps these Linears in the source dtype)";
  }
  f.evidence = "field-bug-classes.md F19; qwen2_5_vl.md §7 (vision MLP 3420)";
  out.push_back(f);
}

}  // namespace vlq::formats::check_detail
