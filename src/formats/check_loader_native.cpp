// vlq's own loader as `vlq check` models it: the tensors are the truth; scale tensors without a
// quantization config are refused (F15).
#include <fmt/format.h>

#include "check_internal.h"

namespace vlq::formats::check_detail {

// vlq's own loader: tensors are the truth.
LoaderResult run_native(const QuantLayout& L, const RuntimeProfile& p, std::vector<Finding>& out) {
  LoaderResult res;
  const QuantDeclaration* d = L.declared.primary();
  res.config_read = d ? fmt::format("{} ({}) and the tensors", d->file, quant_format_name(d->format)) : "the tensors";
  if (!d && L.any_scales()) {
    std::string first;
    for (const auto& l : L.linears) {
      if (l.weight_scale) first = first.empty() || l.weight_scale->name < first ? l.weight_scale->name : first;
      if (l.input_scale) first = first.empty() || l.input_scale->name < first ? l.input_scale->name : first;
    }
    for (const auto& k : L.kv_scales) first = first.empty() || k.name < first ? k.name : first;
    Finding f = make_finding(Severity::kError, "no_quant_config", first,
                     "scale tensors are present but there is no quantization config: vlq refuses to guess the "
                     "scheme");
    f.runtime_error = fmt::format("vlq: error: {}: scale tensor without a quantization config", first);
    f.hint = "add hf_quant_config.json / quantization_config (vlq convert writes them)";
    f.evidence = "field-bug-classes.md F15";
    out.push_back(f);
    return res;
  }
  if (d && d->format == QuantFormat::kOther) {
    Finding f = make_finding(Severity::kError, "format_unsupported", d->file,
                     fmt::format("quant_method '{}' is not supported by vlq", d->quant_method));
    f.runtime_error = fmt::format("vlq: error: {}: quant_method '{}' not supported yet", d->file, d->quant_method);
    out.push_back(f);
    return res;
  }
  for (const auto& m : L.linears)
    if (m.tensors.quantized())
      res.gemms.push_back({m.name, m.name, m.weight_shape[0], m.weight_shape[1], m.tower == Tower::kVision, true});
  bool kv_decl = (L.declared.config_json && L.declared.config_json->declares_fp8_kv()) ||
                 (L.declared.hf_quant_config && L.declared.hf_quant_config->declares_fp8_kv());
  res.kv_cache = kv_decl ? "fp8 with the checkpoint's scales (every spelling is read)" : "model dtype";
  out.push_back(make_finding(Severity::kInfo, "kv_cache", "", fmt::format("{}: KV cache {}", p.id, res.kv_cache)));
  return res;
}

}  // namespace vlq::formats::check_detail
