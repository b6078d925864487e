// TensorRT-LLM 1.2.0rc0 loader simulation of `vlq check`: ModelOpt only, FP8 KV only, and the vision
// attention built FP8 whatever the exclusions say (F06).
#include <algorithm>

#include <fmt/format.h>

#include "check_internal.h"

namespace vlq::formats::check_detail {

// TensorRT-LLM 1.2.0rc0: the ViT attention is built FP8 whatever the exclusions say (F06).
LoaderResult run_trtllm(const QuantLayout& L, const RuntimeProfile& p, std::vector<Finding>& out) {
  LoaderResult res;
  std::vector<Gemm>& gemms = res.gemms;
  RtConfig cfg = read_config(L, p);
  res.config_read = cfg.describe;
  out.push_back(make_finding(Severity::kInfo, "config_read", cfg.read ? cfg.read->file : "",
                     fmt::format("{} reads {}", p.id, cfg.describe)));
  if (cfg.format == QuantFormat::kNone) return res;
  if (cfg.format != QuantFormat::kModelOpt) {
    Finding f = make_finding(Severity::kWarning, "not_analysed", cfg.read->file, p.config.unsupported_error);
    out.push_back(f);
    return res;
  }
  if (cfg.read->kv_cache_quant_algo && *cfg.read->kv_cache_quant_algo != "FP8") {
    Finding f = make_finding(Severity::kError, "kv_algo_unsupported", cfg.read->file,
                     fmt::format("kv_cache_quant_algo '{}': only FP8 is accepted for pre-quantized checkpoints",
                                 *cfg.read->kv_cache_quant_algo));
    f.runtime_error = "ValueError: only kv_cache_quant_algo=FP8 is supported for pre-quantized checkpoints";
    f.evidence = "field-bug-classes.md F16 (TensorRT-LLM PR #3167)";
    out.push_back(f);
    return res;
  }
  res.kv_cache = cfg.kv_fp8 ? "fp8 (declared by hf_quant_config.json)" : "model dtype";
  std::vector<std::string> missing;
  std::string first_subject;
  bool vision_fp8 = false;
  for (const auto& m : L.linears) {
    if (m.tower != Tower::kVision) {
      if (!m.tensors.quantized()) continue;
      // TensorRT-LLM's PyTorch backend fuses q/k/v into qkv_proj and gate/up into gate_up_proj (as vLLM): one GEMM
      // whose N is the shards' sum.
      const auto fused = qwen2_lm_fusion().apply(m.name);
      const std::string rt = fused ? fused->name : m.name;
      auto it = std::find_if(gemms.begin(), gemms.end(), [&](const Gemm& g) { return g.runtime == rt; });
      if (it != gemms.end() && fused) it->n += m.weight_shape[0];
      else gemms.push_back({m.name, rt, m.weight_shape[0], m.weight_shape[1], false, true});
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
      gemms.push_back({m.name, rt, m.weight_shape[0], m.weight_shape[1], true, true});
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
    Finding f = make_finding(Severity::kError, "runtime_missing_keys", first_subject,
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
    out.push_back(make_finding(Severity::kWarning, "not_analysed", "",
                       "FP8 vision Linears with scales: TensorRT-LLM's handling is not documented in vlq's sources [U]"));
  bool vkv = std::any_of(L.kv_scales.begin(), L.kv_scales.end(), [](const auto& k) { return k.tower == Tower::kVision; });
  if (vkv && missing.empty())
    out.push_back(make_finding(Severity::kWarning, "not_analysed", "",
                       "vision K/V scale tensors: TensorRT-LLM's handling is not documented in vlq's sources [U]"));
  return res;
}

}  // namespace vlq::formats::check_detail
